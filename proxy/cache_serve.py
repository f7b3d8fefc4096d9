"""Serving from the verified cache: hits from their file, flights' readers from the
temporary file as it grows, both with the event loop's sendfile (plain reads and writes
where the transport cannot, as under TLS); and the cache's metrics.

A hit is checked before it is served: the file's size against the index (and against the
manifest descriptor's size when a served manifest gave one), and an entry of at most 4 MiB
is hashed whenever its file is not the one whose bytes last matched in this process (inode,
size, mtime, ctime: the first read after a start, any write to it since). A larger entry is not
re-hashed on a hit (that would cost what sendfile saves): a byte flipped on disk in one is
found by `mirrorlab cache verify`, which removes it, and it is never served after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .blobs import SMALL_BLOB, STREAM_CHUNK, ClientGone, parse_range
from .cache import HASH_PIECE, CacheStore, CorruptEntry, Entry, file_key
from .flight import Flight, FlightState
from .outcomes import NOT_CONTACTED, Attempt, Outcome
from .responses import oci_error

CACHE_HEADER = "X-Mirrorlab-Cache"
STALE_HEADER = "X-Mirrorlab-Stale-Since"


class _StoreCollector(Collector):
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        yield GaugeMetricFamily("mirrorlab_cache_bytes", "Bytes of entries in the cache",
                                value=store.used)
        yield GaugeMetricFamily("mirrorlab_cache_reserved_bytes",
                                "Bytes reserved by fills in progress", value=store.reserved)
        yield GaugeMetricFamily("mirrorlab_cache_entries", "Entries in the cache (blobs and "
                                "manifests)", value=len(store.entries))
        if store.max_bytes is not None:
            yield GaugeMetricFamily("mirrorlab_cache_max_bytes", "The cache's size bound",
                                    value=store.max_bytes)
        yield CounterMetricFamily("mirrorlab_cache_evictions", "Entries evicted to make room "
                                  "(least recently used first)", value=store.evictions)


class CacheMetrics:
    """`mirrorlab_cache_*`, in the proxy's registry."""

    def __init__(self, registry: CollectorRegistry, store: CacheStore) -> None:
        self.requests = Counter(
            "mirrorlab_cache_requests", "Requests the cache answered or could have, by kind "
            "and state: hit (from the cache, no source contacted), miss (from a source), "
            "stale (a tag's last verified answer, every source down)", ["kind", "state"],
            registry=registry)
        self.hit_bytes = Counter("mirrorlab_cache_hit_bytes", "Bytes served from the cache",
                                 ["kind"], registry=registry)
        self.fills = Counter(
            "mirrorlab_cache_fills", "Upstream fetches meant for the cache, by result: stored, "
            "failed (no source served it intact), uncached (no room, a disk error)",
            ["kind", "result"], registry=registry)
        self.joined = Counter(
            "mirrorlab_cache_joined", "Requests served by another request's upstream fetch "
            "of the same blob (single flight)", ["kind"], registry=registry)
        self.corrupt = Counter(
            "mirrorlab_cache_corrupt", "Entries found not to match their digest or size when "
            "read (removed; the request went to a source)", ["kind"], registry=registry)
        registry.register(_StoreCollector(store))


OUTAGES = frozenset({Outcome.CONNECT, Outcome.TLS, Outcome.TIMEOUT, Outcome.SERVER_ERROR,
                     Outcome.TOO_MANY_REQUESTS, Outcome.INTERRUPTED, Outcome.TRUNCATED})
"""Failures that say a source could not answer, rather than what it answered."""


def stale_allowed(attempts: Sequence[Attempt]) -> bool:
    """--serve-stale answers only an outage: every source tried was unreachable or unwell
    (blocked and cooling ones count for neither). A source that answered that the tag is
    unknown, or refused the client, said something: that answer stands."""
    tried = [a.outcome for a in attempts if a.outcome not in NOT_CONTACTED]
    return bool(tried) and all(outcome in OUTAGES for outcome in tried)


