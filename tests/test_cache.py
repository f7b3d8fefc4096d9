"""The verified cache (`serve --cache DIR`): the store's rules (LRU bound, entries being read
are never evicted, crash safety, restart, verify and prune), then the proxy with the cache
against a scripted in-process registry (hits, single flight, Range, a corrupt upstream
blob, a corrupt cache file, no room, --serve-stale)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mirrorlab.cli import main
from mirrorlab.proxy import cache as cache_module
from mirrorlab.proxy.cache import (
    MARKER,
    CacheStore,
    CacheUnavailable,
    NotACache,
    TagRecord,
    list_cache,
    prune_cache,
    verify_cache,
)
from mirrorlab.proxy.cache_serve import _corked, stale_allowed
from mirrorlab.proxy.fallback import FallbackMode
from mirrorlab.proxy.outcomes import Attempt, Outcome
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.resolve_table import ResolveTable
from mirrorlab.proxy.server import Proxy, ServeOptions
from mirrorlab.proxy.upstream import Timeouts

from .test_attempt_loop import ROWS, Script, _manifest, scripted_proxy

SMALL = bytes(range(256)) * 64  # 16 KiB: verified whole before a byte goes out
LARGE = hashlib.sha256(b"large").digest() * (6 * 1024 * 1024 // 32)  # 6 MiB: streamed


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put(store: CacheStore, data: bytes) -> str:
    """An entry through the store's own path: reserve, temporary file, commit."""
    digest = _digest(data)
    store.reserve(len(data))
    fd, temp = cache_module.new_temporary(store.root)
    os.write(fd, data)
    entry = store.commit_file(fd, temp, "blob", digest, len(data))
    os.close(fd)
    store.unreserve(len(data))
    store.add(entry)
    return digest


# ------------------------------------------------------------ the store


