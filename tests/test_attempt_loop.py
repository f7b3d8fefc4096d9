"""The attempt loop, per fallback mode, against scripted upstreams (aiohttp test servers).

Two mirrors and a source, each a small in-process registry whose answer for a blob is
scripted: a status with or without an OCI body, a cut mid-stream, a wrong byte, a short
blob with a matching Content-Length. A client fetches the manifest (served by the first
mirror), then the blob; each row says what the client gets in each mode and which source
served it. Also the regressions of the hostile-probing round (issue 11, items 6 to 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mirrorlab.proxy.fallback import FallbackMode
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.resolve_table import ResolveTable
from mirrorlab.proxy.server import Proxy, ServeOptions
from mirrorlab.proxy.upstream import Timeouts

SMALL = bytes(range(256)) * 64  # 16 KiB: buffered and verified before a byte is sent
LARGE = hashlib.sha256(b"large").digest() * (6 * 1024 * 1024 // 32)  # 6 MiB: streamed
NAMES = ["m1.test", "m2.test", "src.test"]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(blob: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(blob), "size": len(blob)}]}).encode()


@dataclass
class Script:
    """How one registry answers a blob: `ok`, or a fault."""

    fault: str = "ok"
    status: int = 500
    code: str | None = None
    at: int = 0
    blob_requests: list[str] = field(default_factory=list)
    """The Range header (or "") of every blob request this registry saw."""
    pings: int = 0
    """`GET /v2/` requests this registry saw."""
    manifest_in_pieces: bool = False
    """The manifest is sent in two writes, a pause between them."""


def _registry(blob: bytes, script: Script) -> web.Application:
    manifest = _manifest(blob)

    async def manifests(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                   "Docker-Content-Digest": _digest(manifest)}
        if not script.manifest_in_pieces:
            return web.Response(body=manifest, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = len(manifest)
        await response.prepare(request)
        await response.write(manifest[:100])
        await asyncio.sleep(0.05)
        await response.write(manifest[100:])
        await response.write_eof()
        return response

    async def blobs(request: web.Request) -> web.StreamResponse:
        script.blob_requests.append(request.headers.get("Range", ""))
        data = blob if request.match_info["digest"] == _digest(blob) else b"{}"
        scripted = data is blob
        if scripted and script.fault == "status":
            body = json.dumps({"errors": [{"code": script.code, "message": "scripted"}]}) \
                if script.code else "scripted"
            return web.Response(status=script.status, text=body)
        start, end = 0, None
        if request.headers.get("Range", "").startswith("bytes="):
            first, _, last = request.headers["Range"][6:].partition("-")
            start, end = int(first), int(last) if last else None
            if start >= len(data):
                return web.Response(status=416)
        if scripted and script.fault == "short":
            data = data[: script.at]
        if scripted and script.fault == "long":  # more bytes, announced as such
            data = data + b"x" * script.at
        if scripted and script.fault == "no-range":  # ignores Range: the whole blob
            start, end = 0, None
        if scripted and script.fault in ("flip", "flip-cut"):
            data = data[: script.at] + bytes([data[script.at] ^ 1]) + data[script.at + 1:]
        if end is not None:
            data = data[: end + 1]
        ranged = bool(start) or end is not None
        response = web.StreamResponse(status=206 if ranged else 200)
        response.content_length = len(data) - start
        if ranged:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(blob)}"
        await response.prepare(request)
        payload = data[start:]
        if not scripted or script.fault not in ("cut", "flip-cut", "stall") or start:
            await response.write(payload)
            await response.write_eof()
            return response
        await response.write(payload[: script.at + 1])
        await asyncio.sleep(2.0 if script.fault == "stall" else 0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def base(request: web.Request) -> web.Response:
        script.pings += 1
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifests)
    app.router.add_route("GET", "/v2/{name:.+}/blobs/{digest}", blobs)
    return app


@dataclass
class Outcome:
    status: int
    body: bytes
    source: str
    events: list[dict[str, object]]


def scripted_node(tmp_path: Path, servers: list[TestServer]) -> tuple[NodeFiles, ResolveTable]:
    """The node files of the scripted registries: src.test/ns with mirrors m1 then m2,
    every name resolved to its test server."""
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "src.test/ns"\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "m1.test/ns"\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "m2.test/ns"\ninsecure = true\n')
    (tmp_path / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    resolve = ResolveTable({name: ("127.0.0.1", server.port or 0)
                            for name, server in zip(NAMES, servers, strict=True)}, offline=True)
    files = NodeFiles(registries_conf=str(conf), registries_conf_dir=str(tmp_path / "d"),
                      policy=str(tmp_path / "policy.json"), certs_dir=str(tmp_path),
                      auth_file=str(tmp_path / "auth.json"))
    return files, resolve


@contextlib.asynccontextmanager
async def scripted_proxy(tmp_path: Path, blob: bytes, scripts: list[Script],
                         **options: Any
                         ) -> AsyncIterator[tuple[Proxy, TestClient[web.Request, web.Application]]]:
    """The scripted registries running, a proxy on their node files (with `options` for
    ServeOptions) and a client of it; all stopped afterwards."""
    servers = [TestServer(_registry(blob, script)) for script in scripts]
    for server in servers:
        await server.start_server()
    try:
        files, resolve = scripted_node(tmp_path, servers)
        proxy = Proxy(ServeOptions(files=files, resolve=resolve, reload_interval=0, **options))
        async with TestClient(TestServer(proxy.app())) as client:
            yield proxy, client
    finally:
        for server in servers:
            await server.close()


async def _pull(tmp_path: Path, mode: str, blob: bytes, scripts: list[Script],
                caplog: pytest.LogCaptureFixture, headers: dict[str, str],
                again: Callable[[], None] | None = None, direct: bool = False,
                read_timeout: float = 5.0) -> Outcome:
    async with scripted_proxy(tmp_path, blob, scripts, fallback=FallbackMode(mode),
                              timeouts=Timeouts(connect=2, read=read_timeout)) as (_, client):
        for round_ in range(2 if again else 1):
            if round_:  # another pull of the same image, the registries changed
                assert again is not None
                again()
            if not direct:  # the pull's manifest first, as a client does
                manifest = await client.get(
                    f"/v2/src.test/ns/app/manifests/{_digest(_manifest(blob))}")
                assert manifest.status == 200
                assert manifest.headers["X-Mirrorlab-Source"].startswith("m1.test/")
            caplog.clear()
            try:
                response = await client.get(f"/v2/src.test/ns/app/blobs/{_digest(blob)}",
                                            headers=headers)
                body = await response.read()
                status = response.status
                source = response.headers.get("X-Mirrorlab-Source", "")
            except Exception:  # the proxy cut the connection: the client completes nothing
                status, body, source = 0, b"", ""
    events = [json.loads(r.getMessage()) for r in caplog.records
              if r.name == "mirrorlab.proxy" and r.getMessage().startswith("{")]
    return Outcome(status, body, source, events)


Run = Callable[..., Outcome]


@pytest.fixture
def run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Run:
    """`run(mode, blob, [m1, m2, src scripts], headers={...})`: manifest, then the blob."""
    caplog.set_level("INFO", logger="mirrorlab.proxy")

    def pull(mode: str, blob: bytes, scripts: list[Script],
             headers: dict[str, str] | None = None, again: Callable[[], None] | None = None,
             direct: bool = False, read_timeout: float = 5.0) -> Outcome:
        return asyncio.run(_pull(tmp_path, mode, blob, scripts, caplog, headers or {}, again,
                                 direct, read_timeout))

    return pull


# id, blob, script of m1, then per mode: the status the client gets and the serving host
# (m2 unless the mode fails the request). 0: the connection was cut mid-body.
ROWS = [
    ("blob-unknown", SMALL, Script("status", 404, "BLOB_UNKNOWN"),
     {"sticky": 404, "blob": "m2", "resilient": "m2"}),
    ("bare-404", SMALL, Script("status", 404), {"sticky": 404, "blob": 404, "resilient": "m2"}),
    ("503", SMALL, Script("status", 503), {"sticky": 502, "blob": "m2", "resilient": "m2"}),
    ("401", SMALL, Script("status", 401, "UNAUTHORIZED"),
     {"sticky": 403, "blob": 403, "resilient": "m2"}),
    ("429-body", SMALL, Script("status", 429, "TOOMANYREQUESTS"),
     {"sticky": 429, "blob": "m2", "resilient": "m2"}),
    ("400", SMALL, Script("status", 400), {"sticky": 502, "blob": 502, "resilient": "m2"}),
    ("flip-small", SMALL, Script("flip", at=100), {"sticky": 502, "blob": 502, "resilient": "m2"}),
    ("flip-large", LARGE, Script("flip", at=len(LARGE) - 1),
     {"sticky": 0, "blob": 0, "resilient": 0}),
    ("cut-small", SMALL, Script("cut", at=1000), {"sticky": 502, "blob": 502, "resilient": "m2"}),
    ("cut-large-early", LARGE, Script("cut", at=500_000),
     {"sticky": 0, "blob": 0, "resilient": "m2"}),
    ("short", SMALL, Script("short", at=1000),
     {"sticky": 502, "blob": 502, "resilient": "m2"}),
]


@pytest.mark.parametrize("mode", ["sticky", "blob", "resilient"])
@pytest.mark.parametrize(("blob", "m1", "expected"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_a_failing_blob_per_mode(run: Run,
                                 mode: str, blob: bytes, m1: Script,
                                 expected: dict[str, int | str]) -> None:
    want = expected[mode]
    found = run(mode, blob, [m1, Script(), Script()])
    attempts = [e for e in found.events if e.get("event") == "attempt"]
    if isinstance(want, int):
        assert found.status == want, (found.status, found.body[:300], attempts)
        assert all(not str(e["source"]).startswith("m2") for e in attempts), attempts
        return
    assert found.status == 200, (found.status, found.body[:300], attempts)
    assert found.body == blob
    served = attempts[-1]
    assert str(served["source"]).startswith(f"{want}.test/")
    # A streamed blob's headers went out with the source it began with.
    assert found.source.startswith("m1.test/" if len(blob) > 4 << 20 else f"{want}.test/")
    assert served["outcome"] == "served" and served["fallback"] is True
    rescued = served.get("rescued", [])
    assert isinstance(rescued, list)
    assert ("sticky" in rescued) is (mode == "resilient")


def test_a_cut_large_blob_resumes_at_the_same_source_after_1_mib(
        run: Run) -> None:
    """`docker/body_reader.go`: enough progress, so a node resumes at the same source."""
    m1 = Script("cut", at=2_000_000)
    found = run("sticky", LARGE, [m1, Script(), Script()])
    assert found.status == 200 and found.body == LARGE
    assert found.source.startswith("m1.test/")
    assert m1.blob_requests[-2:] == ["", "bytes=2000001-"]
    assert [e["event"] for e in found.events if e.get("event") == "resume"] == ["resume"]


def test_a_corrupt_large_blob_asks_no_impossible_range(
        run: Run) -> None:
    """Issue 11, item 6: a mismatch at the end of a streamed blob is cut; no other source is
    asked for `bytes=<size>-`, and nothing counts against a healthy host."""
    m2, src = Script(), Script()
    found = run("resilient", LARGE, [Script("flip", at=len(LARGE) - 1), m2, src])
    assert found.status == 0
    assert m2.blob_requests == [] and src.blob_requests == []
    attempts = [e for e in found.events if e.get("event") == "attempt"]
    assert [e["outcome"] for e in attempts] == ["digest"]


def test_flip_then_cut_blames_every_sender(
        run: Run) -> None:
    """Issue 11, item 7: m1 flips a byte and cuts; m2 resumes; the mismatch names both
    (not m2 alone), so both become suspects rather than m2 for ever."""
    found = run("resilient", LARGE, [Script("flip-cut", at=3_000_000), Script(), Script()])
    assert found.status == 0
    digest = [e for e in found.events if e.get("outcome") == "digest"]
    assert len(digest) == 1
    assert "m1.test/ns/app bytes 0-" in str(digest[0]["detail"])
    assert "m2.test/ns/app bytes 3000001-" in str(digest[0]["detail"])


def test_a_short_first_source_leaves_the_size_to_the_descriptor(
        run: Run) -> None:
    """Issue 11, item 8: m1 sends a shorter blob with a matching Content-Length; its size
    is not kept, and m2 serves the whole blob (it was refused as 'longer than' before)."""
    found = run("resilient", LARGE, [Script("short", at=1_000_000), Script(), Script()])
    assert found.status == 200 and found.body == LARGE
    outcomes = [e["outcome"] for e in found.events if e.get("event") == "attempt"]
    assert outcomes == ["bad_response", "served"]


def test_a_resumed_blob_names_every_source_that_sent_bytes(run: Run) -> None:
    """Issue 11: the stream's headers went out naming the first source; the log's `served`
    line names each source and the bytes it contributed."""
    found = run("resilient", LARGE, [Script("cut", at=500_000), Script(), Script()])
    assert found.status == 200 and found.body == LARGE
    served = [e for e in found.events if e.get("event") == "served"]
    assert served and served[0]["sources"] == [
        "m1.test/ns/app bytes 0-500000", f"m2.test/ns/app bytes 500001-{len(LARGE) - 1}"]


@pytest.mark.parametrize(("header", "window"), [("bytes=0-0", (0, 0)),
                                                ("bytes=100-199", (100, 199)),
                                                ("bytes=-10", (len(LARGE) - 10, len(LARGE) - 1))])
def test_a_range_of_a_large_blob_is_passed_through(run: Run, header: str,
                                                   window: tuple[int, int]) -> None:
    """Issue 11: `Range: bytes=0-0` of a large blob no longer downloads the whole blob;
    the range is asked of the source, and the answer says it is not verified."""
    m1 = Script()
    found = run("sticky", LARGE, [m1, Script(), Script()], {"Range": header})
    assert found.status == 206
    assert found.body == LARGE[window[0]: window[1] + 1]
    assert m1.blob_requests[-1] == f"bytes={window[0]}-{window[1]}"
    assert "" not in m1.blob_requests[1:], m1.blob_requests  # never the whole blob


def test_a_range_of_a_small_blob_is_verified(run: Run) -> None:
    m1 = Script()
    found = run("sticky", SMALL, [m1, Script(), Script()], {"Range": "bytes=0-0"})
    assert found.status == 206 and found.body == SMALL[:1]
    assert m1.blob_requests[-1] == ""  # read whole, checked, then the window sent


def test_blob_mode_walks_afresh_for_each_pull(run: Run) -> None:
    """PR #845 keeps the working source for the rest of one copy. Pull 1: m1 lost the blob,
    m2 serves it. Pull 2 of the same image, m1 repaired and m2 now without it: m1 serves,
    as a new copy would start at its manifest's source (the walk of pull 1 was reused)."""
    m1, m2 = Script("status", 404, "BLOB_UNKNOWN"), Script()

    def repair() -> None:
        m1.fault = "ok"
        m2.fault, m2.status, m2.code = "status", 404, "BLOB_UNKNOWN"

    found = run("blob", SMALL, [m1, m2, Script()], again=repair)
    assert found.status == 200 and found.body == SMALL
    served = [e for e in found.events if e.get("outcome") == "served"]
    assert [str(e["source"]).split("/")[0] for e in served] == ["m1.test"]


