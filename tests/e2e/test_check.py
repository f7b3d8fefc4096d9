"""`mirrorlab check` against real registries: every verdict, its cause and fix, the exit
status, the 80-column layout, and that what the run must not contact saw no request.

Four `docker-registry` processes under the names the configuration uses, reached through
`--resolve` (no DNS): `quay.io` (the source, TLS from the lab CA), `mirror.example.com`
(TLS, lab CA; its copy of some images is incomplete on purpose: a layer link and an
index's arm64 manifest link removed, so distribution answers 404 for them as it does for
content it lacks), `mirror2.example.net` (TLS from a CA that only one certs.d holds) and
`registry.example.com` (token auth from `auth.example.com`). Each test runs
`mirrorlab check` as a process, as a user would.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirrorlab.certs import LabCA
from mirrorlab.harness.images import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Image,
    ImageIndex,
    RegistryClient,
    make_image,
    make_index,
    sha256,
)
from mirrorlab.harness.registry import RegistryProcess, TlsFiles
from mirrorlab.harness.tokenauth import TokenServer

from .lab import ACCEPT_ALL

PASSWORD = "check-s3cret"
CONF = """
[[registry]]
location = "quay.io/ns"
[[registry.mirror]]
location = "mirror.example.com/ns"
[[registry.mirror]]
location = "mirror2.example.net/ns"

[[registry]]
location = "quay.io/tls"
blocked = true
[[registry.mirror]]
location = "mirror2.example.net/tls"

[[registry]]
location = "quay.io/private"
blocked = true
[[registry.mirror]]
location = "registry.example.com/private"
"""


def payload_image(references: dict[str, object]) -> Image:
    """A release payload: a base layer, then one holding release-manifests/."""
    base = make_image("payload-base", (2048,))
    files = {"release-manifests/image-references": json.dumps(references).encode(),
             "release-manifests/release-metadata": b'{"version": "4.99.0"}'}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    layer = Blob(OCI_LAYER, gzip.compress(buffer.getvalue(), mtime=0))
    layers = (base.layers[0], layer)
    config = Blob(OCI_CONFIG, json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": [sha256(gzip.decompress(b.data)) for b in layers]}},
        sort_keys=True).encode())
    manifest = Blob(OCI_MANIFEST, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers]}, sort_keys=True).encode())
    return Image(manifest, config, layers)


def _lose(registry: RegistryProcess, repo: str, kind: str, digest: str) -> None:
    """Remove a repository's link to a layer (`_layers`) or manifest (`_manifests`)."""
    sub = "_layers/sha256" if kind == "layer" else "_manifests/revisions/sha256"
    link = (registry.data / "docker/registry/v2/repositories" / repo / sub
            / digest.split(":", 1)[1] / "link")
    link.unlink()


def flat(text: str) -> str:
    """Text with its wrapping undone: one space between words."""
    return " ".join(text.split())


@dataclass
class Result:
    status: int
    out: str
    err: str

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    def by_image(self) -> dict[str, dict[str, Any]]:
        return {str(o["image"]): o for o in self.objects}


