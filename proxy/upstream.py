"""The upstream side: talking to one physical source as containers/image would.

Per physical host: TLS verified against the system roots plus its certs.d `*.crt`, client
certificates from `*.cert`/`*.key`; `insecure` means HTTPS without verification, then
plain HTTP. A `GET /v2/` ping fixes the scheme and records the auth challenge. Bearer
tokens are fetched per repository scope and cached; credentials come from auth.json for
the *physical* repository and never leave for another host (redirects drop them).
429 is retried briefly, honouring `Retry-After`. Decompression stays off: digests are
computed over the bytes as the registry sent them.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .authfile import AuthFile, Credentials, find_credentials
from .certsd import CertsDirSettings, certs_dir_for, read_certs_dir
from .errors import ConfigError
from .failures import describe, outcome_of_error, redacted, source_failure
from .outcomes import Outcome, SourceFailure, outcome_of_status
from .plan import PullSource
from .resolve_table import ResolveTable
from .sites import same_site

log = logging.getLogger("mirrorlab.proxy")

MANIFEST_LIMIT = 4 * 1024 * 1024
USER_AGENT = "mirrorlab/0.1"
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0
    retry_429: int = 2
    """Extra attempts after a 429, as containers/image does (it allows 4)."""
    max_retry_wait: float = 2.0


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str


@dataclass
class _Ping:
    base: str
    challenge: dict[str, str] | None
    scheme_name: str = ""
    checked: float = field(default_factory=time.monotonic)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {...}); quoted commas are kept."""
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): value.replace('\\"', '"') for key, value in
              re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', rest)}
    for key, value in re.findall(r'(\w+)\s*=\s*([^",\s]+)', rest):
        params.setdefault(key.lower(), value)
    return scheme.lower(), params