def _hash_fd(fd: int, algorithm: str, size: int) -> str:
    hasher = hashlib.new(algorithm)
    offset = 0
    while offset < size:
        piece = os.pread(fd, min(HASH_PIECE, size - offset), offset)
        if not piece:
            break
        hasher.update(piece)
        offset += len(piece)
    return f"{algorithm}:{hasher.hexdigest()}"


def _plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The socket under a transport that is not TLS: what may be written to directly."""
    if transport is None or transport.get_extra_info("ssl_object") is not None:
        return None
    sock: socket.socket | None = transport.get_extra_info("socket")
    return sock


def _sendfile_now(transport: asyncio.BaseTransport, file: BinaryIO, offset: int,
                  count: int) -> int:
    """What one `sendfile` call sends right away on a plain socket whose transport has
    nothing queued (so no byte can overtake another): the event loop's `sendfile` costs a
    future, a pause and resume of reading and a writer registration per call, which a
    flight's reader pays for every piece of the fill. 0 when it cannot be done here."""
    sock = _plain_socket(transport)
    if sock is None or not isinstance(transport, asyncio.WriteTransport) or \
            transport.get_write_buffer_size():
        return 0
    try:
        return os.sendfile(sock.fileno(), file.fileno(), offset, count)
    except (BlockingIOError, InterruptedError):
        return 0


@contextlib.contextmanager
def _corked(request: web.Request) -> Iterator[None]:
    """A hit's headers and file leave in full segments, as nginx's `tcp_nopush` makes them
    (TCP_CORK until the last byte is queued). A/B on a 256 MiB hit, 15 reps alternated with
    nginx's warm cache: 0.91-1.00 of nginx's figure without, 0.98-1.07 with, and less client
    CPU per GB. Not for a flight's readers, which send piece by piece as the fill writes
    (corking each piece cost the cold fill 0.1 CPU s per GB)."""
    sock = _plain_socket(request.transport)
    cork = getattr(socket, "TCP_CORK", None)  # Linux's
    if sock is None or cork is None:
        yield
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


async def send_file(request: web.Request, file: BinaryIO, offset: int, count: int) -> None:
    """`count` bytes of `file` from `offset` to the client, after what was written so far."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientGone("the client closed its connection")
    if count <= 0:
        return
    try:
        sent = _sendfile_now(transport, file, offset, count)
        if sent < count:
            await asyncio.get_running_loop().sendfile(transport, file, offset + sent,
                                                      count - sent)
    except (ConnectionError, RuntimeError) as error:  # RuntimeError: transport closing
        raise ClientGone(str(error)) from None


def _window(request: web.Request, total: int) -> tuple[int, int] | None:
    """The client's Range (None: the whole blob); ValueError when unsatisfiable."""
    return parse_range(request.headers.get("Range"), total)


def range_error(total: int) -> web.Response:
    return oci_error(416, "SIZE_INVALID", "requested range not satisfiable",
                     headers={"Content-Range": f"bytes */{total}"})


async def _prepare(request: web.Request, total: int, window: tuple[int, int] | None,
                   headers: dict[str, str]) -> web.StreamResponse:
    start, end = window if window else (0, total - 1)
    headers = {**headers, "Accept-Ranges": "bytes"}
    if window:
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    response = web.StreamResponse(status=206 if window else 200, headers=headers)
    response.content_length = max(end - start + 1, 0)
    await response.prepare(request)
    return response


def _gone(request: web.Request, on_gone: Callable[[], None],
          response: web.StreamResponse | None) -> web.StreamResponse:
    """The client went away mid-response: the connection ends here, nothing is blamed.
    The response to return (499 when its headers never went out)."""
    on_gone()
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.Response(status=499)