@dataclass
class CheckLab:
    work: Path
    source: RegistryProcess
    mirror: RegistryProcess
    mirror2: RegistryProcess
    private: RegistryProcess
    tokens: TokenServer
    certs_d: Path
    """Trusts every registry."""
    certs_without_mirror2: Path
    images: dict[str, Image | ImageIndex] = field(default_factory=dict)

    @property
    def resolve_args(self) -> list[str]:
        return ["--resolve", f"quay.io={self.source.address}",
                "--resolve", f"mirror.example.com={self.mirror.address}",
                "--resolve", f"mirror2.example.net={self.mirror2.address}",
                "--resolve", f"registry.example.com={self.private.address}",
                "--resolve", f"auth.example.com={self.tokens.host}:{self.tokens.port}"]

    def digest(self, name: str) -> str:
        return self.images[name].digest

    def check(self, tmp: Path, *args: str, conf: str = CONF, certs: Path | None = None,
              auth: Mapping[str, object] | None = None, policy: str = ACCEPT_ALL,
              columns: int = 80, node: bool = True, cwd: Path | None = None) -> Result:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "registries.conf").write_text(conf)
        (tmp / "policy.json").write_text(policy)
        (tmp / "auth.json").write_text(json.dumps({"auths": dict(auth or {})}))
        (tmp / "drop-ins").mkdir(exist_ok=True)
        files = ["--registries-conf", str(tmp / "registries.conf"),
                 "--registries-conf-dir", str(tmp / "drop-ins"),
                 "--policy", str(tmp / "policy.json"),
                 "--certs-dir", str(certs or self.certs_d),
                 "--authfile", str(tmp / "auth.json")] if node else []
        command = [sys.executable, "-m", "mirrorlab.cli", "check", *files, "--offline-names",
                   *self.resolve_args, "--connect-timeout", "2", "--read-timeout", "10", *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp),
               "COLUMNS": str(columns)}
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env,
                              check=False, cwd=cwd or tmp)
        result = Result(done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        if "--json" not in args:
            wide = [line for line in done.stdout.splitlines() if len(line) > columns]
            assert not wide, done.stdout
        return result


@pytest.fixture(scope="module")
def check_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckLab]:
    work = tmp_path_factory.mktemp("check")
    ca = LabCA("lab", work / "ca")
    private_ca = LabCA("private", work / "private-ca")
    certs_d, partial_d = work / "certs.d", work / "certs-without-mirror2.d"
    for root in (certs_d, partial_d):
        for host in ("quay.io", "mirror.example.com", "registry.example.com"):
            ca.trust_in(root, host)
    private_ca.trust_in(certs_d, "mirror2.example.net")

    def tls(authority: LabCA, label: str, name: str) -> TlsFiles:
        cert = authority.issue(label, name)
        return TlsFiles(str(cert.cert), str(cert.key), str(authority.ca_path))

    source = RegistryProcess(work, "source", tls=tls(ca, "quay", "quay.io"))
    mirror = RegistryProcess(work, "mirror", tls=tls(ca, "mirror", "mirror.example.com"))
    mirror2 = RegistryProcess(work, "mirror2",
                              tls=tls(private_ca, "mirror2", "mirror2.example.net"))
    private = RegistryProcess(work, "private",
                              tls=tls(ca, "private", "registry.example.com"))
    tokens = TokenServer(work / "tokens", users={"puller": PASSWORD})
    started: list[RegistryProcess] = []
    try:
        tokens.start()
        for registry in (source, mirror, mirror2, private):
            started.append(registry.start())
        lab = CheckLab(work, source, mirror, mirror2, private, tokens, certs_d, partial_d)
        client = {r.name: RegistryClient(r.url, r.tls.ca if r.tls else None)
                  for r in (source, mirror, mirror2, private)}
        images: dict[str, Image | ImageIndex] = {
            "app": make_image("check-app"),
            "partial": make_image("check-partial", (4096, 65536, 2048)),
            "multi": make_index("check-multi"),
            "multi-full": make_index("check-multi-full"),
            "only-source": make_image("check-only-source"),
            "tls": make_image("check-tls"),
            "corrupt": make_image("check-corrupt", (4096, 8192)),
            "private": make_image("check-private"),
        }
        payload = payload_image({
            "kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": "4.99.0"},
            "spec": {"tags": [
                {"name": "app", "from": {"kind": "DockerImage",
                                         "name": f"quay.io/ns/app@{images['app'].digest}"}},
                {"name": "only", "from": {"kind": "DockerImage",
                                          "name": "quay.io/ns/only-source:v1"}}]}})
        images["release"] = payload
        lab.images = images
        for name in ("app", "partial", "multi", "multi-full", "only-source", "corrupt",
                     "release"):
            client["source"].push_image(f"ns/{name}", images[name], "v1")
        for name in ("app", "partial", "multi", "multi-full", "corrupt", "release"):
            client["mirror"].push_image(f"ns/{name}", images[name], "v1")
        client["mirror2"].push_image("ns/partial", images["partial"], "v1")
        client["mirror2"].push_image("tls/app", images["tls"], "v1")
        client["source"].push_image("tls/app", images["tls"], "v1")
        client["private"].push_image("private/app", images["private"], "v1")
        partial, multi = images["partial"], images["multi"]
        assert isinstance(partial, Image) and isinstance(multi, ImageIndex)
        _lose(mirror, "ns/partial", "layer", partial.layers[1].digest)
        _lose(mirror, "ns/multi", "manifest", multi.images[1].digest)
        corrupt = images["corrupt"]
        assert isinstance(corrupt, Image)
        hex_ = corrupt.layers[1].digest.split(":", 1)[1]
        data = mirror.data / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"
        body = data.read_bytes()
        data.write_bytes(body[:100] + bytes([body[100] ^ 0xFF]) + body[101:])  # same size
        private.stop()  # restart requiring tokens, same storage
        private.auth = tokens.registry_auth("http://auth.example.com/token")
        private.start()
        yield lab
    finally:
        for registry in started:
            registry.stop()
        tokens.stop()


