"""A real HTTP fault proxy in front of a registry, switchable while a test or demo runs.

It listens on its own loopback port, forwards every request to the registry, and applies
the current `Fault`: refuse connections (the listener closes), accept and hang, reset or
truncate the response after N body bytes, throttle to N bytes/s, flip a byte of the body,
or answer a status (404, 429, 500, ...) for paths matching a pattern. It counts what it
saw, so a test can assert that a blocked registry was never contacted.

It runs its own event loop in a thread, so synchronous tests can drive it; run as a
process (`python -m mirrorlab.harness.faults`), it also listens on a control port where
`FaultControl` switches faults and reads what it saw, so a lab can outlive the command
that started it.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import sys
import threading
import urllib.request
from dataclasses import asdict, dataclass
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .net import free_port, run_until_terminated

FAULT_KINDS = ("none", "refuse", "hang", "reset", "truncate", "slow", "corrupt", "status",
               "redirect")


@dataclass(frozen=True)
class Fault:
    kind: str = "none"
    path: str = ""
    """A regular expression; the fault applies to matching request paths (all if empty)."""
    status: int = 500
    after: int = 0
    """Body bytes sent before a reset, truncation or flipped byte."""
    rate: int = 64 * 1024
    """Bytes per second for `slow`."""
    location: str = ""
    """For `redirect`: the base URL the request path is sent on to (307)."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")

    def applies(self, path: str) -> bool:
        return self.kind != "none" and (not self.path or re.search(self.path, path) is not None)


class FaultProxy:
    """`FaultProxy(upstream_url).start()`; `.fault = Fault("reset", after=1000)`; `.stop()`."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int | None = None,
                 upstream_ca: str | None = None,
                 server_tls: tuple[str, str] | None = None,
                 control_port: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = port or free_port(host)
        self.fault = Fault()
        self.requests: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        """The headers of each request, in the order of `requests`."""
        self._upstream_ssl = ssl.create_default_context(cafile=upstream_ca) if upstream_ca \
            else None
        self._server_ssl: ssl.SSLContext | None = None
        if server_tls:
            self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._server_ssl.load_cert_chain(*server_tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._hung: list[asyncio.Future[None]] = []
        self.control_port = control_port
        self._transports: set[asyncio.Transport] = set()
        """Client connections seen, so that `refuse` can drop the established ones too."""
        self._control: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              skip_auto_headers=("Accept-Encoding",))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()
        if self.control_port is not None:
            control = web.Application()
            control.router.add_get("/fault", self._get_fault)
            control.router.add_put("/fault", self._put_fault)
            control.router.add_get("/requests", self._get_requests)
            control.router.add_delete("/requests", self._clear_requests)
            self._control = web.AppRunner(control, access_log=None)
            await self._control.setup()
            await web.TCPSite(self._control, "127.0.0.1", self.control_port).start()

    async def _get_fault(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.fault))

    async def _put_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault(**await request.json())
        except (TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        await self._set(fault)
        return web.json_response(asdict(self.fault))

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.requests.clear()
        self.headers_seen.clear()
        return web.json_response([])

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._server_ssl,
                                 reuse_address=True)
        await self._site.start()

    def set(self, fault: Fault) -> None:
        """Switch the fault; `refuse` closes the listener, anything else reopens it."""
        self._call(self._set(fault))

    async def _set(self, fault: Fault) -> None:
        previous, self.fault = self.fault, fault
        if fault.kind == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        if fault.kind == "refuse":  # a dead host also drops its kept-alive connections
            for transport in self._transports:
                transport.abort()
            self._transports.clear()
        elif fault.kind != "refuse" and previous.kind == "refuse":
            await self._listen()
        if fault.kind != "hang":
            for waiter in self._hung:
                waiter.cancel()
            self._hung.clear()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _stop(self) -> None:
        for waiter in self._hung:
            waiter.cancel()
        if self._control is not None:
            await self._control.cleanup()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def seen(self, pattern: str = "") -> list[str]:
        return [r for r in self.requests if re.search(pattern, r)]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            self._transports = {t for t in self._transports if not t.is_closing()}
            self._transports.add(request.transport)
        self.requests.append(f"{request.method} {request.path_qs}")
        self.headers_seen.append(dict(request.headers))
        fault = self.fault
        applies = fault.applies(request.path)
        if applies and fault.kind == "redirect":
            raise web.HTTPTemporaryRedirect(f"{fault.location.rstrip('/')}{request.path_qs}")
        if applies and fault.kind == "hang":
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._hung.append(waiter)
            await waiter  # cancelled when the fault changes or the proxy stops
        if applies and fault.kind == "status":
            body = (f'{{"errors":[{{"code":"UNKNOWN","message":"injected {fault.status}"}}]}}')
            return web.Response(status=fault.status, text=body, content_type="application/json",
                                headers={"Retry-After": "1"} if fault.status == 429 else {})
        assert self._session is not None
        # Repeated headers (podman sends six `Accept` lines) must stay separate lines.
        forwarded = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() != "host")
        async with self._session.request(
            request.method, f"{self.upstream}{request.path_qs}", headers=forwarded,
            data=await request.read() if request.can_read_body else None,
            allow_redirects=False, ssl=self._upstream_ssl or True,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            sent = 0
            cuts = applies and fault.kind in ("reset", "truncate")
            async for chunk in upstream.content.iter_chunked(16 * 1024):
                if cuts and sent + len(chunk) > fault.after:
                    await response.write(chunk[: max(fault.after - sent, 0)])
                    transport = request.transport
                    if transport is not None:
                        if fault.kind == "reset":
                            transport.abort()
                        else:
                            transport.close()
                    return response
                if applies and fault.kind == "corrupt" and sent <= fault.after < sent + len(chunk):
                    at = fault.after - sent
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                if applies and fault.kind == "slow":
                    await asyncio.sleep(len(chunk) / fault.rate)
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


class FaultControl:
    """Drive a fault proxy process through its control port."""

    def __init__(self, control_port: int) -> None:
        self.base = f"http://127.0.0.1:{control_port}"

    def _call(self, method: str, path: str, body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def set(self, fault: Fault) -> None:
        self._call("PUT", "/fault", asdict(fault))

    def fault(self) -> Fault:
        data = self._call("GET", "/fault")
        assert isinstance(data, dict)
        return Fault(**data)

    def requests(self) -> list[str]:
        data = self._call("GET", "/requests")
        assert isinstance(data, list)
        return [str(item) for item in data]

    def clear(self) -> None:
        self._call("DELETE", "/requests")


def main(argv: list[str] | None = None) -> int:
    """`python -m mirrorlab.harness.faults --listen H:P --control P --upstream URL
    [--tls CERT KEY]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mirrorlab.harness.faults")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--upstream-ca")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    proxy = FaultProxy(args.upstream, host=host, port=int(port), upstream_ca=args.upstream_ca,
                       server_tls=tuple(args.tls) if args.tls else None,
                       control_port=args.control)
    proxy.start()
    return run_until_terminated(
        proxy.stop, f"fault proxy on {proxy.address}, control on 127.0.0.1:{args.control}")


if __name__ == "__main__":
    sys.exit(main())
