"""`mirrorlab serve`: an OCI distribution pull server that pulls through the mirror chains.

Manifests follow containers/image exactly: policy on the logical reference first, then
the sources of the pull plan in order; a blocked source is never contacted. The source
that served a manifest is remembered for what that manifest references ("sticky", as
upstream): its blobs and, for an index, its per-platform manifests go there first; where
it fails, mirrorlab falls back to the rest of the plan, which containers/image cannot do.
That fallback is marked in logs, headers and metrics.

Nothing unverified completes: a manifest is read whole and checked before it is sent;
a blob of up to 4 MiB likewise; a larger blob streams with its last chunk held back until
its digest matches, and the connection is cut otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .chain import Attempt, CoolDown, Step, aggregate_error
from .errors import ConfigError, MirrorlabError
from .explain import NodeConfig, explain
from .matching import RewriteError
from .metrics import Metrics
from .paths import NodeFiles
from .plan import PullSource, resolve_sources
from .policy import evaluate_policy
from .reference import TAG_PATTERN, ImageReference, InvalidReference, validate_digest
from .resolve_table import ResolveTable
from .routing import route
from .shortnames import ShortNameError, resolve_short_name
from .upstream import Timeouts, UpstreamError, Upstreams, status_message

log = logging.getLogger("mirrorlab.proxy")

CHUNK = 256 * 1024
SMALL_BLOB = 4 * 1024 * 1024
BUFFER_BUDGET = 16 * 1024 * 1024
SOURCE_HEADER = "X-Mirrorlab-Source"
FALLBACK_HEADER = "X-Mirrorlab-Fallback"
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
_REQUEST_IDS = itertools.count(1)
REQUEST_ID = web.RequestKey("id", int)


@dataclass(frozen=True)
class ServeOptions:
    files: NodeFiles
    resolve: ResolveTable = field(default_factory=ResolveTable)
    default_registry: str = "docker.io"
    timeouts: Timeouts = field(default_factory=Timeouts)
    cooldown_seconds: float = 30.0
    """0 turns the cool-down off (strict, node-faithful)."""
    sticky_seconds: float = 600.0
    reload_interval: float = 2.0
    buffer_budget: int = BUFFER_BUDGET
    """Bytes of small blobs held whole for verification at once, across all requests; past
    it, a small blob streams with its last chunk held back, like a large one."""
    trusted_realms: tuple[str, ...] = ()
    """Token-service hosts that receive credentials though not on the registry's site."""
    idle_timeout: float = 60.0
    """A client connection that sends no (complete) request for this long is closed: an
    idle keep-alive, a silent socket, or headers trickling in (aiohttp's default: an hour)."""
    short_names: str = "default"
    """`default`: a path naming no registry goes to `default_registry`; `search`: it is
    resolved through `[aliases]` and `unqualified-search-registries`, as podman does."""


def oci_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
              detail: object = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return web.json_response({"errors": [error]}, status=status,
                             headers={**API_VERSION, **(headers or {})})


# How the last failure of a chain becomes the client's answer.
_FAILURE_STATUS = {
    "blocked": (403, "DENIED"),
    "denied": (403, "DENIED"),
    "toomanyrequests": (429, "TOOMANYREQUESTS"),
}


def _failure_response(attempts: list[Attempt], unknown_code: str) -> web.Response:
    failures = [a for a in attempts if a.failed and a.outcome != "cooldown"] or attempts
    last = failures[-1] if failures else None
    message = aggregate_error(attempts)
    outcome = last.outcome if last else "not_found"
    status, code = _FAILURE_STATUS.get(outcome, (502, "UNKNOWN"))
    if outcome == "not_found":
        status, code = 404, unknown_code
    detail = [{"source": a.source, "outcome": a.outcome, "error": a.detail} for a in attempts]
    return oci_error(status, code, message, detail=detail)


def _parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range, or None for the whole blob."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or not (match[1] or match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), total - 1) if match[2] else total - 1
    else:
        start, end = max(total - int(match[2]), 0), total - 1
    if start > end or start >= total:
        raise ValueError("unsatisfiable range")
    return start, end


