"""podman and skopeo pulling through `mirrorlab serve`, with real registries and faults.

Each case names a configuration, a fault on the first mirror, what is pulled, and which
physical source must serve the manifest. Every pull's image digest is checked on the
client side too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mirrorlab.harness.clients import PodmanClient as Podman
from mirrorlab.harness.faults import Fault
from mirrorlab.harness.images import Image, ImageIndex

from .lab import Lab


def chain(lab: Lab, *, blocked: bool = False, pull_from: tuple[str, str] = ("", ""),
          mirror2: str = "mirror2.example.net/ns") -> str:
    """quay.io/ns with mirror1 (behind the fault proxy, plain HTTP) then mirror2 (TLS)."""
    lines = ["[[registry]]", 'location = "quay.io/ns"']
    if blocked:
        lines.append("blocked = true")
    for location, insecure, setting in ((f"{lab.faults.address}/ns", True, pull_from[0]),
                                        (mirror2, False, pull_from[1])):
        lines += ["[[registry.mirror]]", f'location = "{location}"']
        if insecure:
            lines.append("insecure = true")
        if setting:
            lines.append(f'pull-from-mirror = "{setting}"')
    return "\n".join(lines) + "\n"


def _app(lab: Lab) -> Image:
    image = lab.images["app"]
    assert isinstance(image, Image)
    return image


SERVED = [
    # id, chain options, fault on mirror1, pull by ("digest"|"tag"), serving host
    ("healthy", {}, Fault(), "digest", "mirror1"),
    ("first-mirror-refuses", {}, Fault("refuse"), "digest", "mirror2.example.net"),
    ("first-mirror-404", {}, Fault("status", path="/manifests/", status=404), "tag",
     "mirror2.example.net"),
    ("first-mirror-500", {}, Fault("status", status=500), "digest", "mirror2.example.net"),
    ("first-mirror-hangs", {}, Fault("hang", path="/manifests/"), "digest",
     "mirror2.example.net"),
    ("digest-only-mirrors-tag-pull", {"pull_from": ("digest-only", "digest-only")}, Fault(),
     "tag", "quay.io"),
    ("tag-only-mirrors-digest-pull", {"pull_from": ("tag-only", "tag-only")}, Fault(),
     "digest", "quay.io"),
    ("blocked-source-behind-mirrors", {"blocked": True}, Fault("refuse"), "tag",
     "mirror2.example.net"),
]


@pytest.mark.parametrize(("options", "fault", "by", "host"),
                         [case[1:] for case in SERVED], ids=[case[0] for case in SERVED])
def test_podman_pull_is_served_by(clean_lab: Lab, proxy_factory: object, podman: Podman,
                                  options: dict[str, Any], fault: Fault, by: str,
                                  host: str) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab, **options))  # type: ignore[operator]
    lab.faults.set(fault)
    app = _app(lab)
    ref = f"quay.io/ns/app@{app.digest}" if by == "digest" else "quay.io/ns/app:v1"
    source_requests = len(lab.source.requests_seen())
    result = podman.pull(f"{proxy.address}/{ref}")
    assert result.returncode == 0, result.stderr
    assert podman.digest(f"{proxy.address}/{ref}") == app.digest
    served = proxy.served("manifest", "quay.io/ns/app")
    expected = lab.faults.address if host == "mirror1" else host
    assert served and served[0].startswith(expected + "/"), proxy.events()
    if host != "quay.io":
        assert len(lab.source.requests_seen()) == source_requests, "the source was contacted"


def test_blob_source_header_and_verification(clean_lab: Lab, proxy_factory: object) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab))  # type: ignore[operator]
    app = _app(lab)
    status, headers, body = proxy.get(
        f"/v2/quay.io/ns/app/manifests/{app.digest}",
        {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 200 and body == app.manifest.data
    assert headers["Docker-Content-Digest"] == app.digest
    assert headers["X-Mirrorlab-Source"] == f"{lab.faults.address}/ns/app@{app.digest}"
    layer = app.layers[-1]
    status, headers, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{layer.digest}",
                                      {"Range": "bytes=100-199"})
    assert status == 206 and body == layer.data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(layer.data)}"


MID_STREAM = [
    # id, fault on mirror1's large layer, expected failed outcome before mirror2 serves
    ("reset", "reset", "interrupted"),
    ("truncate", "truncate", "interrupted"),
]
MODES = ["sticky", "blob", "resilient"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "outcome"), [c[1:] for c in MID_STREAM],
                         ids=[c[0] for c in MID_STREAM])
def test_large_blob_cut_mid_stream(clean_lab: Lab, proxy_factory: object, podman: Podman,
                                   kind: str, outcome: str, mode: str) -> None:
    """A mirror that dies mid-blob, before 1 MiB. A node resumes a cut body only at the
    same source and only after 1 MiB of progress (`docker/body_reader.go`), so sticky and
    blob mode fail the pull; resilient mode takes the rest from mirror2 by Range."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))  # type: ignore[operator]
    app = _app(lab)
    layer = app.layers[-1]
    lab.faults.set(Fault(kind, path=f"/blobs/{layer.digest}", after=1_000_000))
    ref = f"{proxy.address}/quay.io/ns/app@{app.digest}"
    result = podman.pull(ref)
    attempts = [e for e in proxy.events() if str(e["logical"]).endswith(layer.digest)]
    if mode != "resilient":
        assert result.returncode != 0
        assert {e["outcome"] for e in attempts} == {outcome}, attempts
        assert all(str(e["source"]).startswith(lab.faults.address) for e in attempts)
        return
    assert result.returncode == 0, result.stderr
    assert podman.digest(ref) == app.digest
    assert [e["outcome"] for e in attempts][:2] == [outcome, "served"], attempts
    assert str(attempts[1]["source"]).startswith("mirror2.example.net/")
    assert attempts[1]["fallback"] is True
    assert attempts[1]["rescued"] == ["sticky", "blob"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("blob", ["config", "large-layer"])
def test_corrupt_blob_never_completes(clean_lab: Lab, proxy_factory: object, podman: Podman,
                                      blob: str, mode: str) -> None:
    """Flipped bytes. A small blob is verified before any byte is sent; a large one streams
    and its connection is cut before the last chunk (podman stores nothing). A node fails
    such a pull (a wrong digest is no fallback trigger); resilient mode serves the small
    one from mirror2 in the same request, and the large one on the next pull, mirror1
    being a suspect for it then."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))  # type: ignore[operator]
    app = _app(lab)
    target = app.config if blob == "config" else app.layers[-1]
    lab.faults.set(Fault("corrupt", path=f"/blobs/{target.digest}", after=len(target.data) // 2))
    ref = f"{proxy.address}/quay.io/ns/app@{app.digest}"
    result = podman.pull(ref)
    if blob == "large-layer" or mode != "resilient":
        assert result.returncode != 0
        images = subprocess.run([*podman.base, "images", "-q"], capture_output=True, text=True,
                                env=podman.env, check=True)
        assert images.stdout.strip() == ""
        result = podman.pull(ref)
    attempts = [e for e in proxy.events() if str(e["logical"]).endswith(target.digest)]
    assert "digest" in [e["outcome"] for e in attempts]
    if mode != "resilient":
        assert result.returncode != 0
        assert "served" not in [e["outcome"] for e in attempts]
        return
    assert result.returncode == 0, result.stderr
    assert podman.digest(ref) == app.digest
    assert attempts[-1]["outcome"] == "served"
    assert str(attempts[-1]["source"]).startswith("mirror2.example.net/")


def test_image_only_on_source(clean_lab: Lab, proxy_factory: object, podman: Podman) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab))  # type: ignore[operator]
    result = podman.pull(f"{proxy.address}/quay.io/ns/only-source:v1")
    assert result.returncode == 0, result.stderr
    outcomes = [(e["source"], e["outcome"]) for e in proxy.events() if e["kind"] == "manifest"]
    assert [o for _, o in outcomes] == ["not_found", "not_found", "served"]
    assert str(outcomes[-1][0]) == "quay.io/ns/only-source:v1"


def test_blocked_source_is_never_contacted(clean_lab: Lab, proxy_factory: object) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab, blocked=True, mirror2="127.0.0.1:9/ns"))  # type: ignore[operator]
    lab.faults.set(Fault("refuse"))
    before = len(lab.source.requests_seen())
    status, _, body = proxy.get("/v2/quay.io/ns/app/manifests/v1")
    assert status == 403
    error = json.loads(body)["errors"][0]
    assert error["code"] == "DENIED"
    assert error["message"].startswith("(Mirrors also failed: [")
    assert "quay.io/ns/app:v1: registry quay.io/ns is blocked in" in error["message"]
    assert [d["outcome"] for d in error["detail"]] == ["connect", "connect", "blocked"]
    assert len(lab.source.requests_seen()) == before


def test_policy_rejection_touches_nothing(clean_lab: Lab, proxy_factory: object,
                                          podman: Podman) -> None:
    lab = clean_lab
    policy = json.dumps({"default": [{"type": "insecureAcceptAnything"}],
                         "transports": {"docker": {"quay.io/ns": [{"type": "reject"}]}}})
    proxy = proxy_factory(lab, chain(lab), policy=policy)  # type: ignore[operator]
    before = {r.name: len(r.requests_seen()) for r in (lab.source, lab.mirror1, lab.mirror2)}
    result = podman.pull(f"{proxy.address}/quay.io/ns/app:v1")
    assert result.returncode != 0
    assert "rejected by policy" in result.stderr
    assert lab.faults.requests == []
    assert {r.name: len(r.requests_seen()) for r in (lab.source, lab.mirror1, lab.mirror2)} \
        == before


@pytest.mark.parametrize("mode", MODES)
def test_multi_arch_index_with_skopeo(clean_lab: Lab, proxy_factory: object,
                                      tmp_path: Path, mode: str) -> None:
    """Per-platform manifests come from the source of the index in every node mode (PR
    #845 covers blobs only): a mirror missing them fails `skopeo copy --all` there, and
    only resilient mode takes them from the next source."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))  # type: ignore[operator]
    lab.faults.set(Fault("status", path="/manifests/sha256", status=404))  # per-platform miss
    index = lab.images["multi"]
    assert isinstance(index, ImageIndex)
    out = tmp_path / "copy"
    result = subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false",
         f"docker://{proxy.address}/quay.io/ns/multi:v1", f"dir:{out}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    if mode != "resilient":
        assert result.returncode != 0
        assert "manifest unknown" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert (out / "manifest.json").read_bytes() == index.manifest.data
    for image in index.images:
        assert (out / f"{image.digest.split(':')[1]}.manifest.json").exists()
    served = proxy.served("manifest", "quay.io/ns/multi@")
    assert served and all(s.startswith("mirror2.example.net/") for s in served)
    fallbacks = [e for e in proxy.events() if e["kind"] == "manifest" and e["fallback"]]
    assert fallbacks, "per-platform manifests fell back from the sticky mirror"


@pytest.mark.parametrize("budget", ["48", "0"])
def test_buffer_budget_decides_how_a_small_blob_is_verified(clean_lab: Lab,
                                                           proxy_factory: object,
                                                           budget: str) -> None:
    """Within the budget a corrupt small blob is caught before a byte is sent (the same
    request falls back); with no budget it streams and is cut instead, and the retry goes
    elsewhere. Either way the budget is all given back."""
    import http.client
    import urllib.request

    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--buffer-budget-mib", budget,  # type: ignore[operator]
                                                  "--fallback", "resilient"))
    config = _app(lab).config
    lab.faults.set(Fault("corrupt", path=f"/blobs/{config.digest}", after=len(config.data) // 2))
    url = f"{proxy.url}/v2/quay.io/ns/app/blobs/{config.digest}"
    results = []
    for _ in range(2):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                results.append(response.read() == config.data)
        except (http.client.IncompleteRead, ConnectionError):
            results.append(False)
    assert results == ([True, True] if budget == "48" else [False, True])
    _, _, body = proxy.get("/healthz")
    assert json.loads(body)["buffered_bytes"] == 0
