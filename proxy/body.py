"""A large body read straight from its connection into one reused buffer.

aiohttp hands a body over as a new `bytes` per socket read, copied once more by its HTTP
parser and queued in a StreamReader with a read timer re-armed per piece; for a blob of
hundreds of MiB that is most of what a verifying proxy spends besides SHA-256 (the bench's
profile: fresh buffers' page faults, the parser's copy, the queue). What the C verifying
relay does instead is receive into one buffer, hash it, send it. `DirectBody` does that on
an aiohttp response whose headers are read: the bytes aiohttp already parsed come first,
then the connection's transport is given an `asyncio.BufferedProtocol` that receives into
a 2 MiB buffer, exactly up to the announced length (Content-Length, no chunked coding).
Each piece is lent to the caller until it asks for the next one, and nothing is received
while it is lent (the transport is paused).

The connection is closed afterwards (aiohttp's parser never saw the body, so it cannot
be reused); for a body of at least `MINIMUM` bytes a new connection costs little beside
it. When the response cannot be taken over (chunked, smaller, not the aiohttp protocol
this was written against), `take` says so before it consumed anything, and the caller
reads the body the usual way; a failure after that is raised, as a cut body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

MINIMUM = 4 * 1024 * 1024
"""Bodies smaller than this are read the usual way (the connection stays reusable)."""
PIECE = 2 * 1024 * 1024
"""The buffer: each piece costs the event loop, the attempt loop and aiohttp's writer
about the same whatever its size. A/B on a 256 MiB blob, 7 reps: 1 MiB 1.18-1.25 CPU s
per GB, 2 MiB 1.10-1.11 (the cache's cold fill 0.71 -> 0.83 of the C relay), 4 MiB no
better streaming and worse filling the cache (more than L2 between a read and its write).

Each piece is hashed, sent and written on the event loop's thread. Two overlaps were
measured and dropped (256 MiB, medians of 5, each in a run of its own beside the C relay,
837-852 MB/s): SHA-256 of a piece in a worker thread while the loop sends it, 862 -> 703
MB/s and 1.08 -> 1.23 CPU s per GB; the cache's write of a piece in a worker thread while
the loop hashes it, a cold fill 675 -> 627 MB/s. The likely reason, inferred from these
timings and not profiled: on these two cores, a piece read on one core and hashed or
written on the other costs more than the overlap saves."""


class _Receiver(asyncio.BufferedProtocol):
    """Receives into `buffer` up to `remaining` bytes; pauses the transport when full."""

    def __init__(self, remaining: int, read_timeout: float | None) -> None:
        self.buffer = memoryview(bytearray(min(PIECE, max(remaining, 1))))
        self.filled = 0
        self.remaining = remaining
        self.transport: asyncio.Transport | None = None
        self.error: BaseException | None = None
        self.read_timeout = read_timeout
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        """When a byte last came (aiohttp's sock_read: the time between reads)."""
        self._waiter: asyncio.Future[None] | None = None
        self._watch: asyncio.TimerHandle | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        end = min(len(self.buffer), self.filled + self.remaining)
        return self.buffer[self.filled : max(end, self.filled + 1)]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        self.remaining -= nbytes
        self._last = self._loop.time()
        if self.filled == len(self.buffer) or self.remaining <= 0:
            self._pause()
            self._wake()

    def eof_received(self) -> bool:
        if self.remaining > 0:
            self.error = ConnectionResetError("the source closed the connection before "
                                              "the end of the body")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remaining > 0 and self.error is None:
            self.error = exc or ConnectionResetError("the connection closed before the end "
                                                     "of the body")
        self._wake()

    def _pause(self) -> None:
        if self.transport is not None and self.transport.is_reading():
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _check(self) -> None:
        """A timer while waiting for the source, every quarter of the read timeout."""
        assert self.read_timeout is not None
        if self._loop.time() - self._last >= self.read_timeout:
            self.error = TimeoutError(f"no byte for {self.read_timeout:g} s")
            self._pause()  # what is in the buffer is lent next: nothing may land on it
            self._wake()
            return
        self._watch = self._loop.call_later(self.read_timeout / 4, self._check)

    async def wait(self) -> None:
        """Until the buffer is full, the body complete, or the connection failed."""
        if self.error is None and self.filled < len(self.buffer) and self.remaining > 0:
            self._last = self._loop.time()  # the time the consumer took is not the source's
            if self.read_timeout:
                self._watch = self._loop.call_later(self.read_timeout / 4, self._check)
            try:
                while self.error is None and self.filled < len(self.buffer) and \
                        self.remaining > 0:
                    self._waiter = self._loop.create_future()
                    await self._waiter
            finally:
                if self._watch is not None:
                    self._watch.cancel()
                    self._watch = None


class DirectBody:
    """The rest of one response's body, piece by piece, from a reused buffer."""

    def __init__(self, response: aiohttp.ClientResponse, early: bytes,
                 receiver: _Receiver) -> None:
        self.response, self.early, self.receiver = response, early, receiver

    @classmethod
    def take(cls, response: aiohttp.ClientResponse,
             read_timeout: float | None) -> DirectBody | None:
        """The response's body taken over, or None (nothing consumed: read it as usual)."""
        length = response.headers.get("Content-Length", "")
        connection = response.connection
        if not length.isdigit() or int(length) < MINIMUM or connection is None or \
                "Transfer-Encoding" in response.headers or \
                response.content.exception() is not None or response.content.is_eof():
            return None
        transport, protocol = connection.transport, connection.protocol
        if transport is None or protocol is None or transport.is_closing() or \
                not hasattr(protocol, "_reading_paused") or \
                not isinstance(transport, asyncio.Transport):
            return None  # not the aiohttp this was written against, or no plain transport
        # What aiohttp parsed already, until its reader is empty and no longer paused (a
        # paused parser may hold bytes back; draining the reader resumes it).
        # Past this point bytes were taken: what goes wrong is raised (a cut), not None.
        early = bytearray()
        while piece := response.content.read_nowait(-1):
            early += piece
        remaining = int(length) - response.content.total_bytes
        if remaining <= 0 or response.connection is None:  # it all came with the headers
            return cls(response, bytes(early), _Receiver(0, read_timeout))
        if protocol._reading_paused:
            raise ConnectionError("the response's reader stayed paused when taken over")
        protocol.pause_reading()  # aiohttp's read timer stops with it
        receiver = _Receiver(remaining, read_timeout)
        receiver.transport = transport
        transport.set_protocol(receiver)
        transport.resume_reading()
        return cls(response, bytes(early), receiver)

    async def pieces(self) -> AsyncIterator[bytes | memoryview]:
        """The body in order; a memoryview is valid only until the next piece is asked
        for. Raises TimeoutError (no byte for the read timeout) or ConnectionError."""
        if self.early:
            yield self.early
        receiver = self.receiver
        while True:
            await receiver.wait()
            if receiver.filled:  # what came before a failure counts (a resume starts there)
                receiver._pause()  # lent: nothing is received into it until the next ask
                filled, receiver.filled = receiver.filled, 0
                yield receiver.buffer[:filled]
            if receiver.error is not None:
                raise receiver.error
            if receiver.remaining <= 0:
                return
            assert receiver.transport is not None
            receiver.transport.resume_reading()

    def close(self) -> None:
        """Give the connection back to aiohttp to close (its parser is past use)."""
        connection = self.response.connection
        if connection is not None and connection.transport is not None and \
                connection.protocol is not None:
            connection.transport.set_protocol(connection.protocol)
        self.response.close()
