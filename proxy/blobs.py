"""Blob transfer: one client blob request, fetched from one source at a time and verified.

Nothing unverified completes. A blob of up to 4 MiB is read whole (within a shared
memory budget) and checked before a byte is sent; a wrong or cut one is fetched again,
from byte 0, at the next source, so a mismatch is always one source's. A larger blob
streams with its last 64 KiB held back until the digest matches; on a mismatch the
connection is cut and every source that sent bytes of it becomes a suspect for that blob
(tried last, for a while). A stream cut mid-way resumes with `Range`: at the same source
in the node modes, after enough progress, as containers/image's `docker/body_reader.go`
does; at the next source in resilient mode. The size is the manifest descriptor's when a
served manifest gave it, else the serving source's own. A client Range on a large blob
is passed through (a part cannot be checked against the digest, and says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sys
import time
from asyncio import selector_events
from collections import deque
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .body import DirectBody
from .failures import describe
from .fallback import Fallback
from .metrics import Metrics
from .outcomes import Outcome, SourceFailure, outcome_of_status
from .responses import API_VERSION, oci_error
from .steps import Step
from .upstream import Upstreams, status_message

log = logging.getLogger("mirrorlab.proxy")

CHUNK = 256 * 1024
"""Pieces a buffered blob is written to the client in (waiting for the client between)."""
STREAM_CHUNK = 1024 * 1024
"""Pieces a blob is read from its source in: every piece costs a parser call, a read
timer and a hash call, so the fewer the better (the bench measured 1 MiB against 256 KiB:
+21% throughput, -17% CPU)."""
SMALL_BLOB = 4 * 1024 * 1024
SOURCE_HEADER = "X-Mirrorlab-Source"
FALLBACK_HEADER = "X-Mirrorlab-Fallback"
RESCUED_HEADER = "X-Mirrorlab-Rescued"
VERIFIED_HEADER = "X-Mirrorlab-Verified"
RESUME_PROGRESS = 1024 * 1024
"""`bodyReaderMinimumProgress`: bytes a cut stream must have made to be resumed."""
RESUME_INTERVAL = 60.0
"""`bodyReaderMSSinceLastRetry`: or this long since the last resume."""


class ClientGone(Exception):
    """The client closed its connection: the transfer ends, no source is blamed."""


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range, or None for the whole blob."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or not (match[1] or match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), total - 1) if match[2] else total - 1
    else:
        start, end = max(total - int(match[2]), 0), total - 1
    if start > end or start >= total:
        raise ValueError("unsatisfiable range")
    return start, end


BUDGET_WAIT = 2.0
"""How long a small blob of known size waits for room in the budget before it streams."""


@dataclass
class BlobBudget:
    """Bytes of small blobs held whole for verification at once, across all requests.

    A blob whose size is known before it is asked for (from the manifest) waits for room,
    first come first served, for up to BUDGET_WAIT; one that cannot wait (its size known
    only from the answer) or waited in vain streams instead, holding a piece at a time. So
    under many concurrent pulls memory stays near the budget, and a client that stops
    reading delays others by BUDGET_WAIT at most."""

    limit: int
    used: int = 0
    _waiters: deque[tuple[int, asyncio.Future[None]]] = field(default_factory=deque)

    def reserve(self, size: int) -> bool:
        """Room now, unless others wait for it (none fits beside them: the first waiter
        does not fit, or it would have been served)."""
        if self._waiters or self.used + size > self.limit:
            return False
        self.used += size
        return True

    async def wait_for(self, size: int, seconds: float | None = None) -> bool:
        """Reserve `size`, waiting up to `seconds` (BUDGET_WAIT) for room; False when none
        came."""
        if self.reserve(size):
            return True
        if size > self.limit:
            return False
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        seconds = BUDGET_WAIT if seconds is None else seconds
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(waiter)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if waiter.done():  # room was given, then the request went away: give it back
                self.release(size)
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()  # the ones behind it may fit now
        return waiter.done()  # `_wake` reserved the room (maybe as the wait timed out)

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += size
                waiter.set_result(None)


@dataclass
class SuspectBlobs:
    """(source repository, digest) -> until when the source is tried last for that blob."""

    seconds: float = 600.0
    _until: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, names: list[str], digest: str) -> None:
        now = time.monotonic()
        self._until = {k: t for k, t in self._until.items() if t > now}
        for name in names:
            self._until[(name, digest)] = now + self.seconds

    def order(self, steps: list[Step], digest: str) -> list[Step]:
        """Unsuspected sources first, in plan order; then the suspects, the one suspected
        longest ago first (it may have been repaired since)."""
        now = time.monotonic()

        def key(step: Step) -> tuple[bool, float]:
            until = self._until.get((step.source_name, digest), 0.0)
            return (until > now, until if until > now else 0.0)

        return sorted(steps, key=key)

    def cleared(self, name: str, digest: str) -> None:
        """The source just served the blob intact: no longer a suspect for it."""
        self._until.pop((name, digest), None)

    def clear(self) -> None:
        self._until.clear()


class _Cut(Exception):
    """The body stopped before its end at one source (maybe resumable there)."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