class _HeldBackWriter:
    """Writes the window [start, end] of a blob, always keeping the last piece back."""

    def __init__(self, response: web.StreamResponse, start: int, end: int) -> None:
        self.response, self.start, self.end = response, start, end
        self.position = 0
        self.held = b""

    async def feed(self, chunk: bytes) -> None:
        low = max(self.start - self.position, 0)
        high = min(self.end + 1 - self.position, len(chunk))
        self.position += len(chunk)
        if low < high:
            if self.held:
                await self.response.write(self.held)
            self.held = chunk if (low, high) == (0, len(chunk)) else chunk[low:high]

    async def finish(self) -> None:
        if self.held:
            await self.response.write(self.held)
        await self.response.write_eof()


class Proxy:
    """The server's state: configuration, upstream client, sticky sources, metrics."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.config = NodeConfig.load(options.files)
        self.metrics = Metrics()
        self.cooldown = CoolDown(seconds=options.cooldown_seconds)
        self.sticky: OrderedDict[tuple[str, str], tuple[ImageReference, PullSource, float]] = \
            OrderedDict()
        """(client repository, referenced digest) -> the step that served the manifest."""
        self.bad_blobs: set[tuple[str, str]] = set()
        self.buffered = 0
        """Bytes reserved by requests buffering a small blob (see `buffer_budget`)."""
        self.upstreams: Upstreams | None = None
        self._stamp = self._files_stamp()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024,
                              middlewares=[self._observe])
        app.router.add_get("/v2/", self.handle_base)
        app.router.add_get("/healthz", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/mirrorlab/explain", self.handle_explain)
        name = r"{name:[^?#]+?}"
        for method in ("GET", "HEAD"):
            app.router.add_route(method, f"/v2/{name}/manifests/{{reference}}",
                                 self.handle_manifest)
            app.router.add_route(method, f"/v2/{name}/blobs/{{digest}}", self.handle_blob)
        app.router.add_get(f"/v2/{name}/tags/list", self.handle_tags)
        app.router.add_get(f"/v2/{name}/referrers/{{digest}}", self.handle_referrers)
        app.router.add_route("*", "/v2/{tail:.*}", self.handle_unsupported)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app: web.Application) -> None:
        self.upstreams = Upstreams(certs=self.config.certs, auth_files=self.config.auth_files,
                                   resolve=self.options.resolve, timeouts=self.options.timeouts,
                                   trusted_realms=self.options.trusted_realms)
        if self.options.reload_interval > 0:
            self._spawn(self._watch_files())
        # Outside the main thread (tests) there is no SIGHUP; reload() is still callable.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def _cleanup(self, app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.upstreams is not None:
            await self.upstreams.close()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _files_stamp(self) -> tuple[tuple[str, float], ...]:
        files = self.options.files
        paths = [*self.config.registries.files, files.policy_path(),
                 *self.config.registries.drop_in_dirs,
                 *(path for path, _ in files.auth_file_paths())]
        stamp = []
        for path in paths:
            try:
                stamp.append((path, os.stat(path).st_mtime))
            except OSError:
                stamp.append((path, -1.0))
        return tuple(stamp)

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_interval)
            if self._files_stamp() != self._stamp:
                self.reload()

    def reload(self) -> None:
        """Re-read every file; a bad new configuration is logged and the old one kept."""
        try:
            config = NodeConfig.load(self.options.files)
        except MirrorlabError as error:
            log.error(json.dumps({"event": "reload", "ok": False, "error": str(error)}))
            self._stamp = self._files_stamp()
            return
        self.config = config
        if self.upstreams is not None:
            self.upstreams.configure(certs=config.certs, auth_files=config.auth_files)
        self.sticky.clear()
        self._stamp = self._files_stamp()
        log.info(json.dumps({"event": "reload", "ok": True,
                             "files": list(config.registries.files)}))

    @web.middleware
    async def _observe(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        request[REQUEST_ID] = next(_REQUEST_IDS)
        kind = _request_kind(request.path)
        try:
            response = await handler(request)
        except web.HTTPException as error:  # aiohttp's own 404/405: counted, then raised
            self.metrics.requests.labels(kind, str(error.status)).inc()
            raise
        self.metrics.requests.labels(kind, str(response.status)).inc()
        return response

    # ------------------------------------------------------------ small endpoints

    async def handle_base(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers=API_VERSION)

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "files": list(self.config.registries.files),
                                  "buffered_bytes": self.buffered})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            content_type="text/plain", charset="utf-8")

    async def handle_explain(self, request: web.Request) -> web.Response:
        ref = request.query.get("ref", "")
        return web.json_response(explain(self.config, ref).to_json())

    async def handle_unsupported(self, request: web.Request) -> web.Response:
        return oci_error(405, "UNSUPPORTED", f"{request.method} {request.path}: mirrorlab is a "
                         "pull-only proxy")

    # ------------------------------------------------------------ resolving a request

    def _client_key(self, request: web.Request) -> str:
        """The repository as the client named it: what sticky sources are keyed on."""
        return f"{request.query.get('ns', '')}|{request.match_info['name']}"

    def _candidates(self, request: web.Request, identity: str) -> list[ImageReference]:
        """Logical references the request may mean: one, or several for a short name."""
        found = route(request.match_info["name"], request.query.get("ns"),
                      self.options.default_registry)
        if found.via == "default" and self.options.short_names == "search":
            return resolve_short_name(self.config.registries, request.match_info["name"],
                                      identity)
        return [found.reference(identity)]

    def _chain(self, request: web.Request, kind: str, identity: str
               ) -> tuple[list[Step], web.Response | None]:
        """Policy, then the plan of every candidate: nothing upstream is touched yet."""
        try:
            candidates = self._candidates(request, identity)
        except (InvalidReference, ValueError, MirrorlabError) as error:
            code = "DIGEST_INVALID" if "digest" in str(error) else "NAME_INVALID"
            if isinstance(error, ShortNameError):
                code = "NAME_UNKNOWN"
            return [], oci_error(404 if code == "NAME_UNKNOWN" else 400, code, str(error))
        steps: list[Step] = []
        refusal: web.Response | None = None
        for logical in candidates:
            decision = evaluate_policy(self.config.policy, logical)
            if not decision.allowed:
                log.info(json.dumps({"event": "denied", "request": request[REQUEST_ID],
                                     "kind": kind, "logical": str(logical),
                                     "scope": decision.scope, "reason": decision.reason}))
                refusal = refusal or oci_error(
                    403, "DENIED", f"Source image rejected: {decision.reason}",
                    detail={"scope": decision.scope, "reference": str(logical)})
                continue
            try:
                plan = resolve_sources(self.config.registries, logical)
            except RewriteError as error:
                refusal = refusal or oci_error(400, "NAME_INVALID", str(error))
                continue
            steps += [Step(logical, source) for source in plan.sources]
        if not steps:
            return [], refusal or oci_error(404, "NAME_UNKNOWN", "no source to try")
        return self._sticky_first(request, steps, identity), None

    def _sticky_entry(self, request: web.Request, identity: str
                      ) -> tuple[ImageReference, PullSource, float] | None:
        entry = self.sticky.get((self._client_key(request), identity))
        if entry is None or time.monotonic() - entry[2] > self.options.sticky_seconds:
            return None
        return entry

    def _sticky_first(self, request: web.Request, steps: list[Step], identity: str
                      ) -> list[Step]:
        """A digest that a served manifest referenced (a blob, a per-platform manifest) goes
        first to the source that served that manifest, as in containers/image; the rest of
        the plan follows. Anything else (tags, top-level digests) follows the plan."""
        entry = self._sticky_entry(request, identity)
        if entry is None:
            return steps
        logical, served, _ = entry
        first = Step(logical.with_digest(identity),
                     replace(served, reference=served.reference.with_digest(identity)))
        rest = [s for s in steps if s.source.reference.name != served.reference.name]
        return [first, *rest]

    def _remember(self, request: web.Request, step: Step, body: bytes) -> None:
        """Remember the serving source for every digest the manifest references."""
        repository = self._client_key(request)
        now = time.monotonic()
        for digest in referenced_digests(body):
            key = (repository, digest)
            self.sticky[key] = (step.logical, step.source, now)
            self.sticky.move_to_end(key)
        while len(self.sticky) > 100_000:
            self.sticky.popitem(last=False)

    def _record(self, request: web.Request, kind: str, step: Step, attempts: list[Attempt],
                outcome: str, detail: str, started: float | None = None,
                fallback: bool = False) -> None:
        """Append the attempt of `step` (timed from `started`), count it and log it."""
        elapsed = (time.monotonic() - started) * 1000 if started is not None else 0.0
        attempt = Attempt(str(step.source.reference), outcome, detail, elapsed, fallback)
        attempts.append(attempt)
        host = step.source.host
        self.metrics.attempts.labels(kind, host, attempt.outcome).inc()
        if attempt.outcome not in ("blocked", "cooldown"):
            self.cooldown.record(host, attempt.outcome)
        log.info(json.dumps({
            "event": "attempt", "request": request[REQUEST_ID], "kind": kind,
            "logical": str(step.logical), "source": attempt.source, "outcome": attempt.outcome,
            "detail": attempt.detail, "ms": round(attempt.elapsed_ms, 2),
            "fallback": attempt.fallback,
        }))

    def _skip(self, request: web.Request, kind: str, step: Step, attempts: list[Attempt],
              cooling: list[Step]) -> bool:
        """Record a source that is not contacted (blocked or cooling down)."""
        source = step.source
        if source.blocked:
            self._record(request, kind, step, attempts, "blocked",
                         f"registry {source.blocked_by} is blocked in "
                         f"{self.config.registries.blocked_origin}")
        elif step in cooling:
            self._record(request, kind, step, attempts, "cooldown",
                         f"{source.host} failed repeatedly; skipped for "
                         f"{self.cooldown.seconds:g}s")
        else:
            return False
        return True

    # ------------------------------------------------------------ manifests

    async def handle_manifest(self, request: web.Request) -> web.StreamResponse:
        identity = request.match_info["reference"]
        if ":" in identity:
            try:
                validate_digest(identity)
            except InvalidReference as error:
                return oci_error(400, "DIGEST_INVALID", f"{identity}: {error}")
        elif not TAG_PATTERN.fullmatch(identity):
            return oci_error(400, "MANIFEST_INVALID", f"{identity!r} is not a valid tag")
        steps, refusal = self._chain(request, "manifest", identity)
        if refusal is not None:
            return refusal
        steps, cooling = self.cooldown.order(steps)
        sticky = self._sticky_entry(request, identity) is not None
        accept = request.headers.getall("Accept", [])
        attempts: list[Attempt] = []
        assert self.upstreams is not None
        for index, step in enumerate(steps):
            if self._skip(request, "manifest", step, attempts, cooling):
                continue
            started = time.monotonic()
            try:
                manifest = await self.upstreams.manifest(step.source, accept)
            except (UpstreamError, ConfigError) as error:
                kind = error.kind if isinstance(error, UpstreamError) else "certs"
                self._record(request, "manifest", step, attempts, kind, str(error), started)
                continue
            self.metrics.latency.labels("manifest", step.source.host).observe(
                time.monotonic() - started)
            fallback = sticky and index > 0
            self._record(request, "manifest", step, attempts, "served", manifest.digest,
                         started, fallback)
            if len(attempts) > 1:
                self.metrics.fallbacks.labels("manifest").inc()
            self._remember(request, step, manifest.body)
            headers = {**API_VERSION, "Docker-Content-Digest": manifest.digest,
                       SOURCE_HEADER: str(step.source.reference)}
            if fallback:
                headers[FALLBACK_HEADER] = "manifest"
            if manifest.media_type:
                headers["Content-Type"] = manifest.media_type
            if request.method == "HEAD":
                headers["Content-Length"] = str(len(manifest.body))
                return web.Response(status=200, headers=headers)
            return web.Response(status=200, body=manifest.body, headers=headers)
        return _failure_response(attempts, "MANIFEST_UNKNOWN")

    async def handle_tags(self, request: web.Request) -> web.Response:
        query = {k: v for k, v in request.query.items() if k in ("n", "last")}
        suffix = f"?{urlencode(query)}" if query else ""
        return await self._listing(request, "tags", "latest",
                                   lambda s: f"/v2/{s.reference.path}/tags/list{suffix}")

    async def handle_referrers(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        artifact = request.query.get("artifactType")
        suffix = f"?{urlencode({'artifactType': artifact})}" if artifact else ""
        return await self._listing(
            request, "referrers", digest,
            lambda s: f"/v2/{s.reference.path}/referrers/{digest}{suffix}")

    async def _listing(self, request: web.Request, kind: str, identity: str,
                       path_of: Callable[[PullSource], str]) -> web.Response:
        """Tags and referrers: the first source that answers 200, body passed through."""
        steps, refusal = self._chain(request, kind, identity)
        if refusal is not None:
            return refusal
        steps, cooling = self.cooldown.order(steps)
        attempts: list[Attempt] = []
        assert self.upstreams is not None
        for step in steps:
            if self._skip(request, kind, step, attempts, cooling):
                continue
            source, started = step.source, time.monotonic()
            try:
                async with await self.upstreams.request(source, "GET", path_of(source)) as up:
                    body = await up.content.read(SMALL_BLOB)
                    status, headers = up.status, up.headers
            except (TimeoutError, UpstreamError, ConfigError, aiohttp.ClientError) as error:
                outcome = error.kind if isinstance(error, UpstreamError) else "connect"
                self._record(request, kind, step, attempts, outcome, str(error), started)
                continue
            if status != 200:
                _, message = status_message(status, body)
                outcome = "not_found" if status == 404 else "status"
                self._record(request, kind, step, attempts, outcome, message, started)
                continue
            self._record(request, kind, step, attempts, "served", "", started)
            out = {**API_VERSION, SOURCE_HEADER: str(source.reference),
                   "Content-Type": headers.get("Content-Type", "application/json")}
            for name in ("Link", "OCI-Filters-Applied"):
                if name in headers:
                    out[name] = headers[name].replace(
                        f"/v2/{source.reference.path}/", f"/v2/{request.match_info['name']}/")
            if kind == "tags":
                body = _rename_listing(body, request.match_info["name"])
            return web.Response(status=200, body=body, headers=out)
        return _failure_response(attempts, "NAME_UNKNOWN")

    # ------------------------------------------------------------ blobs

    async def handle_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        try:
            validate_digest(digest)
            hashlib.new(digest.split(":", 1)[0])
        except (InvalidReference, ValueError) as error:
            return oci_error(400, "DIGEST_INVALID", f"{digest}: {error}")
        steps, refusal = self._chain(request, "blob", digest)
        if refusal is not None:
            return refusal
        # A source that served wrong bytes for this blob is not asked again.
        steps = [s for s in steps
                 if (s.source.reference.name, digest) not in self.bad_blobs] or steps
        steps, cooling = self.cooldown.order(steps)
        blob = _BlobTransfer(self, request, digest)
        try:
            for index, step in enumerate(steps):
                if self._skip(request, "blob", step, blob.attempts, cooling):
                    continue
                if await blob.try_source(step, fallback=index > 0):
                    break
            return await blob.finish()
        finally:
            blob.release()


def referenced_digests(body: bytes) -> list[str]:
    """The digests a manifest points at: config and layers, or an index's manifests."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    found = []
    for key in ("manifests", "layers"):
        for item in data.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("digest"), str):
                found.append(item["digest"])
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        found.append(config["digest"])
    for layer in data.get("fsLayers") or []:  # schema 1
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            found.append(layer["blobSum"])
    return found


