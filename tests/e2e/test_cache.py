"""`mirrorlab serve --cache DIR` with real registries, the fault proxy and podman.

The chain is quay.io/ns (blocked) behind one mirror, mirror1, reached through the fault
proxy, so that every upstream request of the cache is one the fault proxy counts: a blob
corrupted upstream never enters the cache; a cache file corrupted on disk is removed by
`mirrorlab cache verify` and not served after it; 32 concurrent cold pulls fetch each blob
once; a restart keeps the cache; a full disk (a small tmpfs) serves uncached; with every
source down, podman still pulls by digest from the cache and by tag with --serve-stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from mirrorlab.harness.clients import PodmanClient as Podman
from mirrorlab.harness.faults import Fault
from mirrorlab.harness.images import OCI_MANIFEST, Image

from .lab import Lab, ProxyProcess


def _conf(lab: Lab) -> str:
    return ('[[registry]]\nlocation = "quay.io/ns"\nblocked = true\n[[registry.mirror]]\n'
            f'location = "{lab.faults.address}/ns"\ninsecure = true\n')


def _app(lab: Lab) -> Image:
    image = lab.images["app"]
    assert isinstance(image, Image)
    return image


def _start(proxy_factory: object, lab: Lab, cache: Path, *extra: str) -> ProxyProcess:
    proxy: ProxyProcess = proxy_factory(lab, _conf(lab),  # type: ignore[operator]
                                        extra=("--cache", str(cache), *extra))
    return proxy


def _cache_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", "cache", *args],
                          capture_output=True, text=True, check=False, timeout=120)


def _entries(cache: Path) -> dict[str, int]:
    listed = _cache_cli("ls", "--json", str(cache))
    assert listed.returncode == 0, listed.stderr
    return {data["digest"]: data["bytes"] for data in map(json.loads, listed.stdout.splitlines())
            if data["kind"] != "tag"}


def _wait_for(what: str, check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _blob_gets(lab: Lab, digest: str) -> int:
    return sum(1 for line in lab.faults.requests if line == f"GET /v2/ns/app/blobs/{digest}")


def _pull(proxy: ProxyProcess, app: Image) -> None:
    """The manifest by digest, then every blob, each checked."""
    status, headers, body = proxy.get(f"/v2/quay.io/ns/app/manifests/{app.digest}",
                                      {"Accept": OCI_MANIFEST})
    assert status == 200 and body == app.manifest.data
    for blob in (app.config, *app.layers):
        status, headers, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{blob.digest}")
        assert status == 200 and body == blob.data, (status, headers)


def _stored(cache: Path, app: Image) -> bool:
    entries = _entries(cache)
    return all(blob.digest in entries for blob in (app.config, *app.layers)) \
        and app.digest in entries


def test_podman_pulls_from_the_cache_when_every_source_is_down(
        clean_lab: Lab, proxy_factory: object, podman: Podman, tmp_path: Path) -> None:
    """Cold: from mirror1, each response marked miss. Then mirror1 refuses: by digest,
    every request is a hit and nothing is contacted; by tag, --serve-stale answers with
    the last verified digest, marked stale."""
    lab, app, cache = clean_lab, _app(clean_lab), tmp_path / "cache"
    proxy = _start(proxy_factory, lab, cache, "--serve-stale")
    by_digest = f"{proxy.address}/quay.io/ns/app@{app.digest}"
    by_tag = f"{proxy.address}/quay.io/ns/app:v1"
    for ref in (by_tag, by_digest):
        result = podman.pull(ref)
        assert result.returncode == 0, result.stderr
    _wait_for("the cache to hold the image", lambda: _stored(cache, app))
    lab.faults.set(Fault("refuse"))
    lab.faults.requests.clear()
    subprocess.run([*podman.base, "rmi", "-a", "-f"], capture_output=True, env=podman.env,
                   check=False)
    result = podman.pull(by_digest)
    assert result.returncode == 0, result.stderr
    assert podman.digest(by_digest) == app.digest
    hits = [e for e in proxy.events() if e["outcome"] == "cache_hit"]
    assert {e["digest"] for e in hits} >= {app.digest, app.config.digest,
                                           *(layer.digest for layer in app.layers)}
    assert all(e["source"] == "cache" for e in hits)
    subprocess.run([*podman.base, "rmi", "-a", "-f"], capture_output=True, env=podman.env,
                   check=False)
    result = podman.pull(by_tag)
    assert result.returncode == 0, result.stderr
    stale = [e for e in proxy.events() if e["outcome"] == "cache_stale"]
    assert stale and stale[-1]["digest"] == app.digest
    assert lab.faults.requests == []  # refused: nothing reached mirror1's registry
    status, headers, _ = proxy.get("/v2/quay.io/ns/app/manifests/v1", {"Accept": OCI_MANIFEST})
    assert status == 200 and headers["X-Mirrorlab-Cache"] == "stale"
    assert headers["Docker-Content-Digest"] == app.digest
    _, _, metrics = proxy.get("/metrics")
    assert b'mirrorlab_cache_requests_total{kind="manifest",state="stale"}' in metrics
    _, _, body = proxy.get("/mirrorlab/explain?ref=quay.io/ns/app:v1")
    state = json.loads(body)["cache"]
    assert state["enabled"] and state["tag"]["digest"] == app.digest
    assert "prove a configuration without --cache" in state["note"]


@pytest.mark.parametrize("blob", ["config", "large-layer"])
def test_a_blob_corrupted_upstream_never_enters_the_cache(
        clean_lab: Lab, proxy_factory: object, tmp_path: Path, blob: str) -> None:
    lab, app, cache = clean_lab, _app(clean_lab), tmp_path / "cache"
    proxy = _start(proxy_factory, lab, cache)
    target = app.config if blob == "config" else app.layers[-1]
    status, _, _ = proxy.get(f"/v2/quay.io/ns/app/manifests/{app.digest}",
                             {"Accept": OCI_MANIFEST})
    assert status == 200
    lab.faults.set(Fault("corrupt", path=f"/blobs/{target.digest}",
                         after=len(target.data) // 2))
    for _ in range(2):
        try:
            status, _, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{target.digest}")
        except Exception:  # the large one is cut before its last piece
            status, body = 0, b""
        assert status != 200 and body != target.data
    assert _blob_gets(lab, target.digest) == 2  # the bad copy was never served from cache
    assert target.digest not in _entries(cache)
    assert not list((cache / "tmp").iterdir())
    fills = [e for e in proxy.events("cache_fill") if e["digest"] == target.digest]
    assert [e["result"] for e in fills] == ["failed", "failed"]
    lab.faults.set(Fault())
    _pull(proxy, app)
    _wait_for("the intact copy", lambda: target.digest in _entries(cache))


def test_a_cache_file_corrupted_on_disk_is_removed_by_verify(
        clean_lab: Lab, proxy_factory: object, tmp_path: Path) -> None:
    lab, app, cache = clean_lab, _app(clean_lab), tmp_path / "cache"
    proxy = _start(proxy_factory, lab, cache)
    _pull(proxy, app)
    _wait_for("the cache to hold the image", lambda: _stored(cache, app))
    layer = app.layers[-1]  # 6 MiB: served with sendfile, size-checked, not re-hashed
    path = cache / "blobs" / "sha256" / layer.digest.split(":")[1]
    with open(path, "r+b") as handle:
        handle.seek(len(layer.data) // 3)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    verified = _cache_cli("verify", str(cache))
    assert verified.returncode == 1
    assert f"removed blob {layer.digest}: content is sha256:" in verified.stdout
    assert "1 removed" in verified.stdout
    assert not path.exists()
    before = _blob_gets(lab, layer.digest)
    status, headers, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{layer.digest}")
    assert status == 200 and body == layer.data
    assert headers["X-Mirrorlab-Cache"] == "miss"  # never served from the bad file
    assert _blob_gets(lab, layer.digest) == before + 1
    _wait_for("the fresh copy", lambda: layer.digest in _entries(cache))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == layer.digest.split(":")[1]
    assert _cache_cli("verify", str(cache)).returncode == 0


async def _concurrent_pulls(base: str, app: Image, pulls: int) -> list[bool]:
    async def pull(session: aiohttp.ClientSession) -> bool:
        async with session.get(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST}) as r:
            manifest = json.loads(await r.read())
        for blob in [manifest["config"], *manifest["layers"]]:
            async with session.get(f"{base}/blobs/{blob['digest']}") as response:
                data = await response.read()
                if "sha256:" + hashlib.sha256(data).hexdigest() != blob["digest"]:
                    return False
        return True

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await asyncio.gather(*(pull(session) for _ in range(pulls)))


def test_concurrent_cold_pulls_fetch_each_blob_once(
        clean_lab: Lab, proxy_factory: object, tmp_path: Path) -> None:
    lab, app, cache = clean_lab, _app(clean_lab), tmp_path / "cache"
    lab.faults.set(Fault("slow", path="/blobs/", rate=8 * 1024 * 1024))  # they overlap
    proxy = _start(proxy_factory, lab, cache)
    results = asyncio.run(_concurrent_pulls(f"{proxy.url}/v2/quay.io/ns/app", app, 32))
    assert all(results)
    for blob in (app.config, *app.layers):
        assert _blob_gets(lab, blob.digest) == 1, blob.digest
    joined = [e for e in proxy.events("cache") if e.get("joined")]
    assert joined  # the others read the first one's fetch (or, once it was in, the cache)
    _wait_for("the cache to hold the image", lambda: _stored(cache, app))


def test_a_restart_keeps_the_cache(clean_lab: Lab, proxy_factory: object,
                                   tmp_path: Path) -> None:
    lab, app, cache = clean_lab, _app(clean_lab), tmp_path / "cache"
    first = _start(proxy_factory, lab, cache)
    _pull(first, app)
    _wait_for("the cache to hold the image", lambda: _stored(cache, app))
    first.stop()
    lab.faults.set(Fault("refuse"))
    second = _start(proxy_factory, lab, cache)
    _pull(second, app)
    assert {e["outcome"] for e in second.events()} == {"cache_hit"}
    started = second.events("cache")[0]
    assert started["entries"] == 4 and started["removed_temporary"] == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    """An 8 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:  # `make test` runs as root (README); never a silent skip
        pytest.fail("mounting a tmpfs needs root: run the suite as root", pytrace=False)
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_serves_uncached(clean_lab: Lab, proxy_factory: object, podman: Podman,
                                     small_disk: Path) -> None:
    """The 6 MiB layer does not fit beside 4 MiB of someone else's: podman pulls it all
    the same, uncached; what fits is cached."""
    lab, app = clean_lab, _app(clean_lab)
    cache = small_disk / "cache"
    (small_disk / "someone-else").write_bytes(b"\0" * 4 * 1024 * 1024)
    proxy = _start(proxy_factory, lab, cache)
    ref = f"{proxy.address}/quay.io/ns/app@{app.digest}"
    result = podman.pull(ref)
    assert result.returncode == 0, result.stderr
    assert podman.digest(ref) == app.digest
    large = app.layers[-1]
    uncached = [e for e in proxy.events("cache_fill") if e["result"] == "uncached"]
    assert [e["digest"] for e in uncached] == [large.digest]
    assert "no space on the cache's disk" in str(uncached[0]["reason"])
    _wait_for("the small blobs", lambda: app.config.digest in _entries(cache))
    assert large.digest not in _entries(cache)
    assert not list((cache / "tmp").iterdir())
    status, headers, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{large.digest}")
    assert status == 200 and body == large.data and headers["X-Mirrorlab-Cache"] == "miss"
