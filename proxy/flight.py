"""Single flight: concurrent cold requests for one blob share one upstream fetch.

The first request for a blob the cache lacks starts a `Flight`: a task that walks that
request's chain (candidates, fallback mode, pull) through the attempt loop with a
`CacheFill`, the `BlobFetch` whose receiver is a temporary file of the cache. Every later
request for the same digest with the same chain (the same sources in the same order, for
the same manifest source, so that what serves it is what would have served it) joins the
flight instead of fetching: it reads the temporary file as it grows (`cache_serve`), at its
own pace, so one slow client slows nobody and no bytes pile up in memory.

What a reader may send follows the rules of an uncached transfer: a blob of at most 4 MiB
only once the flight has verified it (a wrong one is fetched again from byte 0 at the next
source, as before); a larger one as it is written, except its last piece, which waits
until the digest matched. A mismatch or a source failure ends the flight: readers that sent
bytes are cut, the others answer the chain's error. A verified file enters the cache
(fsync, rename) before the flight leaves the table, so that a request arriving meanwhile
joins it rather than fetching again. When the cache cannot take the blob (its bound, a full
disk, a write error), the flight says so before a byte went out, and each reader serves the
blob uncached on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import aiohttp

from .blobs import SMALL_BLOB, BlobFetch, SuspectBlobs
from .cache import CacheStore, CacheUnavailable, Entry, new_temporary
from .fallback import Fallback
from .metrics import Metrics
from .outcomes import Attempt
from .steps import Step
from .upstream import Upstreams

FlightKey = tuple[str, tuple[str, ...], str]
"""(digest, the chain's candidate sources in order, the source of the manifest or "")."""


class FlightState(StrEnum):
    RUNNING = "running"
    VERIFIED = "verified"
    """The digest matched: every byte may go out."""
    FAILED = "failed"
    """No source served it: readers that sent bytes are cut, others answer the error."""
    UNCACHED = "uncached"
    """The cache could not take it: readers serve it on their own."""


@dataclass(eq=False)
class Flight:
    """What readers of one fill see; changed only on the event loop."""

    key: FlightKey
    digest: str
    request_id: int
    """The request that started it (its attempts are logged under this id)."""
    state: FlightState = FlightState.RUNNING
    total: int | None = None
    written: int = 0
    """Bytes [0, written) of the current try are in the file."""
    step: Step | None = None
    """The source whose answer the bytes come from (a resumed stream: the first one)."""
    attempts: list[Attempt] = field(default_factory=list)
    rescued: tuple[str, ...] = ()
    referenced: bool = False
    reason: str = ""
    fd: int | None = None
    temp: Path | None = None
    reserved: int = 0
    readers: int = 0
    """Requests that joined (the starter included)."""
    waiting: int = 0
    """Readers that have not opened the file yet: an uncommitted file stays open for them."""
    active: int = 0
    """Readers sending now: the committed entry stays pinned for them."""
    entry: Entry | None = None
    """The cache entry, once committed."""
    path: Path | None = None
    """Where the entry is, once committed (readers open it when the temporary file is
    closed)."""
    allocated: int = -1
    """Bytes the temporary file was claimed for (-1: none yet)."""
    passthrough: str = ""
    """Why the file will not enter the cache (the bound cannot hold it), or ""."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def streaming(self) -> bool:
        """Large: readers send as the bytes come (the last piece held back)."""
        return self.total is not None and self.total > SMALL_BLOB

    @property
    def done(self) -> bool:
        return self.state is not FlightState.RUNNING

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Until the flight's state, size or written bytes change."""
        await self._changed.wait()

    def open_reader(self) -> BinaryIO:
        """A file object of its own on the temporary file (still valid after the rename
        into the cache, or a removal), or on the committed entry."""
        if self.fd is not None:
            return open(os.dup(self.fd), "rb", buffering=0)
        assert self.path is not None
        return open(self.path, "rb", buffering=0)


class CacheFill(BlobFetch):
    """A flight's fetch: the bytes go into the flight's temporary file."""

    def __init__(self, flight: Flight, store: CacheStore, *, upstreams: Upstreams,
                 metrics: Metrics, fallback: Fallback, suspects: SuspectBlobs,
                 size: int | None, home: str | None) -> None:
        super().__init__(flight.digest, upstreams=upstreams, metrics=metrics,
                         fallback=fallback, suspects=suspects, size=size, home=home)
        self.flight, self.store = flight, store

    def _sent(self) -> bool:
        return self.flight.streaming

    def allocate(self, size: int) -> None:
        """The temporary file, with `size` bytes of the bound and of the disk claimed. A
        blob the bound cannot hold still flies through a temporary file (never committed:
        `passthrough` says why); a disk without room raises CacheUnavailable."""
        flight = self.flight
        self.release()
        try:
            self.store.reserve(size)
            flight.reserved = size
        except CacheUnavailable as error:
            flight.passthrough = error.reason
        try:
            flight.fd, flight.temp = new_temporary(self.store.root)
        except OSError as error:
            self.release()
            raise CacheUnavailable(f"creating a temporary file: {error.strerror}") from None
        try:
            self.store.allocate(flight.fd, size)
        except CacheUnavailable:
            self.release()
            raise
        flight.allocated = size

    def release(self) -> None:
        """Give back the reservation; close and remove the temporary file (uncommitted)."""
        flight = self.flight
        self.store.unreserve(flight.reserved)
        flight.reserved, flight.allocated = 0, -1
        if flight.fd is not None:
            os.close(flight.fd)
            flight.fd = None
        if flight.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                flight.temp.unlink()
            flight.temp = None

    async def _ready(self, step: Step, upstream: aiohttp.ClientResponse) -> bool:
        flight = self.flight
        if self.received == 0:  # a start from byte 0 (this source's whole answer)
            assert self.total is not None
            if flight.fd is None or flight.allocated != self.total:
                self.allocate(self.total)
            flight.total, flight.step, flight.written = self.total, step, 0
            flight.notify()
        return True

    async def _deliver(self, start: int, chunk: bytes | memoryview) -> None:
        flight = self.flight
        assert flight.fd is not None
        view = memoryview(chunk)
        try:
            while view:
                written = os.pwrite(flight.fd, view, start)
                view, start = view[written:], start + written
        except OSError as error:
            raise CacheUnavailable(f"writing the cache: {error.strerror}") from None
        flight.written = start
        flight.notify()

    def _restart(self) -> None:
        super()._restart()
        self.flight.written = 0