@pytest.mark.parametrize("mode", ["sticky", "blob", "resilient"])
def test_a_wrong_size_source_without_descriptor_leaves_no_stale_bytes(run: Run,
                                                                      mode: str) -> None:
    """A blob asked for without its manifest (no descriptor gives the size): m1 announces
    and sends more bytes than the blob; m2 serves it. The buffer sized for m1 went with
    it: the client gets exactly the blob (it got m2's bytes and m1's rest, 200 OK)."""
    found = run(mode, SMALL, [Script("long", at=4096), Script(), Script()], direct=True)
    assert found.status == 200 and found.body == SMALL, (found.status, len(found.body))
    assert found.source.startswith("m2.test/")


@pytest.mark.parametrize(("mode", "served"), [("sticky", False), ("blob", False),
                                              ("resilient", True)])
def test_a_timeout_after_the_body_began_is_no_fallback_trigger(run: Run, mode: str,
                                                               served: bool) -> None:
    """PR #845 looks at the request's own error: a read timeout mid-body fails a blob-mode
    pull (a timeout before the answer would move on); resilient mode moves on."""
    found = run(mode, SMALL, [Script("stall", at=1000), Script(), Script()],
                read_timeout=0.5)
    attempts = [e for e in found.events if e.get("event") == "attempt"]
    assert attempts[0]["outcome"] == "timeout", attempts
    assert (found.status == 200) is served, (found.status, attempts)
    assert any(str(e["source"]).startswith("m2") for e in attempts) is served