def test_all_present_exits_0(check_lab: CheckLab, tmp_path: Path) -> None:
    app = check_lab.digest("app")
    result = check_lab.check(tmp_path, "quay.io/ns/app:v1", f"quay.io/ns/app@{app}",
                             "quay.io/ns/multi-full:v1")
    assert result.status == 0, result.out + result.err
    blocks = result.out.split("\n\n")
    assert blocks[0].splitlines() == [
        "ok           quay.io/ns/app:v1",
        "             from mirror.example.com/ns/app: 3 blobs"]
    assert blocks[1].splitlines()[0] == f"ok           quay.io/ns/app@{app[:19]}..."
    assert flat(blocks[2]) == ("ok quay.io/ns/multi-full:v1 from mirror.example.com/ns/"
                               "multi-full: linux/amd64, linux/arm64; 4 blobs")
    assert result.out.splitlines()[-1] == "3 images checked (sticky mode): 3 ok"


def test_missing_on_the_mirror_and_disconnected(check_lab: CheckLab, tmp_path: Path) -> None:
    """On the source only: ok while the source is reachable (with a note), fails air-gapped,
    and --disconnected contacts no source registry."""
    connected = check_lab.check(tmp_path / "connected", "quay.io/ns/only-source:v1")
    assert connected.status == 0, connected.out
    assert "from quay.io/ns/only-source: 3 blobs" in connected.out
    assert "note: served by the source, not a mirror:" in connected.out

    seen = len(check_lab.source.requests_seen())
    result = check_lab.check(tmp_path / "air", "--disconnected", "--json",
                             "quay.io/ns/only-source:v1", f"quay.io/ns/app@"
                             f"{check_lab.digest('app')}")
    assert len(check_lab.source.requests_seen()) == seen, "--disconnected contacted quay.io"
    assert result.status == 1
    found = result.by_image()
    gone = found["quay.io/ns/only-source:v1"]
    assert gone["verdict"] == "fails" and gone["cause_kind"] == "missing_on_mirror"
    assert gone["cause"] == (
        "manifest unknown on every source: mirror.example.com/ns/only-source (404), "
        "mirror2.example.net/ns/only-source (404), quay.io (not contacted: --disconnected)")
    assert gone["fixes"] == [
        "mirror quay.io/ns/only-source:v1 to mirror.example.com/ns/only-source",
        "mirror quay.io/ns/only-source:v1 to mirror2.example.net/ns/only-source"]
    assert found[f"quay.io/ns/app@{check_lab.digest('app')}"]["verdict"] == "ok"

    text = check_lab.check(tmp_path / "text", "--disconnected", "quay.io/ns/only-source:v1")
    assert text.status == 1
    assert text.out.splitlines()[:4] == [
        "fails        quay.io/ns/only-source:v1",
        "             cause: manifest unknown on every source:",
        "               mirror.example.com/ns/only-source (404),",
        "               mirror2.example.net/ns/only-source (404), quay.io (not contacted:"]
    assert len(check_lab.source.requests_seen()) == seen


def test_assume_down_is_never_contacted(check_lab: CheckLab, tmp_path: Path) -> None:
    seen = len(check_lab.mirror.requests_seen())
    result = check_lab.check(tmp_path, "--json", "--assume-down", "mirror.example.com",
                             "quay.io/ns/app:v1")
    assert len(check_lab.mirror.requests_seen()) == seen
    verdict = result.objects[0]
    assert (result.status, verdict["verdict"], verdict["served_by"]) == (
        0, "ok", "quay.io/ns/app")
    assert "mirror.example.com (not contacted: --assume-down)" in str(verdict["notes"])


# mode -> (exit status, verdict, a line of the text output)
LAYER_MODES = {
    "sticky": (1, "fails", "cause: layer sha256:"),
    "blob": (0, "ok", "note: a node before OCP 4.22 fails this: layer sha256:"),
    # BLOB_UNKNOWN: blob mode moves on too, so only sticky nodes fail what resilient serves
    "resilient": (0, "ok", "note: a node before OCP 4.22 fails this: layer sha256:"),
}


