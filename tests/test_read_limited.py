"""upstream.read_limited: a body that arrives in several reads is read whole (aiohttp's
`content.read(n)` answers with what has arrived, so a manifest sent in two pieces was cut
short and failed its digest), up to its limit and one byte more."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirrorlab.proxy.upstream import read_limited

# id, the pieces the server sends (a pause between them), the limit, the length read
CASES = [
    ("one-piece", [1000], 4096, 1000),
    ("two-pieces", [1000, 2000], 4096, 3000),
    ("many-pieces", [100] * 20, 4096, 2000),
    ("at-the-limit", [2048, 2048], 4096, 4096),
    ("over-the-limit", [4000, 4000], 4096, 4097),
    ("empty", [], 4096, 0),
]


@pytest.mark.parametrize(("pieces", "limit", "length"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_read_limited(pieces: list[int], limit: int, length: int) -> None:
    body = bytes(range(256)) * (sum(pieces) // 256 + 1)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = sum(pieces)
        await response.prepare(request)
        offset = 0
        for size in pieces:
            await response.write(body[offset: offset + size])
            offset += size
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    async def scenario() -> bytes:
        app = web.Application()
        app.router.add_get("/", handler)
        async with TestServer(app) as server, aiohttp.ClientSession() as session, \
                session.get(str(server.make_url("/"))) as response:
            return await read_limited(response, limit)

    assert asyncio.run(scenario()) == body[:length]
