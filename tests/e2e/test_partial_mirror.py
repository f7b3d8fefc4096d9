"""A mirror that holds an image's manifest but lost one layer, pulled directly and through
the proxy in each fallback mode: the same registries.conf, the same real registries. The
node modes are each checked against the real code they model: `sticky` against Debian's
skopeo 1.9.3, `blob` against the current library's `copy.Image` (the Go oracle).

The layer is lost for real: its link is removed from the mirror's repository, so the
distribution registry answers `404 BLOB_UNKNOWN` for it. skopeo 1.9.3 (containers/image
5.23, sticky) fails such a pull; so must `mirrorlab serve` by default. `blob` mode falls
back for BLOB_UNKNOWN as PR #845 does; `resilient` rescues it too, and marks the rescue.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirrorlab.harness.images import Image, RegistryClient, make_image
from mirrorlab.harness.registry import RegistryProcess

from ..go_oracle import GoOracle, go_oracle
from .lab import ProxyProcess

__all__ = ["go_oracle"]  # the fixture, imported for the test below


@dataclass
class Partial:
    mirror1: RegistryProcess
    """Has the manifest, lost the large layer."""
    mirror2: RegistryProcess
    image: Image
    conf: str
    certs_d: Path

    @property
    def resolve_args(self) -> list[str]:
        return ["--resolve", "quay.io=127.0.0.1:9"]  # the source: never reached here


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Partial]:
    work = tmp_path_factory.mktemp("partial")
    mirrors = [RegistryProcess(work, "mirror1"), RegistryProcess(work, "mirror2")]
    started: list[RegistryProcess] = []
    try:
        for registry in mirrors:
            started.append(registry.start())
        image = make_image("partial", (4096, 6 * 1024 * 1024, 2048))
        for registry in mirrors:
            RegistryClient(registry.url, None).push_image("ns/app", image, "v1")
        lost = image.layers[1].digest.split(":", 1)[1]
        link = (mirrors[0].data / "docker/registry/v2/repositories/ns/app/_layers/sha256"
                / lost / "link")
        link.unlink()
        conf = "".join([
            '[[registry]]\nlocation = "quay.io/ns"\n',
            *(f'[[registry.mirror]]\nlocation = "{r.address}/ns"\ninsecure = true\n'
              for r in mirrors)])
        (work / "certs.d").mkdir()
        yield Partial(mirrors[0], mirrors[1], image, conf, work / "certs.d")
    finally:
        for registry in started:
            registry.stop()


def _skopeo_copy(ref: str, conf: Path, out: Path, *, tls_verify: bool = True
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--registries-conf", str(conf), "copy", "--retry-times", "0",
         *([] if tls_verify else ["--src-tls-verify=false"]), f"docker://{ref}", f"dir:{out}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"HOME": str(out.parent), "PATH": "/usr/bin:/bin"})


# What skopeo 1.9.3 prints for a 404 blob, whatever the body says.
NODE_ERROR = "reading blob {}: Error fetching blob: invalid status code from registry 404"

# mode -> whether the pull succeeds, and the modes a success is marked as rescuing
EXPECTED = {
    "sticky": (False, None),
    "blob": (True, []),
    "resilient": (True, ["sticky"]),
}


@pytest.mark.differential
@pytest.mark.parametrize("by", ["digest", "tag"])
def test_skopeo_fails_a_pull_from_a_partial_mirror(partial: Partial, tmp_path: Path,
                                                   by: str) -> None:
    """The baseline: the node's own client, straight at the registries."""
    conf = tmp_path / "registries.conf"
    conf.write_text(partial.conf)
    suffix = f"@{partial.image.digest}" if by == "digest" else ":v1"
    result = _skopeo_copy(f"quay.io/ns/app{suffix}", conf, tmp_path / "out")
    assert result.returncode != 0
    assert NODE_ERROR.format(partial.image.layers[1].digest) in result.stderr, result.stderr


@pytest.mark.differential
@pytest.mark.parametrize("by", ["digest", "tag"])
@pytest.mark.parametrize("mode", list(EXPECTED))
def test_partial_mirror_through_the_proxy(partial: Partial, tmp_path: Path, mode: str,
                                          by: str) -> None:
    ok, rescued = EXPECTED[mode]
    proxy = ProxyProcess(tmp_path / "proxy", partial.conf, partial,
                         extra=("--fallback", mode))
    try:
        suffix = f"@{partial.image.digest}" if by == "digest" else ":v1"
        (tmp_path / "unused.conf").write_text("")  # the client itself mirrors nothing
        result = _skopeo_copy(f"{proxy.address}/quay.io/ns/app{suffix}",
                              tmp_path / "unused.conf", tmp_path / "out", tls_verify=False)
        lost = partial.image.layers[1].digest
        attempts = [e for e in proxy.events() if str(e["logical"]).endswith(lost)]
        if not ok:
            assert result.returncode != 0
            assert NODE_ERROR.format(lost) in result.stderr, result.stderr
            assert [(e["outcome"], e.get("code")) for e in attempts] == [
                ("not_found", "BLOB_UNKNOWN")], attempts
            return
        assert result.returncode == 0, result.stderr
        manifest = json.loads((tmp_path / "out/manifest.json").read_bytes())
        assert [layer["digest"] for layer in manifest["layers"]] == [
            layer.digest for layer in partial.image.layers]
        assert [e["outcome"] for e in attempts] == ["not_found", "served"], attempts
        served = attempts[-1]
        assert str(served["source"]).startswith(partial.mirror2.address)
        assert served["fallback"] is True
        assert served.get("rescued", []) == rescued
    finally:
        proxy.stop()


@pytest.mark.differential
@pytest.mark.parametrize("by", ["digest", "tag"])
def test_current_library_falls_back_as_blob_mode(partial: Partial, tmp_path: Path,
                                                 go_oracle: GoOracle, by: str) -> None:
    """go.podman.io/image/v5 with PR #845 (the oracle's pinned version has it) copies the
    image from the partial mirror, the lost layer from the next one: as `blob` mode."""
    conf, policy = tmp_path / "registries.conf", tmp_path / "policy.json"
    conf.write_text(partial.conf)
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    suffix = f"@{partial.image.digest}" if by == "digest" else ":v1"
    answer = go_oracle.copy(f"quay.io/ns/app{suffix}", str(tmp_path / "out"),
                            registries_conf=str(conf), policy=str(policy), timeout=60)
    assert answer["copied"], answer
    assert answer["manifest_digest"] == partial.image.digest
    manifest = json.loads((tmp_path / "out/manifest.json").read_bytes())
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.digest for layer in partial.image.layers]
    assert EXPECTED["blob"][0] is True