def test_lru_evicts_the_least_recently_used_within_the_bound(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", max_bytes=3000)
    a, b, c = (_put(store, bytes([n]) * 1000) for n in (1, 2, 3))
    entry_a = store.lookup("blob", a)
    assert entry_a is not None
    store.touch(entry_a)  # a is now the most recently used: b goes first
    d = _put(store, b"\x04" * 1000)
    assert [digest for _, digest in store.entries] == [c, a, d]
    assert not store.path("blob", b).exists()
    assert store.used == 3000 and store.evictions == 1
    with pytest.raises(CacheUnavailable, match="more than the cache's bound"):
        store.reserve(3001)


def test_an_entry_being_read_is_never_evicted(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", max_bytes=2000)
    a = _put(store, b"\x01" * 1000)
    b = _put(store, b"\x02" * 1000)
    entry_a, entry_b = store.lookup("blob", a), store.lookup("blob", b)
    assert entry_a is not None and entry_b is not None
    store.pin(entry_a)  # a response is reading it
    c = _put(store, b"\x03" * 1000)  # room is made from b, the next unread one
    assert store.lookup("blob", a) is not None and store.lookup("blob", b) is None
    store.pin(entry_b)
    entry_c = store.lookup("blob", c)
    assert entry_c is not None
    store.pin(entry_c)
    with pytest.raises(CacheUnavailable, match="full of entries being read"):
        store.reserve(1000)
    assert store.path("blob", a).read_bytes() == b"\x01" * 1000
    store.unpin(entry_a)
    store.reserve(1000)  # now a can go
    assert store.lookup("blob", a) is None


def test_a_crash_leaves_no_entry_and_the_next_start_removes_its_temporary_file(
        tmp_path: Path) -> None:
    """A fill killed mid-way: its temporary file is never an entry, and the next start (its
    process being gone) removes it; a live process's fill is left alone."""
    root = tmp_path / "c"
    script = ("import os, sys\nfrom mirrorlab.proxy.cache import CacheStore, new_temporary\n"
              "store = CacheStore(sys.argv[1])\nfd, path = new_temporary(store.root)\n"
              "os.write(fd, b'half a blob')\nprint(path, flush=True)\nos._exit(9)\n")
    crashed = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                             text=True, check=False)
    assert crashed.returncode == 9, crashed.stderr
    left = Path(crashed.stdout.strip())
    assert left.exists()
    live = root / "tmp" / f"{os.getppid()}-1-feed.part"  # the test runner's parent: alive
    live.write_bytes(b"x")
    store = CacheStore(root)
    assert not left.exists() and live.exists()
    assert store.cleaned == [left]
    assert not store.entries
    entries, _, temporary = list_cache(root)
    assert entries == [] and temporary == 1


def test_a_restart_keeps_entries_and_their_recency(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c")
    first = _put(store, b"first")
    second = _put(store, b"second")
    os.utime(store.path("blob", first), (1, 1))
    os.utime(store.path("blob", second), (2, 2))
    entry = store.lookup("blob", first)
    assert entry is not None
    entry.touched -= 60  # its mtime is set at most once a minute: a minute later
    store.touch(entry)
    digest = _digest(b'{"a":1}')
    store.add(store.write_manifest(digest, "application/json", b'{"a":1}'))
    again = CacheStore(tmp_path / "c")
    assert [d for _, d in again.entries][:2] == [second, first]
    assert again.used == store.used
    assert again.read_manifest(digest) == ("application/json", b'{"a":1}')


def test_a_directory_that_is_no_cache_is_refused(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(NotACache, match="not empty and is no mirrorlab cache"):
        CacheStore(tmp_path / "home")
    with pytest.raises(NotACache):
        prune_cache(tmp_path / "home", 0)
    assert (tmp_path / "home" / "notes.txt").exists()
    CacheStore(tmp_path / "new")
    assert (tmp_path / "new" / MARKER).is_file()


def test_verify_removes_bad_entries_and_prune_removes_the_oldest(tmp_path: Path) -> None:
    root = tmp_path / "c"
    store = CacheStore(root)
    good, bad = _put(store, b"good" * 100), _put(store, b"bad!" * 100)
    manifest = _digest(b"{}")
    store.add(store.write_manifest(manifest, "application/json", b"{}"))
    store.write_tag(TagRecord("q.io/ns/app:v1", manifest, "application/json", "m1", 5.0))
    with open(store.path("blob", bad), "r+b") as handle:
        handle.write(b"B")
    results = dict((item.digest, problem) for item, problem in verify_cache(root))
    assert results[good] is None and results[manifest] is None
    problem = results[bad]
    assert problem is not None and "content is sha256:" in problem
    assert not store.path("blob", bad).exists()
    assert main(["cache", "verify", str(root)]) == 0
    os.utime(store.path("blob", good), (1, 1))
    removed = prune_cache(root, len(b"{}") + 40)
    assert [item.digest for item in removed] == [good]
    entries, tags, _ = list_cache(root)
    assert [item.digest for item in entries] == [manifest]
    assert list(tags) == ["q.io/ns/app:v1"]
    prune_cache(root, 0)
    assert list_cache(root)[:2] == ([], {})  # the tag's manifest went: so did the tag


def test_no_room_on_the_disk_is_said_before_a_byte_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CacheStore(tmp_path / "c")
    _put(store, b"x" * 100)

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    fd, _ = cache_module.new_temporary(store.root)
    with pytest.raises(CacheUnavailable, match="no space on the cache's disk"):
        store.allocate(fd, 10 * 1024**4)  # more than evicting everything could free
    os.close(fd)
    assert len(store.entries) == 1  # nothing evicted in vain


STALE = [
    (["connect", "connect"], True),
    (["timeout", "server_error", "blocked"], True),
    (["blocked"], False),  # nothing was asked: a configuration, not an outage
    (["connect", "not_found"], False),  # a source answered that the tag is unknown
    (["denied"], False),
    (["connect", "digest"], False),
]


@pytest.mark.parametrize(("outcomes", "allowed"), STALE)
def test_stale_answers_only_an_outage(outcomes: list[str], allowed: bool) -> None:
    assert stale_allowed([Attempt(f"s{i}", Outcome(o)) for i, o in enumerate(outcomes)]) \
        is allowed


# ------------------------------------------------------------ the proxy with the cache


@dataclass
class Registry:
    """A scripted registry: what it serves, what it saw, and its faults."""

    blobs: dict[str, bytes]
    tags: dict[str, bytes] = field(default_factory=dict)
    flip: bool = False
    """Serve every blob with one byte changed."""
    delay: float = 0.0
    """Seconds between pieces of a blob (so that concurrent requests overlap)."""
    status: int | None = None
    """Answer every request (but /v2/) with this status."""
    blob_gets: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        async def base(request: web.Request) -> web.Response:
            return web.json_response({})

        async def manifests(request: web.Request) -> web.Response:
            if self.status is not None:
                return web.Response(status=self.status)
            reference = request.match_info["reference"]
            body = self.tags.get(reference) or next(
                (b for b in self.tags.values() if _digest(b) == reference), None)
            if body is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]},
                                         status=404)
            return web.Response(body=body, headers={
                "Content-Type": "application/vnd.oci.image.manifest.v1+json",
                "Docker-Content-Digest": _digest(body)})

        async def blobs(request: web.Request) -> web.StreamResponse:
            digest = request.match_info["digest"]
            if request.method == "GET":
                self.blob_gets.append(digest)
            if self.status is not None:
                return web.Response(status=self.status)
            data = self.blobs.get(digest)
            if data is None:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            if self.flip:
                data = data[:-1] + bytes([data[-1] ^ 1])
            response = web.StreamResponse()
            response.content_length = len(data)
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            for offset in range(0, len(data), 256 * 1024):
                await response.write(data[offset:offset + 256 * 1024])
                if self.delay:
                    await asyncio.sleep(self.delay)
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get("/v2/", base)
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifests)
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", blobs)
        return app


