"""`mirrorlab bench`: the floor of mirrorlab's own HTTP stack, as a baseline.

A relay written with nothing but aiohttp (the server and client mirrorlab uses, on one
event loop): `GET`/`HEAD /v2/...` is asked of the origin on kept-alive connections and the
answer streamed back a MiB at a time. It verifies nothing, resolves nothing, logs nothing:
what a request costs through aiohttp alone. Where mirrorlab's overhead on manifests or
many small blobs approaches it, the rest is the stack's, not mirrorlab's.

    python -m mirrorlab.harness.aiohttp_relay PORT ORIGIN_URL      (listens on 127.0.0.1)
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

PIECE = 1024 * 1024
PASSED = ("Content-Type", "Content-Length", "Docker-Content-Digest", "Content-Range")


def relay_app(origin: str) -> web.Application:
    session: aiohttp.ClientSession | None = None

    async def handle(request: web.Request) -> web.StreamResponse:
        assert session is not None
        headers = {name: request.headers[name] for name in ("Accept", "Range")
                   if name in request.headers}
        async with session.request(request.method, f"{origin}{request.path_qs}",
                                   headers=headers, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                name: upstream.headers[name] for name in PASSED if name in upstream.headers})
            await response.prepare(request)
            if request.method != "HEAD":
                async for piece in upstream.content.iter_chunked(PIECE):
                    await response.write(piece)
            await response.write_eof()
            return response

    async def start(app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession(
            auto_decompress=False, read_bufsize=PIECE,
            connector=aiohttp.TCPConnector(limit=0, force_close=False))

    async def stop(app: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", handle)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main() -> None:
    port, origin = int(sys.argv[1]), sys.argv[2].rstrip("/")
    web.run_app(relay_app(origin), host="127.0.0.1", port=port, access_log=None,
                print=None, handle_signals=True)


if __name__ == "__main__":
    main()