def test_a_source_that_ignores_a_range_is_refused(run: Run) -> None:
    """Asked for a window of a large blob, m1 answers 200 with the whole blob: that is no
    answer to the range (it was read whole and dropped before), so m2 is asked."""
    m1, m2 = Script("no-range"), Script()
    found = run("resilient", LARGE, [m1, m2, Script()], {"Range": "bytes=100-199"})
    assert found.status == 206 and found.body == LARGE[100:200]
    attempts = [e for e in found.events if e.get("event") == "attempt"]
    assert [e["outcome"] for e in attempts] == ["bad_response", "served"], attempts


async def _concurrent_pulls(tmp_path: Path, mode: str, blob: bytes, scripts: list[Script],
                            pulls: int, budget: int) -> list[tuple[int, bytes]]:
    """`pulls` clients at once on a fresh proxy: the manifest, then the blob; (status,
    body) of each blob answer, status 0 when the proxy cut the connection."""
    async with scripted_proxy(tmp_path, blob, scripts, fallback=FallbackMode(mode),
                              buffer_budget=budget) as (proxy, client):
        async def pull() -> tuple[int, bytes]:
            manifest = await client.get(
                f"/v2/src.test/ns/app/manifests/{_digest(_manifest(blob))}")
            assert manifest.status == 200
            try:
                response = await client.get(f"/v2/src.test/ns/app/blobs/{_digest(blob)}")
                return response.status, await response.read()
            except Exception:  # cut mid-body
                return 0, b""

        results = await asyncio.gather(*(pull() for _ in range(pulls)))
        assert proxy.budget.used == 0
        return results