@pytest.mark.parametrize("mode", list(LAYER_MODES))
def test_missing_layer_in_each_mode(check_lab: CheckLab, tmp_path: Path, mode: str) -> None:
    """The mirror lost a layer (distribution answers 404 BLOB_UNKNOWN): sticky fails it,
    blob mode moves on to mirror2 (PR #845's rule), resilient too, both say who fails."""
    partial = check_lab.images["partial"]
    assert isinstance(partial, Image)
    lost = partial.layers[1].digest
    ref = f"quay.io/ns/partial@{partial.digest}"
    status, verdict, line = LAYER_MODES[mode]
    result = check_lab.check(tmp_path / "text", "--fallback", mode, ref)
    assert result.status == status, result.out
    assert result.out.startswith(f"{verdict:<13}quay.io/ns/partial@")
    assert f" {line}" in flat(result.out), result.out
    data = check_lab.check(tmp_path / "json", "--fallback", mode, "--json", ref).objects[0]
    assert data["verdict"] == verdict
    assert data["served_by"] == "mirror.example.com/ns/partial"
    fix = (f"mirror quay.io/ns/partial@{partial.digest} to mirror.example.com/ns/partial "
           "again: its copy lacks this layer")
    assert data["fixes"] == [fix]
    if mode == "sticky":
        assert data["cause"] == (f"layer {lost} missing on mirror.example.com/ns/partial "
                                 "(404 BLOB_UNKNOWN)")
        assert data["notes"] == ["an OCP 4.22 node (blob fallback) would try "
                                 "mirror2.example.net/ns/partial next: see --fallback blob"]
    else:
        attempts = [(a["source"].split("/")[0], a["outcome"]) for a in data["attempts"]
                    if a["digest"] == lost]
        assert attempts == [("mirror.example.com", "not_found"),
                            ("mirror2.example.net", "served")]


def test_missing_platform_of_an_index(check_lab: CheckLab, tmp_path: Path) -> None:
    multi = check_lab.images["multi"]
    assert isinstance(multi, ImageIndex)
    arm = multi.images[1].digest
    result = check_lab.check(tmp_path / "all", "--json", "quay.io/ns/multi:v1")
    data = result.objects[0]
    assert (result.status, data["verdict"], data["cause_kind"]) == (1, "fails",
                                                                    "missing_platform")
    assert data["cause"] == (f"platform linux/arm64 ({arm}) of the index missing on "
                             "mirror.example.com/ns/multi (404)")
    assert data["fixes"][0] == (f"mirror every platform of quay.io/ns/multi@{multi.digest} "
                                "to mirror.example.com/ns/multi")
    amd64 = check_lab.check(tmp_path / "amd64", "--platform", "linux/amd64",
                            "quay.io/ns/multi:v1")
    assert amd64.status == 0, amd64.out
    assert "from mirror.example.com/ns/multi: linux/amd64; 2 blobs" in amd64.out
    s390x = check_lab.check(tmp_path / "s390x", "--json", "--platform", "linux/s390x",
                            "quay.io/ns/multi:v1")
    assert s390x.objects[0]["cause"] == ("the index has no linux/s390x manifest (it has "
                                         "linux/amd64, linux/arm64)")


def test_tls_host_without_its_ca_in_certs_d(check_lab: CheckLab, tmp_path: Path) -> None:
    """quay.io/tls is blocked; its only mirror's CA is in one certs.d and not the other."""
    seen = len(check_lab.source.requests_seen())
    without = check_lab.check(tmp_path / "without", "--json", "quay.io/tls/app:v1",
                              certs=check_lab.certs_without_mirror2)
    data = without.objects[0]
    assert (without.status, data["verdict"], data["cause_kind"]) == (1, "fails", "tls")
    assert data["cause"] == ("no source serves the manifest: mirror2.example.net (TLS: "
                             "certificate not trusted), quay.io/tls blocked")
    assert data["fixes"] == [
        "add the CA of mirror2.example.net to the image config's additionalTrustedCA (on a "
        f"node: {check_lab.certs_without_mirror2}/mirror2.example.net/ca.crt)"]
    with_ca = check_lab.check(tmp_path / "with", "quay.io/tls/app:v1")
    assert with_ca.status == 0, with_ca.out
    assert "from mirror2.example.net/tls/app" in with_ca.out
    assert len(check_lab.source.requests_seen()) == seen, "a blocked source was contacted"


