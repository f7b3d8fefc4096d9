"""DirectBody: a large body read from its connection into one reused buffer, against a
real aiohttp server, over plain HTTP and TLS (trustme)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirrorlab.proxy.body import MINIMUM, PIECE, DirectBody

SIZE = MINIMUM + 3 * PIECE + 12345  # not a multiple of the piece
BODY = hashlib.sha256(b"body").digest() * (SIZE // 32) + b"x" * (SIZE % 32)


async def _handler(request: web.Request) -> web.StreamResponse:
    """/whole, /cut/N (the connection dropped after N bytes), /stall/N (silent after N
    bytes), /chunked, /small."""
    kind, _, at = request.match_info["kind"].partition("/")
    if kind == "small":
        return web.Response(body=BODY[: MINIMUM - 1])
    response = web.StreamResponse()
    if kind != "chunked":
        response.content_length = len(BODY)
    await response.prepare(request)
    if kind in ("whole", "chunked"):
        await response.write(BODY)
        await response.write_eof()
        return response
    await response.write(BODY[: int(at)])
    if kind == "stall":
        await asyncio.sleep(5)
    assert request.transport is not None
    request.transport.abort()
    return response


async def _server(tls: ssl.SSLContext | None) -> TestServer:
    app = web.Application()
    app.router.add_get("/{kind:.+}", _handler)
    server = TestServer(app, scheme="https" if tls else "http")
    await server.start_server(ssl=tls)
    return server


async def _read(server: TestServer, path: str, client_tls: ssl.SSLContext | bool,
                read_timeout: float = 5.0) -> tuple[bool, bytes, str]:
    """(taken over, the bytes read, the error's class name or ""); then a second request
    on the same session works (the taken connection was closed, not pooled broken)."""
    url = str(server.make_url(path))
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        received = bytearray()
        error = ""
        async with session.get(url, ssl=client_tls) as response:
            body = DirectBody.take(response, read_timeout)
            pieces: AsyncIterator[bytes | memoryview] = body.pieces() if body is not None \
                else response.content.iter_chunked(PIECE)
            try:
                async for piece in pieces:
                    received += piece
            except (TimeoutError, ConnectionError, aiohttp.ClientError) as failure:
                error = type(failure).__name__
            finally:
                if body is not None:
                    body.close()
        async with session.get(str(server.make_url("/small")), ssl=client_tls) as again:
            assert await again.read() == BODY[: MINIMUM - 1]
        return body is not None, bytes(received), error


# id, path, taken over, bytes expected (a prefix length), error
CASES = [
    ("whole", "/whole", True, SIZE, ""),
    ("small-is-left-to-aiohttp", "/small", False, MINIMUM - 1, ""),
    ("chunked-is-left-to-aiohttp", "/chunked", False, SIZE, ""),
    ("cut-keeps-what-came", f"/cut/{MINIMUM + PIECE // 2}", True, MINIMUM + PIECE // 2,
     "ConnectionResetError"),
    ("stall-times-out", f"/stall/{MINIMUM + 10}", True, MINIMUM + 10, "TimeoutError"),
]


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(("path", "taken", "length", "error"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_direct_body(tls: tuple[ssl.SSLContext, ssl.SSLContext], scheme: str, path: str,
                     taken: bool, length: int, error: str) -> None:
    async def scenario() -> tuple[bool, bytes, str]:
        server = await _server(tls[0] if scheme == "https" else None)
        try:
            return await _read(server, path, tls[1] if scheme == "https" else False,
                               read_timeout=0.5)
        finally:
            await server.close()

    found_taken, received, found_error = asyncio.run(scenario())
    assert (found_taken, found_error) == (taken, error)
    # A cut may lose what was in flight, never invent or reorder a byte.
    assert BODY.startswith(received)
    assert len(received) == length or (error and len(received) <= length)