def test_concurrent_first_requests_share_one_ping(tmp_path: Path) -> None:
    """Ten pulls at once on a fresh proxy: m1 is pinged once, not once per request (an
    insecure registry's HTTPS attempt would be repeated as often, too)."""
    m1 = Script()
    results = asyncio.run(_concurrent_pulls(tmp_path, "sticky", SMALL, [m1, Script(), Script()],
                                            10, 16 << 20))
    assert results == [(200, SMALL)] * 10
    assert m1.pings == 1


def test_a_small_blob_of_known_size_waits_for_the_budget(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The budget holds one blob; four pulls at once of a blob that m1 corrupts. Each waits
    for room and is read whole and checked, so each falls back to m2 before a byte went out
    (streamed for want of room, some would have been cut at the mismatch instead). The
    wait is long here: on a busy machine the fourth must not give up and stream."""
    monkeypatch.setattr("mirrorlab.proxy.blobs.BUDGET_WAIT", 60.0)
    blob = LARGE[: 2 << 20]  # 2 MiB: small enough to be read whole
    results = asyncio.run(_concurrent_pulls(tmp_path, "resilient", blob,
                                            [Script("flip", at=100), Script(), Script()],
                                            4, len(blob)))
    assert results == [(200, blob)] * 4, [status for status, _ in results]


def test_a_manifest_that_arrives_in_two_reads_is_read_whole(run: Run) -> None:
    """It was cut at what had arrived (aiohttp's `read(n)`), failed its digest at m1, and
    the pull moved to m2; `_pull` asserts that m1 served the manifest."""
    found = run("sticky", SMALL, [Script(manifest_in_pieces=True), Script(), Script()])
    assert found.status == 200 and found.body == SMALL