HOLD_BACK = 64 * 1024
"""Bytes of a streamed blob kept back until its digest matched: any tail will do (the
client cannot complete the blob without it), so a small one, not a whole piece."""


class _HeldBackWriter:
    """Writes a blob as it arrives, keeping the blob's last HOLD_BACK bytes back until
    `finish`: a client can never complete a blob whose digest was not checked. The bytes
    before them go out as they come, each piece in one write."""

    def __init__(self, response: web.StreamResponse, total: int) -> None:
        self.response = response
        self.limit = max(total - HOLD_BACK, 0)
        """Bytes [0, limit) of the blob may go out before its digest matched."""
        self.held = bytearray()
        """The blob's tail, at most HOLD_BACK bytes, copied in as it comes (one buffer:
        a source that trickles cannot make it a pile of tiny objects)."""

    async def feed(self, start: int, chunk: bytes | memoryview) -> None:
        """Bytes [start, start + len(chunk)) of the blob; a lent view's held part is
        copied before anything waits."""
        free = max(self.limit - start, 0)
        if free < len(chunk):
            self.held += chunk[free:]
            chunk = chunk[:free]
        if chunk:
            await _write(self.response, chunk)

    async def finish(self) -> None:
        if self.held:
            await _write(self.response, self.held)
        await self.response.write_eof()


def _read_larger(upstream: aiohttp.ClientResponse) -> None:
    """Let the connection's transport read up to STREAM_CHUNK per call (asyncio's default
    is 256 KiB: four reads, four wake-ups and four parser calls per MiB)."""
    connection = upstream.connection
    transport = connection.transport if connection is not None else None
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = STREAM_CHUNK


def copies_what_it_queues(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a transport copies what it cannot send at once, so that a piece lent from a
    reused buffer may be written as it is: CPython 3.11's plain socket transport does (into
    a bytearray); 3.12's keeps the memoryview queued, and TLS queues what it is given."""
    return transport is not None and sys.version_info < (3, 12) and \
        type(transport) is getattr(selector_events, "_SelectorSocketTransport", None)


async def _write(response: web.StreamResponse, data: bytes | bytearray | memoryview) -> None:
    try:
        await response.write(data)
    except (ConnectionError, aiohttp.ClientConnectionResetError) as error:
        raise ClientGone(str(error)) from None


