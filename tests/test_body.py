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

from mirrorlab.proxy.blobs import copies_what_it_queues
from mirrorlab.proxy.body import MINIMUM, PIECE, DirectBody

SIZE = MINIMUM + 3 * PIECE + 12345  # not a multiple of the piece
BODY = hashlib.sha256(b"body").digest() * (SIZE // 32) + b"x" * (SIZE % 32)


async def _handler(request: web.Request) -> web.StreamResponse:
    """/whole, /cut/N (the connection dropped after N bytes), /stall/N (silent after N
    bytes), /chunked, /small."""
    kind, _, at = request.match_info["kind"].partition("/")
    if kind == "pause":  # N bytes, silent for longer than the read timeout, then the rest
        response = web.StreamResponse()
        response.content_length = len(BODY)
        await response.prepare(request)
        await response.write(BODY[: int(at)])
        await asyncio.sleep(0.8)
        await response.write(BODY[int(at):])
        await response.write_eof()
        return response
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


def test_a_lent_piece_stays_as_lent_when_the_source_times_out_and_goes_on() -> None:
    """Found in review: the read timeout woke the reader without pausing the transport, so
    the source's next bytes landed in the piece just lent (the held-back tail was taken
    from it after an await). Each piece must read the same after an await as when lent."""
    async def scenario() -> list[bool]:
        server = await _server(None)
        same: list[bool] = []
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as session, \
                    session.get(str(server.make_url(f"/pause/{MINIMUM + 100_000}"))) as response:
                body = DirectBody.take(response, 0.4)
                assert body is not None
                position = 0
                try:
                    async for piece in body.pieces():
                        await asyncio.sleep(0.6)  # a slow client; the source goes on
                        same.append(bytes(piece) == BODY[position: position + len(piece)])
                        position += len(piece)
                except TimeoutError:
                    pass
                finally:
                    body.close()
        finally:
            await server.close()
        return same

    same = asyncio.run(scenario())
    assert same and all(same), same


def test_a_lent_piece_is_written_only_where_the_transport_copies_it() -> None:
    """`copies_what_it_queues` says whether a piece may be written as lent: then bytes
    changed in the buffer after the write never reach the peer (a transport that keeps the
    memoryview queued, as CPython 3.12's does, would send the changed bytes)."""
    async def scenario() -> tuple[bool, bool]:
        received = bytearray()
        reading = asyncio.Event()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reading.wait()
            received.extend(await reader.read())
            writer.close()

        listener = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", port)
        buffer = bytearray(b"a" * (16 << 20))  # more than the socket buffers hold
        transport.write(memoryview(buffer))
        buffer[:] = b"b" * len(buffer)  # the next piece lands in the same buffer
        reading.set()
        await asyncio.sleep(0.05)
        transport.close()
        await asyncio.sleep(0.2)
        listener.close()
        return copies_what_it_queues(transport), received == b"a" * len(buffer)

    claimed, intact = asyncio.run(scenario())
    assert intact or not claimed, "a transport said to copy sent bytes changed after write"