async def serve_blob_hit(request: web.Request, store: CacheStore, entry: Entry,
                         headers: dict[str, str], size: int | None, metrics: CacheMetrics,
                         on_gone: Callable[[], None]) -> web.StreamResponse | None:
    """A blob from its cache file (HEAD, a Range, or whole); None when the entry is gone
    or bad (dropped: the request goes to a source)."""
    path = store.path("blob", entry.digest)
    try:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except FileNotFoundError:  # removed under us (prune, verify): a miss
        store.forget("blob", entry.digest, remove=False)
        return None
    store.pin(entry)
    corrupt = False
    try:
        stat = os.fstat(file.fileno())
        actual = stat.st_size
        if actual != entry.size or (size is not None and actual != size):
            raise CorruptEntry("blob", entry.digest)
        if actual <= SMALL_BLOB and request.method != "HEAD" \
                and entry.checked != file_key(stat):
            algorithm = entry.digest.split(":", 1)[0]
            found = await asyncio.to_thread(_hash_fd, file.fileno(), algorithm, actual)
            if found != entry.digest:
                raise CorruptEntry("blob", entry.digest)
            entry.checked = file_key(stat)
        try:
            window = _window(request, actual)
        except ValueError:
            return range_error(actual)
        if request.method == "HEAD":
            return web.Response(status=200, headers={
                **headers, "Accept-Ranges": "bytes", "Content-Length": str(actual)})
        start, end = window if window else (0, actual - 1)
        response: web.StreamResponse | None = None
        with _corked(request):
            try:
                response = await _prepare(request, actual, window, headers)
                await send_file(request, file, start, end - start + 1)
                await response.write_eof()
            except (ClientGone, ConnectionError):  # ConnectionError: as the headers go out
                return _gone(request, on_gone, response)
        metrics.hit_bytes.labels("blob").inc(end - start + 1)
        return response
    except CorruptEntry:
        corrupt = True
        return None
    finally:
        file.close()
        store.unpin(entry)
        if corrupt:
            metrics.corrupt.labels("blob").inc()
            store.forget("blob", entry.digest)
        else:
            store.touch(entry)


async def read_flight(request: web.Request, flight: Flight, store: CacheStore,
                      headers_of: Callable[[Flight], dict[str, str]],
                      on_gone: Callable[[], None]) -> web.StreamResponse | FlightState:
    """One client of a flight. A response, or the flight's state when nothing went out:
    FAILED (answer the chain's error) or UNCACHED (serve the blob without the cache)."""
    flight.waiting += 1
    try:
        while not (flight.done or (flight.streaming and flight.step is not None)):
            await flight.changed()
        if flight.state in (FlightState.FAILED, FlightState.UNCACHED):
            return flight.state  # nothing went out to this client yet
        assert flight.total is not None
        total = flight.total
        try:
            window = _window(request, total)
        except ValueError:
            return range_error(total)
        try:
            file = flight.open_reader()
        except FileNotFoundError:  # committed, and removed since: this one goes uncached
            return FlightState.UNCACHED
    finally:
        flight.waiting -= 1
        flight.notify()
    start, end = window if window else (0, total - 1)
    # A large blob's last piece of the window waits for the digest; a small one waits whole.
    hold = max(start, end + 1 - STREAM_CHUNK) if flight.streaming else start
    flight.active += 1
    if flight.entry is not None:
        store.pin(flight.entry)
    response: web.StreamResponse | None = None
    try:
        response = await _prepare(request, total, window, headers_of(flight))
        position = start
        while position <= end:
            if flight.state in (FlightState.FAILED, FlightState.UNCACHED):
                # Bytes went out and no source completed them: cut, so that the client can
                # never take a partial or wrong blob for a whole one.
                if request.transport is not None:
                    request.transport.abort()
                return response
            limit = end + 1 if flight.state is FlightState.VERIFIED \
                else min(flight.written, hold)
            if limit > position:
                await send_file(request, file, position, limit - position)
                position = limit
                continue
            await flight.changed()
        await response.write_eof()
        return response
    except (ClientGone, ConnectionError):  # ConnectionError: while the headers went out
        return _gone(request, on_gone, response)
    finally:
        file.close()
        flight.active -= 1
        if flight.entry is not None:
            store.unpin(flight.entry)