def test_mirror_that_needs_credentials(check_lab: CheckLab, tmp_path: Path) -> None:
    anonymous = check_lab.check(tmp_path / "anonymous", "--json", "quay.io/private/app:v1")
    data = anonymous.objects[0]
    assert (anonymous.status, data["cause_kind"]) == (1, "credentials")
    assert data["cause"] == ("no source serves the manifest: registry.example.com (denied: "
                             "no credentials in auth.json), quay.io/private blocked")
    assert data["fixes"] == ["add credentials for registry.example.com to the pull secret "
                             "(the node's auth.json)"]
    auth = {"registry.example.com": {
        "auth": base64.b64encode(f"puller:{PASSWORD}".encode()).decode()}}
    signed_in = check_lab.check(tmp_path / "signed-in", "quay.io/private/app:v1", auth=auth)
    assert signed_in.status == 0, signed_in.out + signed_in.err
    wrong = {"registry.example.com": {"auth": base64.b64encode(b"puller:nope").decode()}}
    refused = check_lab.check(tmp_path / "wrong", "--json", "quay.io/private/app:v1",
                              auth=wrong).objects[0]
    assert refused["cause_kind"] == "credentials"
    assert str(refused["fixes"][0]).startswith("renew the credentials of "
                                               "'registry.example.com' in ")


def test_verify_content_finds_a_corrupt_layer(check_lab: CheckLab, tmp_path: Path) -> None:
    """The mirror's copy of a layer has the right size and other bytes: HEAD cannot tell,
    --verify-content does."""
    ref = f"quay.io/ns/corrupt@{check_lab.digest('corrupt')}"
    assert check_lab.check(tmp_path / "head", ref).status == 0
    result = check_lab.check(tmp_path / "verify", "--json", "--verify-content", ref)
    data = result.objects[0]
    assert (result.status, data["cause_kind"]) == (1, "corrupt")
    assert "(wrong digest)" in str(data["cause"])
    assert str(data["fixes"][0]).startswith("mirror quay.io/ns/corrupt@sha256:")


def test_release_image_read_through_its_mirror(check_lab: CheckLab, tmp_path: Path) -> None:
    """The payload's image-references come from its layers on the mirror (air-gapped);
    each image it names is checked, the payload itself too."""
    seen = len(check_lab.source.requests_seen())
    release = f"quay.io/ns/release@{check_lab.digest('release')}"
    result = check_lab.check(tmp_path, "--json", "--disconnected", "--release-image", release)
    assert len(check_lab.source.requests_seen()) == seen
    found = {str(o["image"]): o for o in result.objects}
    assert list(found) == [release, f"quay.io/ns/app@{check_lab.digest('app')}",
                           "quay.io/ns/only-source:v1"]
    assert [o["verdict"] for o in found.values()] == ["ok", "ok", "fails"]
    assert found["quay.io/ns/only-source:v1"]["inputs"] == [
        {"text": "quay.io/ns/only-source:v1", "origin": "release image, tag only"}]
    assert result.status == 1
    not_a_payload = check_lab.check(tmp_path / "app", "--release-image",
                                    f"quay.io/ns/app@{check_lab.digest('app')}")
    assert not_a_payload.status == 2
    assert not_a_payload.err.splitlines()[-1] == (
        f"error: --release-image quay.io/ns/app@{check_lab.digest('app')}: no "
        "release-manifests/image-references in its layers (is it a release payload?)")