Body = Callable[[TestClient[web.Request, web.Application], Proxy], Awaitable[None]]


async def _with_proxy(tmp_path: Path, registry: Registry, body: Body, *,
                      cache: Path | None = None, **options: object) -> None:
    server = TestServer(registry.app())
    await server.start_server()
    try:
        conf = tmp_path / "registries.conf"
        conf.write_text('[[registry]]\nlocation = "src.test/ns"\ninsecure = true\n')
        (tmp_path / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        files = NodeFiles(registries_conf=str(conf), registries_conf_dir=str(tmp_path / "d"),
                          policy=str(tmp_path / "policy.json"), certs_dir=str(tmp_path),
                          auth_file=str(tmp_path / "auth.json"))
        proxy = Proxy(ServeOptions(
            files=files, reload_interval=0, timeouts=Timeouts(connect=2, read=5),
            resolve=ResolveTable({"src.test": ("127.0.0.1", server.port or 0)}, offline=True),
            cache_dir=str(cache or tmp_path / "cache"), **options))  # type: ignore[arg-type]
        async with TestClient(TestServer(proxy.app())) as client:
            await body(client, proxy)
    finally:
        await server.close()


def _run(tmp_path: Path, registry: Registry, body: Body, *, cache: Path | None = None,
         **options: object) -> None:
    asyncio.run(_with_proxy(tmp_path, registry, body, cache=cache, **options))


BLOB = "/v2/src.test/ns/app/blobs/"


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_a_miss_then_hits_from_the_file(tmp_path: Path, data: bytes) -> None:
    digest = _digest(data)
    registry = Registry({digest: data})

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        first = await client.get(BLOB + digest)
        assert first.status == 200 and await first.read() == data
        assert first.headers["X-Mirrorlab-Cache"] == "miss"
        assert first.headers["X-Mirrorlab-Source"] == f"src.test/ns/app@{digest}"
        for _ in range(20):  # the commit (fsync, rename) runs after the last byte
            if proxy.cache and proxy.cache.lookup("blob", digest):
                break
            await asyncio.sleep(0.05)
        hit = await client.get(BLOB + digest)
        assert hit.status == 200 and await hit.read() == data
        assert hit.headers["X-Mirrorlab-Cache"] == "hit"
        assert "X-Mirrorlab-Source" not in hit.headers  # no source served it
        ranged = await client.get(BLOB + digest, headers={"Range": "bytes=100-199"})
        assert ranged.status == 206 and await ranged.read() == data[100:200]
        assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        head = await client.head(BLOB + digest)
        assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
        bad = await client.get(BLOB + digest, headers={"Range": f"bytes={len(data)}-"})
        assert bad.status == 416
        metrics = (await (await client.get("/metrics")).read()).decode()
        assert 'mirrorlab_cache_requests_total{kind="blob",state="hit"} 4.0' in metrics
        assert 'mirrorlab_cache_fills_total{kind="blob",result="stored"} 1.0' in metrics
        sizes = [line for line in metrics.splitlines() if line.startswith("mirrorlab_cache_bytes ")]
        assert [float(line.split()[1]) for line in sizes] == [len(data)]

    _run(tmp_path, registry, body)
    assert registry.blob_gets == [digest]


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["small", "large"])
def test_concurrent_cold_requests_share_one_upstream_fetch(tmp_path: Path, data: bytes) -> None:
    digest = _digest(data)
    registry = Registry({digest: data}, delay=0.02)

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        async def one(index: int) -> tuple[int, bytes, str]:
            headers = {"Range": "bytes=10-"} if index % 8 == 7 else {}
            response = await client.get(BLOB + digest, headers=headers)
            return response.status, await response.read(), response.headers["X-Mirrorlab-Cache"]

        results = await asyncio.gather(*(one(i) for i in range(32)))
        for index, (status, got, state) in enumerate(results):
            ranged = index % 8 == 7
            assert (status, got) == ((206, data[10:]) if ranged else (200, data)), index
            assert state == "miss"
        metrics = (await (await client.get("/metrics")).read()).decode()
        assert 'mirrorlab_cache_joined_total{kind="blob"} 31.0' in metrics

    _run(tmp_path, registry, body)
    assert registry.blob_gets == [digest]