class BlobFetch:
    """The source side of one blob: fetched from one source at a time, resumed, checked
    against its size and digest; `attempt` is what the attempt loop calls per source. What
    receives the bytes is a subclass's: a client (`BlobTransfer`), or the cache's
    temporary file (`flight.CacheFill`)."""

    method = "GET"

    def __init__(self, digest: str, *, upstreams: Upstreams, metrics: Metrics,
                 fallback: Fallback, suspects: SuspectBlobs, size: int | None,
                 home: str | None) -> None:
        self.digest = digest
        self.upstreams, self.metrics = upstreams, metrics
        self.fallback, self.suspects = fallback, suspects
        self.size = size
        """The manifest descriptor's size, when a served manifest gave one."""
        self.home = home
        self.algorithm = digest.split(":", 1)[0]
        self.hasher = hashlib.new(self.algorithm)
        self.received = 0
        self.total: int | None = None
        self.segments: list[list[object]] = []
        """[source, first byte, end] of every source that sent bytes, in order."""
        self.served_by: Step | None = None
        self.range_error = False
        self.partial: tuple[int, int] | None = None
        """A client window passed through unverified (a range of a large blob)."""

    # ------------------------------------------------------------ what a receiver says

    def _sent(self) -> bool:
        """Whether bytes may have reached a client: then a wrong blob is final (only a cut
        is left) and a cut one is resumed where it stopped, never started again."""
        return False

    async def _ready(self, step: Step, upstream: aiohttp.ClientResponse) -> bool:
        """The source answered with the blob (its size checked): get ready to take bytes;
        False when the body is not to be read (a HEAD, a range answered otherwise)."""
        return True

    async def _deliver(self, start: int, chunk: bytes | memoryview) -> None:
        """Bytes [start, start + len(chunk)) of the blob, hashed already; a memoryview is
        lent only until this returns."""

    # ------------------------------------------------------------ one source

    def _restart(self) -> None:
        self.received, self.segments = 0, []
        self.hasher = hashlib.new(self.algorithm)

    async def attempt(self, step: Step) -> None:
        """Fetch the blob (or its rest) from `step`'s source; raises SourceFailure."""
        if not self._sent():
            self._restart()  # nothing went out yet: whole, from this source alone
        mark, since = self.received, time.monotonic()
        while True:
            try:
                await self._fetch(step)
                break
            except _Cut as cut:
                # `docker/body_reader.go`: a node resumes a cut body at the same source
                # when it made progress (or long since the last resume); resilient mode
                # moves to the next source instead.
                enough = (self.received - mark >= RESUME_PROGRESS
                          or time.monotonic() - since >= RESUME_INTERVAL)
                if self.fallback.resumes_across_sources or not enough:
                    if not self._sent():
                        self._restart()
                    # A fault after the body began is no fallback trigger for a node: PR
                    # #845 looks at the request's own error only.
                    raise SourceFailure(cut.outcome, str(cut), final=not
                                        self.fallback.resumes_across_sources) from None
                log.info(json.dumps({"event": "resume", "source": str(step.source.reference),
                                     "digest": self.digest, "at": self.received,
                                     "reason": str(cut)}))
                mark, since = self.received, time.monotonic()
        self.served_by = step

    async def _fetch(self, step: Step) -> None:
        source = step.source
        path = f"/v2/{source.reference.path}/blobs/{self.digest}"
        method = self.method
        headers: CIMultiDict[str] = CIMultiDict()
        if self.partial is not None:  # a window: its rest, in the blob's own offsets
            headers["Range"] = f"bytes={self.partial[0] + self.received}-{self.partial[1]}"
        elif self.received:
            headers["Range"] = f"bytes={self.received}-"
        what = f"reading blob {self.digest}: fetching blob"
        upstream = await self.upstreams.request(source, method, path, headers)
        async with upstream:
            if upstream.status not in (200, 206):
                body = await upstream.content.read(64 * 1024)
                code, message = status_message(upstream.status, body)
                raise SourceFailure(outcome_of_status(upstream.status), f"{what}: {message}",
                                    status=upstream.status, code=code)
            skip = self._check_length(upstream)
            if not await self._ready(step, upstream):
                return
            # A large blob is read a MiB at a time (fewer, cheaper pieces); a small one in
            # CHUNK pieces, so that many at once hold little each.
            large = self.total is None or self.total > SMALL_BLOB
            direct: DirectBody | None = None
            before = self.received
            try:
                direct = DirectBody.take(upstream, self.upstreams.timeouts.read) if large \
                    else None
                if large and direct is None:
                    _read_larger(upstream)
                pieces = direct.pieces() if direct is not None else \
                    upstream.content.iter_chunked(STREAM_CHUNK if large else CHUNK)
                async for chunk in pieces:
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    await self._take(step, chunk)
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as error:
                outcome = Outcome.TIMEOUT if isinstance(error, TimeoutError) \
                    else Outcome.INTERRUPTED
                raise _Cut(outcome, f"reading blob {self.digest} after {self.received} "
                           f"bytes: {describe(error)}") from None
            finally:  # counted once per response, not per piece
                if direct is not None:
                    direct.close()
                self.metrics.bytes.labels(step.source.host).inc(self.received - before)
        self._check_end(step)

    def _check_length(self, upstream: aiohttp.ClientResponse) -> int:
        """The announced size against what is known; returns bytes of a 200 to skip."""
        if self.partial is not None:
            expected = f"bytes {self.partial[0] + self.received}-{self.partial[1]}/"
            if upstream.status != 206:
                raise SourceFailure(Outcome.BAD_RESPONSE, f"the source answered a range of "
                                    f"blob {self.digest} with the whole blob")
            if not upstream.headers.get("Content-Range", "").startswith(expected):
                raise SourceFailure(Outcome.BAD_RESPONSE, f"range answered "
                                    f"{upstream.headers.get('Content-Range')!r}")
            return 0
        if self.received:
            content_range = upstream.headers.get("Content-Range", "")
            if upstream.status == 206:
                if not content_range.startswith(f"bytes {self.received}-"):
                    raise SourceFailure(Outcome.BAD_RESPONSE,
                                        f"resume answered {content_range!r}")
                return 0
            return self.received  # the whole blob again: skip what was taken
        length = upstream.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise SourceFailure(Outcome.BAD_RESPONSE, f"blob {self.digest} has no "
                                "Content-Length")
        if self.size is not None and int(length) != self.size:
            raise SourceFailure(Outcome.BAD_RESPONSE, f"blob {self.digest} announced "
                                f"{length} bytes; its descriptor says {self.size}")
        if not self._sent():
            self.total = int(length)
        return 0

    async def _take(self, step: Step, chunk: bytes | memoryview) -> None:
        start, end = self.received, self.received + len(chunk)
        if self.partial is None:
            assert self.total is not None
            if end > self.total:
                raise SourceFailure(Outcome.BAD_RESPONSE, f"blob {self.digest} is longer "
                                    f"than its {self.total} bytes")
            self.hasher.update(chunk)
        self.received = end
        if self.segments and self.segments[-1][0] == step.source_name:
            self.segments[-1][2] = end
        else:
            self.segments.append([step.source_name, start, end])
        await self._deliver(start, chunk)

    def _check_end(self, step: Step) -> None:
        if self.partial is not None:
            expected = self.partial[1] - self.partial[0] + 1
            if self.received != expected:
                raise _Cut(Outcome.TRUNCATED, f"range ended after {self.received} of "
                           f"{expected} bytes")
            return
        if self.received != self.total:
            raise _Cut(Outcome.TRUNCATED, f"blob ended after {self.received} of "
                       f"{self.total} bytes")
        actual = f"{self.algorithm}:{self.hasher.hexdigest()}"
        if actual == self.digest:
            if len(self.segments) == 1:
                self.suspects.cleared(step.source_name, self.digest)
            return
        senders = [str(name) for name, _, _ in self.segments]
        self.suspects.add(senders, self.digest)
        spans = ", ".join(f"{name} bytes {low}-{int(str(high)) - 1}"
                          for name, low, high in self.segments)
        detail = f"blob content is {actual}, not {self.digest} ({spans})"
        final = self._sent()  # bytes went out: only a cut is left
        if not final:
            self._restart()
        raise SourceFailure(Outcome.DIGEST, detail, final=final)

    def contributors(self) -> list[str]:
        return [f"{name} bytes {low}-{int(str(high)) - 1}" for name, low, high in self.segments]