def test_pods_file_and_crs_rendered_on_the_fly(check_lab: CheckLab, tmp_path: Path) -> None:
    """A cluster's CRs (an IDMS, the image config and its CA ConfigMap) rendered as
    `render` does, and the images of `oc get pods -A -o json`."""
    crs = tmp_path / "crs"
    crs.mkdir()
    (crs / "idms.yaml").write_text(
        "apiVersion: config.openshift.io/v1\nkind: ImageDigestMirrorSet\n"
        "metadata:\n  name: mirrors\nspec:\n  imageDigestMirrors:\n"
        "  - source: quay.io/ns\n    mirrors: [mirror.example.com/ns]\n"
        "    mirrorSourcePolicy: NeverContactSource\n")
    (crs / "image.yaml").write_text(
        "apiVersion: config.openshift.io/v1\nkind: Image\nmetadata:\n  name: cluster\n"
        "spec:\n  additionalTrustedCA:\n    name: registry-cas\n")
    ca = (check_lab.certs_d / "mirror.example.com/ca.crt").read_text()
    (crs / "cas.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: registry-cas\n"
        "  namespace: openshift-config\ndata:\n  mirror.example.com: |\n"
        + "".join(f"    {line}\n" for line in ca.splitlines()))
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"initContainers": [{"name": "setup",
                                      "image": f"quay.io/ns/app@{check_lab.digest('app')}"}],
                  "containers": [{"name": "web", "image": "quay.io/ns/app:v1"}]}}]}))
    seen = len(check_lab.source.requests_seen())
    result = check_lab.check(tmp_path / "run", "--crs", "crs", "--authfile", "none.json",
                             "--pods", "pods.json", node=False, cwd=tmp_path)
    assert len(check_lab.source.requests_seen()) == seen  # NeverContactSource
    blocks = result.out.split("\n\n")
    assert blocks[0].splitlines()[:3] == [
        f"ok           quay.io/ns/app@{check_lab.digest('app')[:19]}...",
        "             in pods.json: Pod shop/web init container setup",
        "             from mirror.example.com/ns/app: 3 blobs"]
    assert blocks[1].splitlines()[:3] == [
        "fails        quay.io/ns/app:v1",
        "             in pods.json: Pod shop/web container web",
        "             cause: a tag pull, and every mirror of quay.io/ns is for digest"]
    assert "fix: add an ImageTagMirrorSet for tag pulls of quay.io/ns" in result.out
    assert result.status == 1


def test_mixed_run_reads_well_at_80_columns(check_lab: CheckLab, tmp_path: Path) -> None:
    """Every kind of verdict at once, under COLUMNS=80 (and capped at 100 on a wide
    terminal): no line runs past the width, each verdict starts its block, the summary
    groups by cause. A signed image whose mirror holds no signature fails, as the pull
    would."""
    policy = json.dumps({"default": [{"type": "insecureAcceptAnything"}], "transports": {
        "docker": {"quay.io/ns/multi-full": [{"type": "sigstoreSigned",
                                              "keyPath": "/etc/pki/cosign.pub"}],
                   "quay.io/ns/refused": [{"type": "reject"}]}}})
    images = tmp_path / "images.txt"
    partial = check_lab.digest("partial")
    images.write_text(f"""# every verdict
quay.io/ns/app:v1
quay.io/ns/multi-full:v1    # signed
quay.io/ns/refused:v1
quay.io/ns/partial@{partial}
quay.io/ns/multi:v1
quay.io/tls/app:v1
quay.io/private/app:v1
""")
    seen = len(check_lab.source.requests_seen())
    for columns, limit in ((80, 80), (200, 100)):
        result = check_lab.check(tmp_path / str(columns), "--images", str(images),
                                 "--disconnected", policy=policy, columns=columns,
                                 certs=check_lab.certs_without_mirror2)
        lines = result.out.splitlines()
        assert max(len(line) for line in lines) <= limit, result.out
        assert result.status == 1
        heads = [line.split()[0] if not line.startswith("not checked") else "not checked"
                 for line in lines if line and not line.startswith(" ")]
        assert heads[:7] == ["ok", "fails", "fails", "fails", "fails", "fails", "fails"]
        summary = result.out.split("\n\n")[-1]
        assert summary.splitlines()[0] == "7 images checked (sticky mode): 1 ok, 6 fails"
        causes = [line.strip().split(": ")[0] for line in summary.splitlines()
                  if line.startswith("  ") and not line.startswith("    ")]
        assert sorted(causes) == sorted([
            "signatures missing or not accepted", "rejected by policy.json",
            "layer or config missing where the manifest came from",
            "platform missing from the mirror's copy of an index",
            "TLS", "credentials missing or refused"]), summary
        block = result.out.split("\n\n")[1]
        assert flat(block).startswith("fails quay.io/ns/multi-full:v1 ")
        assert "its signatures do not satisfy policy.json: A signature was required, but " \
            "no signature exists" in flat(block)
    assert len(check_lab.source.requests_seen()) == seen