def _rename_listing(body: bytes, name: str) -> bytes:
    """A tags list names the repository as the client asked for it, not the mirror's path."""
    try:
        data = json.loads(body)
        data["name"] = name
        return json.dumps(data).encode()
    except (ValueError, TypeError):
        return body


def _request_kind(path: str) -> str:
    for kind in ("manifests", "blobs", "tags", "referrers"):
        if f"/{kind}/" in path:
            return kind.rstrip("s")
    return "other"


class _BlobTransfer:
    """One client blob request: tries sources, resumes mid-stream, verifies the digest."""

    def __init__(self, proxy: Proxy, request: web.Request, digest: str) -> None:
        self.proxy, self.request, self.digest = proxy, request, digest
        self.hasher = hashlib.new(digest.split(":", 1)[0])
        self.attempts: list[Attempt] = []
        self.received = 0
        self.total: int | None = None
        self.response: web.StreamResponse | None = None
        self.writer: _HeldBackWriter | None = None
        self.small: bytearray | None = None
        self.reserved = 0
        self.served_by: PullSource | None = None
        self.range_error = False

    def _fail(self, step: Step, kind: str, detail: str, started: float, fallback: bool) -> bool:
        self.proxy._record(self.request, "blob", step, self.attempts, kind, detail, started,
                           fallback)
        return False

    async def try_source(self, step: Step, *, fallback: bool) -> bool:
        """Fetch (the rest of) the blob from `step`'s source; True once it is complete."""
        proxy, source = self.proxy, step.source
        assert proxy.upstreams is not None
        started = time.monotonic()
        path = f"/v2/{source.reference.path}/blobs/{self.digest}"
        method = "HEAD" if self.request.method == "HEAD" else "GET"
        headers: CIMultiDict[str] = CIMultiDict()
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
        try:
            upstream = await proxy.upstreams.request(source, method, path, headers)
        except (UpstreamError, ConfigError) as error:
            kind = error.kind if isinstance(error, UpstreamError) else "certs"
            return self._fail(step, kind, str(error), started, fallback)
        except Exception as error:
            return self._fail(step, "connect", f"{type(error).__name__}: {error}", started,
                              fallback)
        async with upstream:
            if upstream.status not in (200, 206):
                body = await upstream.content.read(64 * 1024)
                _code, message = status_message(upstream.status, body)
                kind = {404: "not_found", 401: "denied", 403: "denied",
                        429: "toomanyrequests"}.get(upstream.status, "status")
                return self._fail(step, kind, f"fetching blob {self.digest} from "
                                  f"{source.reference.name}: {message}", started, fallback)
            proxy.metrics.latency.labels("blob", source.host).observe(time.monotonic() - started)
            skip = 0
            if self.received:
                content_range = upstream.headers.get("Content-Range", "")
                if upstream.status == 206 and not content_range.startswith(
                        f"bytes {self.received}-"):
                    return self._fail(step, "status", f"resume answered {content_range!r}",
                                      started, fallback)
                if upstream.status == 200:
                    skip = self.received
            elif self.total is None:
                length = upstream.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    return self._fail(step, "status", "no Content-Length", started, fallback)
                self.total = int(length)
            if method == "HEAD":
                self.served_by = source
                return await self._served(step, started, fallback)
            try:
                if self.response is None and self.small is None:
                    await self._begin(source, fallback)
                    if self.range_error:  # the size is known: 416 without the body
                        self.served_by = source
                        return await self._served(step, started, fallback)
                too_long = False
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    start, end = self.received, self.received + len(chunk)
                    if self.total is not None and end > self.total:
                        too_long = True
                        break
                    self.hasher.update(chunk)
                    self.received = end
                    proxy.metrics.bytes.labels(source.host).inc(len(chunk))
                    if self.small is not None:
                        self.small[start:end] = chunk
                    elif self.writer is not None:
                        await self.writer.feed(chunk)
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as error:
                # A reset and a close before Content-Length look the same from here.
                kind = "timeout" if isinstance(error, TimeoutError) else "interrupted"
                return self._fail(step, kind,
                                  f"reading blob after {self.received} bytes: "
                                  f"{type(error).__name__}: {error}", started, fallback)
        if too_long:
            return self._fail(step, "status", f"blob is longer than its {self.total} bytes",
                              started, fallback)
        if self.received != self.total:
            return self._fail(step, "truncated", f"blob ended after {self.received} of "
                              f"{self.total} bytes", started, fallback)
        actual = f"{self.hasher.name}:{self.hasher.hexdigest()}"
        if actual != self.digest:
            proxy.bad_blobs.add((source.reference.name, self.digest))
            if self.small is not None:  # nothing sent yet: start over from the next source
                self.received = 0
                self.hasher = hashlib.new(self.digest.split(":", 1)[0])
            return self._fail(step, "digest", f"blob content is {actual}, not "
                              f"{self.digest}", started, fallback)
        self.served_by = source
        return await self._served(step, started, fallback)

    async def _served(self, step: Step, started: float, fallback: bool) -> bool:
        self.proxy._record(self.request, "blob", step, self.attempts, "served", self.digest,
                           started, fallback)
        if len(self.attempts) > 1:
            self.proxy.metrics.fallbacks.labels("blob").inc()
        return True

    def _headers(self, source: PullSource, fallback: bool) -> dict[str, str]:
        headers = {**API_VERSION, "Docker-Content-Digest": self.digest,
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   SOURCE_HEADER: str(source.reference)}
        if fallback:
            headers[FALLBACK_HEADER] = "blob"
        return headers

    async def _begin(self, source: PullSource, fallback: bool) -> None:
        """Small blobs are buffered (verified before any byte is sent); large ones stream."""
        assert self.total is not None
        try:
            window = _parse_range(self.request.headers.get("Range"), self.total)
        except ValueError:
            self.range_error = True
            window = None
        if self.range_error:
            return
        fits = self.proxy.buffered + self.total <= self.proxy.options.buffer_budget
        if self.total <= SMALL_BLOB and fits:
            self.small = bytearray(self.total)
            self.reserved = self.total
            self.proxy.buffered += self.total
            return
        headers = self._headers(source, fallback)
        start, end = window if window else (0, self.total - 1)
        status = 206 if window else 200
        if window:
            headers["Content-Range"] = f"bytes {start}-{end}/{self.total}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start + 1
        await response.prepare(self.request)
        self.response, self.writer = response, _HeldBackWriter(response, start, end)

    def release(self) -> None:
        """Give back this request's share of the buffering budget."""
        self.proxy.buffered -= self.reserved
        self.reserved = 0

    async def finish(self) -> web.StreamResponse:
        source = self.served_by
        if self.response is not None and self.writer is not None:
            if source is not None:
                await self.writer.finish()
                return self.response
            # Bytes already went out and no source completed them: cut the connection so
            # the client can never take a partial or wrong blob for a whole one.
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            return self.response
        if source is None:
            return _failure_response(self.attempts, "BLOB_UNKNOWN")
        assert self.total is not None
        headers = self._headers(source, len(self.attempts) > 1)
        if self.range_error:
            return oci_error(416, "SIZE_INVALID", "requested range not satisfiable",
                             headers={"Content-Range": f"bytes */{self.total}"})
        if self.request.method == "HEAD":
            headers["Content-Length"] = str(self.total)
            return web.Response(status=200, headers=headers)
        data = memoryview(self.small if self.small is not None else bytearray())
        window = _parse_range(self.request.headers.get("Range"), self.total)
        if window:
            start, end = window
            headers["Content-Range"] = f"bytes {start}-{end}/{self.total}"
            data = data[start : end + 1]
        # Written piece by piece, waiting for the client: the buffer stays this request's
        # (and counted in the budget) until the last byte is out, never copied elsewhere.
        response = web.StreamResponse(status=206 if window else 200, headers=headers)
        response.content_length = len(data)
        await response.prepare(self.request)
        for offset in range(0, len(data), CHUNK):
            await response.write(data[offset : offset + CHUNK])
        await response.write_eof()
        return response


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mirrorlab")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


async def serve(options: ServeOptions, host: str, port: int,
                ssl_context: object | None = None) -> None:
    """Run until cancelled (SIGINT/SIGTERM)."""
    proxy = Proxy(options)
    # lingering_time: how long a body nobody asked for (this API takes none) is read and
    # dropped after the answer, before the connection closes (aiohttp's default: 10 s).
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False,
                           keepalive_timeout=options.idle_timeout, lingering_time=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)  # type: ignore[arg-type]
    await site.start()
    log.info(json.dumps({"event": "listening", "address": f"{host}:{port}",
                         "files": list(proxy.config.registries.files)}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
