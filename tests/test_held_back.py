"""_HeldBackWriter: the blob's last HOLD_BACK bytes go out only at `finish`, whatever the
pieces it came in; everything before them goes out as it comes, each piece in one write."""

from __future__ import annotations

import asyncio
import os

import pytest

from mirrorlab.proxy.blobs import HOLD_BACK, _HeldBackWriter


class _Response:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.ended = False

    async def write(self, data: bytes | memoryview) -> None:
        self.writes.append(bytes(data))

    async def write_eof(self) -> None:
        self.ended = True


KIB = 1024
# id, the blob's size, the sizes of the pieces it arrives in
CASES = [
    ("one piece", 4096 * KIB, [4096 * KIB]),
    ("even pieces", 4096 * KIB, [1024 * KIB] * 4),
    ("last piece shorter than the tail", 1024 * KIB + 10, [1024 * KIB, 10]),
    ("tail spans three pieces", 256 * KIB, [200 * KIB, 30 * KIB, 20 * KIB, 6 * KIB]),
    ("blob smaller than the tail", 10 * KIB, [3 * KIB, 7 * KIB]),
    ("byte by byte at the end", HOLD_BACK + 3, [HOLD_BACK, 1, 1, 1]),
]


@pytest.mark.parametrize(("total", "pieces"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("lent", [False, True], ids=["bytes", "lent view"])
def test_held_back(total: int, pieces: list[int], lent: bool) -> None:
    blob = os.urandom(total)
    response = _Response()
    writer = _HeldBackWriter(response, total)  # type: ignore[arg-type]

    async def run() -> None:
        start = 0
        scratch = bytearray(max(pieces))
        for size in pieces:
            piece = blob[start : start + size]
            if lent:  # a reused buffer, overwritten once feed returns
                scratch[:size] = piece
                await writer.feed(start, memoryview(scratch)[:size])
                scratch[:] = b"\0" * len(scratch)
            else:
                await writer.feed(start, piece)
            start += size
            assert sum(map(len, response.writes)) <= max(total - HOLD_BACK, 0)
        assert sum(map(len, response.writes)) == max(total - HOLD_BACK, 0)
        assert not response.ended
        limit, offsets = total - HOLD_BACK, [sum(pieces[:i]) for i in range(len(pieces))]
        assert len(response.writes) == sum(1 for offset in offsets if offset < limit)
        await writer.finish()

    asyncio.run(run())
    assert b"".join(response.writes) == blob and response.ended