def _error_code(body: bytes) -> tuple[str | None, str]:
    """The first OCI error code and its message, as containers/image reports them."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return None, ""
    return code or None, message


def status_message(status: int, body: bytes) -> tuple[str | None, str]:
    code, message = _error_code(body)
    if code is not None:
        text = code.lower().replace("_", " ")
        return code, text if message in ("", text) else f"{text}: {message}"
    if status == 401:
        return None, "authentication required"
    if 400 <= status < 500:
        return None, f'StatusCode: {status}, "{body[:50].decode(errors="replace")}..."'
    return None, f"received unexpected HTTP status: {status}"


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body whole, or, when it is longer than `limit`, its first `limit` + 1 bytes
    (aiohttp's `content.read(n)` answers with what has arrived so far, which may be less
    than the body: a manifest that came in two reads was cut short)."""
    pieces: list[bytes] = []
    size = 0
    while size <= limit:
        piece = await response.content.read(limit + 1 - size)
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class Upstreams:
    """One shared HTTP client for every source, with per-host TLS, pings and tokens."""

    def __init__(self, *, certs: CertsDirSettings, auth_files: Iterable[AuthFile],
                 resolve: ResolveTable, timeouts: Timeouts = Timeouts(),
                 trusted_realms: Iterable[str] = ()) -> None:
        self.certs = certs
        self.auth_files = list(auth_files)
        # Token services on another site that may still receive credentials (--trust-realm).
        self.trusted_realms = frozenset(trusted_realms)
        self._withheld: set[tuple[str, str]] = set()
        self.timeouts = timeouts
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolve.resolver(), limit=0,
                                           ttl_dns_cache=None, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect,
                                          connect=timeouts.connect, sock_read=timeouts.read),
            auto_decompress=False,
            read_bufsize=1024 * 1024,  # a blob is read a MiB at a time (blobs.STREAM_CHUNK)
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            headers={"User-Agent": USER_AGENT},
        )
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._system = ssl.create_default_context()
        self._unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._unverified.check_hostname = False
        self._unverified.verify_mode = ssl.CERT_NONE
        self._pings: dict[tuple[str, bool], _Ping] = {}
        self._pinging: dict[tuple[str, bool], asyncio.Future[_Ping]] = {}
        self._generation = 0
        """Counts reloads: a ping begun before one is not kept."""
        self._tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}

    async def close(self) -> None:
        for ping in self._pinging.values():
            ping.cancel()
        await self._session.close()

    def configure(self, *, certs: CertsDirSettings, auth_files: Iterable[AuthFile]) -> None:
        """Take a reloaded configuration: TLS material and credentials are re-read."""
        self.certs, self.auth_files = certs, list(auth_files)
        self._contexts.clear()
        self._pings.clear()
        self._pinging.clear()
        self._generation += 1
        self._tokens.clear()

    # ------------------------------------------------------------ TLS and ping

    def tls_context(self, host: str, insecure: bool) -> ssl.SSLContext:
        """The host's TLS settings. Loading the system CAs takes some 20 ms, so it happens
        once, at start, for every host without certs.d files; never for an insecure one."""
        key = (host, insecure)
        context = self._contexts.get(key)
        if context is None:
            files = read_certs_dir(certs_dir_for(host, self.certs))
            if insecure and not files.client_pairs:
                context = self._unverified
            elif not insecure and not files.ca_files and not files.client_pairs:
                context = self._system
            else:
                context = ssl.create_default_context()
                if insecure:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                try:
                    for ca in files.ca_files:
                        context.load_verify_locations(ca)
                    for cert, key_file in files.client_pairs:
                        context.load_cert_chain(cert, key_file)
                except (OSError, ssl.SSLError) as error:
                    raise ConfigError(f"loading certificates for {host}: {error}") from None
            self._contexts[key] = context
        return context

    async def _ping(self, source: PullSource) -> _Ping:
        """The host's ping, kept for 5 minutes; concurrent first requests share one."""
        key = (source.host, source.insecure)
        ping = self._pings.get(key)
        if ping is not None and time.monotonic() - ping.checked < 300:
            return ping
        running = self._pinging.get(key)
        if running is None:
            running = asyncio.ensure_future(self._ping_once(source, self._generation))
            self._pinging[key] = running
            running.add_done_callback(lambda done: self._pinged(key, done))
        # shielded: one waiter going away does not cancel the ping the others wait for
        return await asyncio.shield(running)

    def _pinged(self, key: tuple[str, bool], done: asyncio.Future[_Ping]) -> None:
        if self._pinging.get(key) is done:
            del self._pinging[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    async def _ping_once(self, source: PullSource, generation: int) -> _Ping:
        key = (source.host, source.insecure)
        schemes = ["https", "http"] if source.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            base = f"{scheme}://{source.connect_host}"
            try:
                async with self._session.get(
                    f"{base}/v2/", ssl=self.tls_context(source.host, source.insecure)
                    if scheme == "https" else False, allow_redirects=False,
                ) as response:
                    await response.read()
                    if response.status in (200, 401):
                        challenge = None
                        if response.status == 401:
                            challenge_header = response.headers.get("WWW-Authenticate", "")
                            name, challenge = parse_challenge(challenge_header)
                            challenge["scheme"] = name
                        ping = _Ping(base, challenge)
                        if generation == self._generation:  # not from before a reload
                            self._pings[key] = ping
                        return ping
                    last = SourceFailure(outcome_of_status(response.status),
                                         f"status {response.status} on {base}/v2/",
                                         status=response.status)
            except ConfigError:
                raise
            except Exception as error:  # a mapped failure moves to the next scheme
                if outcome_of_error(error) is None:
                    raise
                last = error
        assert last is not None
        outcome = outcome_of_error(last) or Outcome.CONNECT
        raise SourceFailure(outcome, f"pinging container registry {source.host}: "
                            f"{describe(last)}")

    # ------------------------------------------------------------ auth

    def credentials(self, source: PullSource) -> Credentials | None:
        return find_credentials(self.auth_files, source.reference.name)

    async def _authorization(self, source: PullSource, ping: _Ping,
                             challenge: dict[str, str] | None = None) -> str | None:
        challenge = challenge or ping.challenge
        if not challenge:
            return None
        creds = self.credentials(source)
        if challenge.get("scheme") == "basic":
            if creds and creds.username:
                raw = f"{creds.username}:{creds.password}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            return None
        if challenge.get("scheme") != "bearer" or "realm" not in challenge:
            return None
        scope = challenge.get("scope") or f"repository:{source.reference.path}:pull"
        service = challenge.get("service", "")
        key = (challenge["realm"], service, scope, creds.username if creds else "")
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        token, lifetime = await self._fetch_token(source, challenge["realm"], service, scope,
                                                  creds)
        self._tokens[key] = (token, time.monotonic() + max(lifetime - 5, 1))
        return f"Bearer {token}"

    async def _fetch_token(self, source: PullSource, realm: str, service: str, scope: str,
                           creds: Credentials | None) -> tuple[str, float]:
        query = {"scope": scope}
        if service:
            query["service"] = service
        headers = {}
        realm_host = urlsplit(realm).hostname or ""
        if creds and creds.username:
            if same_site(realm_host, source.connect_host) or realm_host in self.trusted_realms:
                raw = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            elif (realm_host, source.host) not in self._withheld:
                # containers/image would send them; say so once, with the way to allow it
                self._withheld.add((realm_host, source.host))
                log.warning(json.dumps({
                    "event": "credentials_withheld", "registry": source.host,
                    "realm": realm_host, "detail": f"token service {realm_host} is not on "
                    f"the site of {source.host}: asking it anonymously (--trust-realm "
                    f"{realm_host} would send the credentials)"}))
        separator = "&" if "?" in realm else "?"
        try:
            async with self._session.get(
                f"{realm}{separator}{urlencode(query)}", headers=headers,
                ssl=self.tls_context(realm_host, source.insecure)
                if realm.startswith("https:") else False,
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise SourceFailure(Outcome.AUTH, f"fetching token from {realm}: status "
                                        f"{response.status}", status=response.status)
                data = json.loads(body)
        except SourceFailure:
            raise
        except (ValueError, RecursionError) as error:
            raise SourceFailure(Outcome.AUTH, f"fetching token from {realm}: the answer is "
                                f"not JSON: {describe(error)}") from None
        except Exception as error:
            if outcome_of_error(error) is None:
                raise
            raise SourceFailure(
                Outcome.AUTH, f"fetching token from {realm}: {describe(error)}") from None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) \
            else None
        if not isinstance(token, str):
            raise SourceFailure(Outcome.AUTH, f"token response from {realm} has no token")
        expires = data.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
        return token, lifetime

    # ------------------------------------------------------------ requests

    async def request(self, source: PullSource, method: str, path: str,
                      headers: CIMultiDict[str] | None = None) -> aiohttp.ClientResponse:
        """Send to the source (ping, auth, 429 retries, redirects); caller releases it."""
        ping = await self._ping(source)
        authorization = await self._authorization(source, ping)
        url = f"{ping.base}{path}"
        retried_auth = False
        attempts_429 = 0
        while True:
            response = await self._send(source, method, url, headers, authorization)
            if response.status == 401 and not retried_auth:
                challenge_header = response.headers.get("WWW-Authenticate", "")
                scheme, params = parse_challenge(challenge_header)
                if scheme in ("bearer", "basic"):
                    params["scheme"] = scheme
                    response.release()
                    authorization = await self._authorization(source, ping, params)
                    retried_auth = True
                    continue
            if response.status == 429 and attempts_429 < self.timeouts.retry_429:
                wait = _retry_after(response.headers.get("Retry-After"))
                wait = min(wait if wait is not None else 0.5 * 2**attempts_429,
                           self.timeouts.max_retry_wait)
                response.release()
                attempts_429 += 1
                await asyncio.sleep(wait)
                continue
            return response

    async def _send(self, source: PullSource, method: str, url: str,
                    headers: CIMultiDict[str] | None,
                    authorization: str | None) -> aiohttp.ClientResponse:
        origin = urlsplit(url).netloc
        for _ in range(6):
            sent = CIMultiDict(headers or {})
            if authorization and urlsplit(url).netloc == origin:
                sent["Authorization"] = authorization
            https = url.startswith("https:")
            response = await self._session.request(
                method, url, headers=sent, allow_redirects=False,
                ssl=self.tls_context(source.host, source.insecure) if https else False,
            )
            if response.status not in REDIRECTS or "Location" not in response.headers:
                return response
            location = response.headers["Location"]
            response.release()
            url = str(response.url.join(URL(location)))
        raise SourceFailure(Outcome.BAD_RESPONSE, f"too many redirects from {url}")

    async def get_url(self, url: str, limit: int) -> tuple[int, bytes]:
        """A plain GET (a lookaside signature): no registry credentials go with it. The
        status and the body, as `read_limited` reads it (past `limit`, one byte more)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        try:
            async with self._session.get(
                url, allow_redirects=True,
                ssl=self.tls_context(host, False) if url.startswith("https:") else False,
            ) as response:
                return response.status, await read_limited(response, limit)
        except (SourceFailure, ConfigError):
            raise
        except Exception as error:
            raise source_failure(error, f'Get "{redacted(url)}"') from None

    async def manifest(self, source: PullSource, accept: list[str]) -> Manifest:
        """GET the manifest of `source.reference`, read whole, digest checked."""
        ref = source.reference
        identity = ref.digest or ref.tag or "latest"
        headers = CIMultiDict(("Accept", value) for value in accept)
        what = f"reading manifest {identity} in {ref.name}"
        try:
            response = await self.request(source, "GET", f"/v2/{ref.path}/manifests/{identity}",
                                          headers)
            async with response:
                if response.status != 200:
                    body = await response.content.read(64 * 1024)
                    code, message = status_message(response.status, body)
                    raise SourceFailure(outcome_of_status(response.status),
                                        f"{what}: {message}", status=response.status,
                                        code=code)
                body = await read_limited(response, MANIFEST_LIMIT)
                if len(body) > MANIFEST_LIMIT:
                    raise SourceFailure(Outcome.TOO_LARGE,
                                        f"{what}: manifest is larger than 4 MiB")
                media_type = response.headers.get("Content-Type", "")
                sent_digest = response.headers.get("Docker-Content-Digest")
        except (SourceFailure, ConfigError):
            raise
        except Exception as error:
            raise source_failure(error, what) from None
        expected = ref.digest or sent_digest
        algorithm = (expected or "sha256:").split(":", 1)[0]
        digest = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if expected is not None and digest != expected:
            raise SourceFailure(Outcome.DIGEST, f"{what}: manifest digest {digest} does not match "
                                f"{'requested' if ref.digest else 'advertised'} {expected}")
        return Manifest(body, media_type, digest)
