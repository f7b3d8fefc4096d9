"""A token server for a lab registry that requires authentication (distribution's token auth).

The registry answers `401 WWW-Authenticate: Bearer realm=...,service=...`; clients fetch
a JWT here with their Basic credentials and the scope they want. The JWT is ES256,
signed by a key whose certificate (in the `x5c` header) chains to the CA the registry is
configured to trust (`rootcertbundle`). Anonymous requests get a token with no access,
so the registry refuses them. It counts what it saw, credentials included, so a test can
check that no credential went where it should not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import load_pem_x509_certificate

from .net import free_port, run_until_terminated

ISSUER = "mirrorlab-lab-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    scope: str
    user: str | None


@dataclass
class TokenServer:
    """`TokenServer(workdir, users={"alice": "pw"}).start()`; `.registry_auth()` for config."""

    workdir: Path
    users: dict[str, str]
    service: str = "mirrorlab-lab"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    seen: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="mirrorlab token signing")
        signer = ca.issue_cert("token-signer.mirrorlab.invalid")
        self.bundle = self.workdir / "token-ca.pem"
        ca.cert_pem.write_to_path(str(self.bundle))
        key = serialization.load_pem_private_key(signer.private_key_pem.bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError("trustme issued a non-EC key; ES256 needs P-256")
        self._key = key
        cert = load_pem_x509_certificate(signer.cert_chain_pems[0].bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def registry_auth(self, realm: str | None = None) -> dict[str, object]:
        """The `auth:` section of the registry's config."""
        return {"token": {"realm": realm or f"http://{self.host}:{self.port}/token",
                          "service": self.service, "issuer": ISSUER,
                          "rootcertbundle": str(self.bundle)}}

    def issue(self, user: str | None, scope: str) -> str:
        access = []
        if user is not None:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": kind, "name": name,
                               "actions": [a for a in actions.split(",") if a == "pull"]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": self._x5c}
        claims = {"iss": ISSUER, "sub": user or "", "aud": self.service, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": secrets.token_hex(8),
                  "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def _token(self, request: web.Request) -> web.Response:
        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return web.json_response({"details": "bad credentials"}, status=401)
            user = name
        scope = request.query.get("scope", "")
        self.seen.append(TokenRequest(scope, user))
        token = self.issue(user, scope)
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})

    def start(self) -> TokenServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    def stop(self) -> None:
        if self._thread.is_alive() and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """`python -m mirrorlab.harness.tokenauth --listen H:P --workdir DIR --user NAME:PASSWORD`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mirrorlab.harness.tokenauth")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--workdir", required=True, help="the signing CA goes here")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    users = dict(item.split(":", 1) for item in args.user)
    server = TokenServer(Path(args.workdir), users, host=host, port=int(port)).start()
    return run_until_terminated(server.stop, f"token server on {host}:{port}")


if __name__ == "__main__":
    raise SystemExit(main())