class BlobTransfer(BlobFetch):
    """One client blob request: small blobs buffered and verified before a byte goes out,
    large ones streamed with their last 64 KiB held back, a large blob's range passed on."""

    def __init__(self, request: web.Request, digest: str, *, upstreams: Upstreams,
                 budget: BlobBudget, metrics: Metrics, fallback: Fallback,
                 suspects: SuspectBlobs, size: int | None, home: str | None) -> None:
        super().__init__(digest, upstreams=upstreams, metrics=metrics, fallback=fallback,
                         suspects=suspects, size=size, home=home)
        self.request = request
        self.method = "HEAD" if request.method == "HEAD" else "GET"
        self.budget = budget
        self.response: web.StreamResponse | None = None
        self.writer: _HeldBackWriter | None = None
        self.buffer: list[bytes] | None = None
        """A small blob's pieces as they came, held until it is verified (a bytearray of
        its size cost a zero-filled allocation and a copy per request)."""
        self.reserved = 0
        self.waited = False
        self.extra_headers: dict[str, str] = {}
        """Added to the response (the cache's state, when the cache is on)."""
        self.lent_unsafe = not copies_what_it_queues(request.transport)
        """Whether a lent piece must be copied before it is written to the client."""

    def _sent(self) -> bool:
        return self.response is not None

    def _restart(self) -> None:
        """Start over at another source. Without a descriptor its size may differ, so the
        buffer sized for the last one goes, and `_ready` sizes a new one; with one, the
        buffer (and its room in the budget) is kept and written again from byte 0."""
        super()._restart()
        if self.buffer is not None and not self._sent():
            if self.size is None:
                self.release()
                self.buffer = None
            else:
                self.buffer.clear()

    async def _ready(self, step: Step, upstream: aiohttp.ClientResponse) -> bool:
        if self.method == "HEAD" or self.range_error:
            return False
        if self.partial is not None and self.response is None and upstream.status == 206:
            self.response = await self._prepare(step, self.partial)
        if self.partial is None and self.response is None and self.buffer is None:
            await self._begin(step)
            if self.range_error:
                return False
            if self.partial is not None:  # a large blob's range: ask for it alone
                upstream.close()
                await self._fetch(step)
                return False
        return True

    async def _deliver(self, start: int, chunk: bytes | memoryview) -> None:
        if isinstance(chunk, memoryview) and self.lent_unsafe:
            chunk = bytes(chunk)
        if self.buffer is not None:
            self.buffer.append(bytes(chunk))  # bytes as they are; a lent view is copied
        elif self.writer is not None:
            await self.writer.feed(start, chunk)
        elif self.response is not None:  # a passed-through range
            await _write(self.response, chunk)

    # ------------------------------------------------------------ the client side

    def _headers(self, step: Step) -> dict[str, str]:
        headers = {**API_VERSION, "Docker-Content-Digest": self.digest,
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   SOURCE_HEADER: str(step.source.reference), **self.extra_headers}
        if self.home is not None and step.source_name != self.home:
            headers[FALLBACK_HEADER] = "blob"
        return headers

    async def _begin(self, step: Step) -> None:
        """Small blobs are buffered (verified before any byte is sent); large ones stream,
        and a range of a large one is passed through."""
        assert self.total is not None
        try:
            window = parse_range(self.request.headers.get("Range"), self.total)
        except ValueError:
            self.range_error = True
            return
        if self.total <= SMALL_BLOB and (self.reserved == self.total
                                         or self.budget.reserve(self.total)):
            self.buffer = []
            self.reserved = self.total
            return
        self.release()  # reserved ahead for another size: the blob streams
        if window and window != (0, self.total - 1):
            self.partial = window  # answered once the source answered the range itself
            return
        self.response = await self._prepare(step, window)
        self.writer = _HeldBackWriter(self.response, self.total)

    async def _prepare(self, step: Step, window: tuple[int, int] | None
                       ) -> web.StreamResponse:
        assert self.total is not None
        headers = self._headers(step)
        start, end = window if window else (0, self.total - 1)
        if window:
            headers["Content-Range"] = f"bytes {start}-{end}/{self.total}"
        if self.partial is not None:
            headers[VERIFIED_HEADER] = "no: a range cannot be checked against the digest"
        response = web.StreamResponse(status=206 if window else 200, headers=headers)
        response.content_length = end - start + 1
        await response.prepare(self.request)
        return response

    async def attempt(self, step: Step) -> None:
        await self._reserve_ahead()
        await super().attempt(step)

    async def _reserve_ahead(self) -> None:
        """Room in the budget before the blob is first asked for, when the manifest gave
        its size and it is small: waiting here (once, for up to BUDGET_WAIT) rather than
        with a source's answer open and filling up. A Range of it waits too: the window is
        cut from the whole blob, checked."""
        size = self.size
        if self.waited or self.method != "GET" or self.reserved or size is None or \
                not 0 < size <= SMALL_BLOB:
            return
        self.waited = True
        if await self.budget.wait_for(size):
            self.reserved = size

    def release(self) -> None:
        """Give back this request's share of the buffering budget."""
        self.budget.release(self.reserved)
        self.reserved = 0

    async def finish(self, rescued: tuple[str, ...] = ()) -> web.StreamResponse | None:
        """The client's response once the loop is done; None when no source served and
        nothing went out (the caller answers with the chain's error)."""
        step = self.served_by
        if self.response is not None:
            if step is not None:
                if self.writer is not None:
                    await self.writer.finish()
                else:
                    await self.response.write_eof()
                return self.response
            # Bytes already went out and no source completed them: cut the connection so
            # the client can never take a partial or wrong blob for a whole one.
            if self.request.transport is not None:
                self.request.transport.abort()
            return self.response
        if step is None:
            return None
        assert self.total is not None
        if self.range_error:
            return oci_error(416, "SIZE_INVALID", "requested range not satisfiable",
                             headers={"Content-Range": f"bytes */{self.total}"})
        headers = self._headers(step)
        if rescued:
            headers[RESCUED_HEADER] = ",".join(rescued)
        if self.request.method == "HEAD":
            headers["Content-Length"] = str(self.total)
            return web.Response(status=200, headers=headers)
        pieces = self.buffer if self.buffer is not None else []
        window = parse_range(self.request.headers.get("Range"), self.total)
        if window:
            start, end = window
            headers["Content-Range"] = f"bytes {start}-{end}/{self.total}"
            pieces = [b"".join(pieces)[start : end + 1]]
        # Written piece by piece, waiting for the client: the pieces stay this request's
        # (and counted in the budget) until the last byte is out, never copied elsewhere.
        response = web.StreamResponse(status=206 if window else 200, headers=headers)
        response.content_length = sum(len(piece) for piece in pieces)
        await response.prepare(self.request)
        for piece in pieces:
            view = memoryview(piece)
            for offset in range(0, len(view), CHUNK):
                await _write(response, view[offset : offset + CHUNK])
        await response.write_eof()
        return response