def test_a_corrupt_upstream_blob_never_enters_the_cache(tmp_path: Path) -> None:
    small, large = _digest(SMALL), _digest(LARGE)
    registry = Registry({small: SMALL, large: LARGE}, flip=True)

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(BLOB + small)
        assert response.status == 502  # verified before a byte went out
        assert b"blob content is sha256:" in await response.read()
        with pytest.raises(Exception):  # noqa: B017 (cut: the client completes nothing)
            response = await client.get(BLOB + large)
            await response.read()
        await asyncio.sleep(0.1)
        assert proxy.cache is not None and not proxy.cache.entries
        assert not list((proxy.cache.root / "tmp").iterdir())
        registry.flip = False
        response = await client.get(BLOB + small)
        assert response.status == 200 and response.headers["X-Mirrorlab-Cache"] == "miss"

    _run(tmp_path, registry, body)
    assert registry.blob_gets == [small, large, small]


def test_a_cache_file_corrupted_on_disk_is_not_served(tmp_path: Path) -> None:
    """A small entry is hashed on every read; a large one has its size checked on every
    read and its bytes by `mirrorlab cache verify`; neither is served after that."""
    small, large = _digest(SMALL), _digest(LARGE)
    registry = Registry({small: SMALL, large: LARGE})
    root = tmp_path / "cache"

    async def fill(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        for digest in (small, large):
            assert (await (await client.get(BLOB + digest)).read())
        await asyncio.sleep(0.2)
        assert proxy.cache is not None and len(proxy.cache.entries) == 2

    _run(tmp_path, registry, fill, cache=root)
    store_path = root / "blobs" / "sha256"
    with open(store_path / small.split(":")[1], "r+b") as handle:
        handle.write(b"X")  # a flipped byte, same size
    with open(store_path / large.split(":")[1], "r+b") as handle:
        handle.seek(1000)
        handle.write(b"X")

    async def read(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(BLOB + small)  # found on read, removed, refetched
        assert await response.read() == SMALL
        assert response.headers["X-Mirrorlab-Cache"] == "miss"
        await asyncio.sleep(0.2)
        hit = await client.get(BLOB + small)  # hashed once in this process: not again
        assert hit.headers["X-Mirrorlab-Cache"] == "hit" and await hit.read() == SMALL
        path = store_path / small.split(":")[1]
        mtime = path.stat().st_mtime_ns
        with open(path, "r+b") as handle:  # corrupted while the proxy runs
            handle.write(b"Y")
        os.utime(path, ns=(mtime, mtime))  # even with its mtime put back
        response = await client.get(BLOB + small)
        assert await response.read() == SMALL
        assert response.headers["X-Mirrorlab-Cache"] == "miss"
        assert main(["cache", "verify", str(root)]) == 1  # the large one: removed
        response = await client.get(BLOB + large)
        assert await response.read() == LARGE
        assert response.headers["X-Mirrorlab-Cache"] == "miss"
        metrics = (await (await client.get("/metrics")).read()).decode()
        assert 'mirrorlab_cache_corrupt_total{kind="blob"} 2.0' in metrics

    _run(tmp_path, registry, read, cache=root)
    assert registry.blob_gets == [small, large, small, small, large]
    assert main(["cache", "verify", str(root)]) == 0


def test_a_restart_keeps_the_cache(tmp_path: Path) -> None:
    digest = _digest(LARGE)
    registry = Registry({digest: LARGE})
    root = tmp_path / "cache"

    async def get(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(BLOB + digest)
        assert await response.read() == LARGE
        await asyncio.sleep(0.2)

    _run(tmp_path, registry, get, cache=root)
    _run(tmp_path, registry, get, cache=root)
    assert registry.blob_gets == [digest]


def test_no_room_serves_uncached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the size known from a served manifest, room is claimed before any source is
    asked: no room, and the request goes the uncached way with a single fetch. Without a
    manifest first, the size is the source's answer: that answer is dropped unread and
    the blob asked again, uncached."""
    digest = _digest(LARGE)
    manifest = json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/octet-stream", "digest": digest, "size": len(LARGE)}]})
    registry = Registry({digest: LARGE}, tags={"v1": manifest.encode()})

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(BLOB + digest)  # no manifest yet: the size is unknown
        assert response.status == 200 and await response.read() == LARGE
        assert len(registry.blob_gets) == 2
        assert (await client.get("/v2/src.test/ns/app/manifests/v1")).status == 200
        for _ in range(2):
            response = await client.get(BLOB + digest)
            assert response.status == 200 and await response.read() == LARGE
            assert response.headers["X-Mirrorlab-Cache"] == "miss"
        assert len(registry.blob_gets) == 4
        assert proxy.cache is not None and not [k for k in proxy.cache.entries if k[0] == "blob"]
        metrics = (await (await client.get("/metrics")).read()).decode()
        assert 'mirrorlab_cache_fills_total{kind="blob",result="uncached"} 3.0' in metrics

    _run(tmp_path, registry, body)


def test_a_bound_smaller_than_the_blob_serves_uncached(tmp_path: Path) -> None:
    digest = _digest(LARGE)
    registry = Registry({digest: LARGE})

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(BLOB + digest)
        assert response.status == 200 and await response.read() == LARGE

    _run(tmp_path, registry, body, cache_max_bytes=1024 * 1024)
    assert registry.blob_gets == [digest]


def test_eviction_passes_by_a_blob_being_read(tmp_path: Path) -> None:
    """A client reads a large hit slowly while another blob needs the room: the one being
    read stays (the other flies through uncached); once nobody reads it, it may go."""
    first, second = (hashlib.sha256(bytes([n])).digest() * (24 * 1024 * 1024 // 32)
                     for n in (1, 2))
    registry = Registry({_digest(first): first, _digest(second): second})

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        assert await (await client.get(BLOB + _digest(first))).read() == first
        await asyncio.sleep(0.3)
        assert proxy.cache is not None and proxy.cache.lookup("blob", _digest(first))
        slow = await client.get(BLOB + _digest(first))
        assert slow.headers["X-Mirrorlab-Cache"] == "hit"
        head = await slow.content.read(1024 * 1024)
        entry = proxy.cache.lookup("blob", _digest(first))
        assert entry is not None and entry.readers == 1  # sendfile is still under way
        other = await client.get(BLOB + _digest(second))
        assert await other.read() == second
        rest = await slow.read()
        assert head + rest == first  # read whole while the other blob needed its room
        await asyncio.sleep(0.3)
        assert proxy.cache.lookup("blob", _digest(second)) is None  # flew through uncached
        assert await (await client.get(BLOB + _digest(second))).read() == second
        await asyncio.sleep(0.3)
        assert proxy.cache.lookup("blob", _digest(first)) is None  # now it could go
        assert proxy.cache.lookup("blob", _digest(second)) is not None

    _run(tmp_path, registry, body, cache_max_bytes=30 * 1024 * 1024)


MANIFEST = json.dumps({"schemaVersion": 2, "layers": []}).encode()


@pytest.mark.parametrize("stale", [True, False])
def test_tags_go_upstream_and_serve_stale_when_every_source_is_down(
        tmp_path: Path, stale: bool) -> None:
    registry = Registry({}, tags={"v1": MANIFEST})
    digest = _digest(MANIFEST)
    path = "/v2/src.test/ns/app/manifests/"

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        response = await client.get(path + "v1")
        assert response.status == 200 and response.headers["X-Mirrorlab-Cache"] == "miss"
        await asyncio.sleep(0.2)  # stored in the background
        hit = await client.get(path + digest)
        assert hit.headers["X-Mirrorlab-Cache"] == "hit" and await hit.read() == MANIFEST
        explained = await (await client.get("/mirrorlab/explain",
                                            params={"ref": "src.test/ns/app:v1"})).json()
        assert explained["cache"]["tag"]["digest"] == digest
        registry.status = 503
        response = await client.get(path + "v1")
        if stale:
            assert response.status == 200 and await response.read() == MANIFEST
            assert response.headers["X-Mirrorlab-Cache"] == "stale"
            assert response.headers["Docker-Content-Digest"] == digest
            assert "X-Mirrorlab-Stale-Since" in response.headers
        else:
            assert response.status == 502
        registry.status = 404  # an answer, not an outage: never stale
        assert (await client.get(path + "v1")).status == 404

    _run(tmp_path, registry, body, serve_stale=stale)


def test_the_cache_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "c"
    store = CacheStore(root)
    old, new = _put(store, b"o" * 300), _put(store, b"n" * 200)
    os.utime(store.path("blob", old), (1, 1))
    store.write_tag(TagRecord("q.io/ns/app:v1", new, "application/json", "m1/ns/app:v1", 5.0))
    assert main(["cache", "ls", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"blob      {new}") and lines[1].startswith(f"blob      {old}")
    assert lines[2].startswith(f"tag       q.io/ns/app:v1 -> {new}")
    assert lines[3].startswith("2 entries, 500 bytes")
    assert main(["cache", "ls", "--json", str(root)]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["kind"], e["digest"]) for e in listed] == [("blob", new), ("blob", old),
                                                          ("tag", new)]
    assert main(["cache", "prune", str(root), "--max-gib", str(250 / 1024**3)]) == 0
    assert f"removed blob {old} (300 bytes" in capsys.readouterr().out
    assert main(["cache", "ls", str(tmp_path)]) == 2  # not a cache: one error line
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as exited:  # argparse's one line
        main(["cache", "prune", str(root), "--max-gib", "-1"])
    assert exited.value.code == 2
    assert "a size is a finite number >= 0" in capsys.readouterr().err
    assert main(["serve", "--serve-stale"]) == 2
    assert "need --cache DIR" in capsys.readouterr().err


# ------------------------------------------------------------ misses follow the mode


async def _pull_cached(tmp_path: Path, mode: str, blob: bytes, scripts: list[Script],
                       caplog: pytest.LogCaptureFixture) -> tuple[int, bytes, str, str, Proxy]:
    """test_attempt_loop's pull (manifest from m1, then the blob), with the cache on; then
    the blob once more. The first answer, its source, and the second one's cache state."""
    async with scripted_proxy(tmp_path, blob, scripts, fallback=FallbackMode(mode),
                              cache_dir=str(tmp_path / "c"),
                              timeouts=Timeouts(connect=2, read=5)) as (proxy, client):
        manifest = await client.get(f"/v2/src.test/ns/app/manifests/{_digest(_manifest(blob))}")
        assert manifest.status == 200
        try:
            response = await client.get(f"/v2/src.test/ns/app/blobs/{_digest(blob)}")
            body = await response.read()
            status, source = response.status, response.headers.get("X-Mirrorlab-Source", "")
        except Exception:  # cut: the client completes nothing
            status, body, source = 0, b"", ""
        await asyncio.sleep(0.3)
        again = await client.get(f"/v2/src.test/ns/app/blobs/{_digest(blob)}")
        with contextlib.suppress(aiohttp.ClientError):  # a miss cut again
            await again.read()
        return status, body, source, again.headers.get("X-Mirrorlab-Cache", ""), proxy


@pytest.mark.parametrize("mode", ["sticky", "blob", "resilient"])
@pytest.mark.parametrize(("blob", "m1", "expected"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_a_miss_follows_the_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str,
                                 blob: bytes, m1: Script,
                                 expected: dict[str, int | str]) -> None:
    """test_attempt_loop's table with the cache on: each mode answers a miss as without the
    cache; what was served whole and verified is a hit the next time, nothing else is kept."""
    want = expected[mode]
    status, body, source, second, proxy = asyncio.run(
        _pull_cached(tmp_path, mode, blob, [m1, Script(), Script()], caplog))
    assert proxy.cache is not None
    cached = proxy.cache.lookup("blob", _digest(blob)) is not None
    if cached:  # whatever filled it, from whichever source: the blob itself
        assert proxy.cache.path("blob", _digest(blob)).read_bytes() == blob
    if isinstance(want, int):
        assert status == want
        assert second != "hit"  # the failure left nothing (a later miss may fill it)
        return
    assert status == 200 and body == blob
    assert source.startswith("m1.test/" if len(blob) > 4 << 20 else f"{want}.test/")
    assert second == "hit" and cached


def test_a_client_gone_mid_flight_leaves_the_others_and_the_cache_whole(
        tmp_path: Path) -> None:
    digest = _digest(LARGE)
    registry = Registry({digest: LARGE}, delay=0.02)

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        first = await client.get(BLOB + digest)
        second = asyncio.ensure_future(client.get(BLOB + digest))
        assert len(await first.content.read(512 * 1024)) > 0
        first.close()  # the request that started the fetch goes away
        response = await second
        assert await response.read() == LARGE
        await asyncio.sleep(0.3)
        assert proxy.cache is not None and proxy.cache.lookup("blob", digest) is not None

    _run(tmp_path, registry, body)
    assert registry.blob_gets == [digest]


def test_a_hit_is_corked_while_it_is_sent_and_uncorked_after() -> None:
    """TCP_CORK holds partial segments for up to 200 ms: a hit's socket must be uncorked
    once its last byte is queued, and after a failure too."""
    class _Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> object:
            return self.sock if name == "socket" else None

    class _Request:
        def __init__(self, sock: socket.socket) -> None:
            self.transport = _Transport(sock)

    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as sock:
        def cork() -> int:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)

        with _corked(_Request(sock)):  # type: ignore[arg-type]
            assert cork() == 1
        assert cork() == 0
        with pytest.raises(ConnectionError), _corked(_Request(sock)):  # type: ignore[arg-type]
            assert cork() == 1
            raise ConnectionError
        assert cork() == 0


def test_a_client_gone_at_any_point_of_a_hit_leaves_no_error_and_the_entry_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A hit of at most 4 MiB whose file changed since it last matched is hashed again
    before its headers go out. Clients that close their connection at times swept across
    that hash and the sending leave no error escaping the handler, one gone client counted
    each (or none, when aiohttp dropped the request before it began), and the entry whole.
    With handler cancellation off, as `serve` runs: aiohttp's test server would cancel a
    handler whose client went away, where `serve` lets it run on."""
    data = hashlib.sha256(b"hit").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB: hashed on a hit
    digest = _digest(data)
    registry = Registry({digest: data})
    # 0 to 10 ms after the request went out, then long enough for any machine to begin it
    delays = [i / 4000 for i in range(40)] + [0.05, 0.1, 0.2]
    caplog.set_level(logging.INFO, logger="mirrorlab.proxy")

    async def body(client: TestClient[web.Request, web.Application], proxy: Proxy) -> None:
        first = await client.get(BLOB + digest)
        assert await first.read() == data
        assert proxy.cache is not None
        for _ in range(40):  # the commit (fsync, rename) runs after the last byte
            if proxy.cache.lookup("blob", digest):
                break
            await asyncio.sleep(0.05)
        server = client.server.runner.server if client.server.runner else None
        assert server is not None
        server.handler_cancellation = False  # as `serve`'s runner has it
        assert proxy.cache_metrics is not None
        hits = proxy.cache_metrics.requests.labels("blob", "hit")
        for round_, delay in enumerate(delays):
            os.utime(proxy.cache.path("blob", digest), ns=(round_, round_))  # hashed again
            _, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(f"GET {BLOB}{digest} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(delay)
            writer.close()
        await asyncio.sleep(0.3)
        gone = proxy.metrics.client_aborts.labels("blob")._value.get()
        assert 0 < gone <= len(delays)  # each a gone client once, or dropped before it began
        assert hits._value.get() <= len(delays)
        # No attempt line says a blob was served to a client that went away.
        events = [json.loads(r.getMessage()) for r in caplog.records
                  if r.getMessage().startswith("{")]
        left = {e["request"] for e in events if e["event"] == "client_gone"}
        assert len(left) == gone
        said = [e["detail"] for e in events if e["event"] == "attempt"
                and e["request"] in left]
        assert said and not [d for d in said if "served" in d], said
        hit = await client.get(BLOB + digest)
        assert hit.headers["X-Mirrorlab-Cache"] == "hit" and await hit.read() == data

    _run(tmp_path, registry, body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
