"""`mirrorlab serve`: the application, its routes, its state, and reloading.

A blob GET, traced by module: routes here (`handle_blob`) -> `steps.Planner.plan`
(routing, policy, plan) and `steps.PullMemory` (which manifest referenced the digest)
-> `fallback.Fallback.candidates` (which sources the mode allows) -> `attempts.AttemptLoop`
(try, record, go on or stop) -> `blobs.BlobTransfer.attempt` (one source's bytes) ->
`upstream.Upstreams.request` (TLS, auth, redirects) -> `responses` (the error a client
sees when nothing served).

With `--cache DIR`, after the plan (policy is checked first, hit or not): `cache.CacheStore`
(is the digest there?) -> a hit: `cache_serve.serve_blob_hit` (sendfile, no source
contacted); a miss: `flight.Flight` (one per digest and chain: the first request starts it,
the others join) -> `attempts.AttemptLoop` with a `flight.CacheFill` (the bytes into a
temporary file) -> `cache_serve.read_flight` (each client from that file, the last piece
held back until the digest matched) -> `CacheStore.commit_file` (fsync, rename). When the
cache cannot take the blob, the request goes the uncached way above.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlencode

from aiohttp import web

from .attempts import AttemptLoop, PullWalk, PullWalks
from .blobs import (
    FALLBACK_HEADER,
    RESCUED_HEADER,
    SMALL_BLOB,
    SOURCE_HEADER,
    BlobBudget,
    BlobTransfer,
    ClientGone,
    SuspectBlobs,
)
from .cache import CacheStore, CacheUnavailable, CorruptEntry, TagRecord, age
from .cache_serve import (
    CACHE_HEADER,
    STALE_HEADER,
    CacheMetrics,
    read_flight,
    serve_blob_hit,
    stale_allowed,
)
from .cooldown import CoolDown
from .errors import MirrorlabError
from .explain import NodeConfig, explain
from .failures import redacted
from .fallback import Fallback, FallbackMode
from .flight import CacheFill, Flight, FlightKey, FlightState
from .metrics import Metrics
from .outcomes import Attempt, Outcome, SourceFailure, outcome_of_status
from .paths import NodeFiles
from .policy import evaluate_policy
from .reference import TAG_PATTERN, InvalidReference, validate_digest
from .resolve_table import ResolveTable
from .responses import API_VERSION, failure_response, oci_error, refusal_response
from .signature_fetch import fetch_signatures
from .signatures import evaluate_requirements
from .steps import Planner, PullMemory, Refusal, RequestName, Step, referenced_descriptors
from .upstream import Manifest, Timeouts, Upstreams, read_limited, status_message

log = logging.getLogger("mirrorlab.proxy")

BUFFER_BUDGET = 16 * 1024 * 1024
_REQUEST_IDS = itertools.count(1)
REQUEST_ID = web.RequestKey("id", int)
T = TypeVar("T")


@dataclass(frozen=True)
class ServeOptions:
    files: NodeFiles
    resolve: ResolveTable = field(default_factory=ResolveTable)
    default_registry: str = "docker.io"
    timeouts: Timeouts = field(default_factory=Timeouts)
    fallback: FallbackMode = FallbackMode.STICKY
    cooldown_seconds: float = 30.0
    """Resilient mode only; 0 turns it off."""
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
    any_registry: bool = True
    """False: contact only registries the configuration or `resolve` names (the default
    when listening beyond loopback)."""
    cache_dir: str | None = None
    """The verified cache (`--cache DIR`); None: off."""
    cache_max_bytes: int | None = None
    """Its size bound; None: only the disk's."""
    serve_stale: bool = False
    """With the cache: a tag whose every source is down gets its last verified answer."""


@dataclass
class Chain:
    """What one request may try: its candidates in order, the plan of its pull, and, for
    a digest a served manifest referenced, that manifest's source and what it said."""

    candidates: list[Step]
    plan: list[Step]
    home: Step | None = None
    walk: PullWalk | None = None
    size: int | None = None


def _request_name(request: web.Request) -> RequestName:
    return RequestName(request.match_info["name"], request.query.get("ns"))


def _request_kind(path: str) -> str:
    for kind in ("manifests", "blobs", "tags", "referrers"):
        if f"/{kind}/" in path:
            return kind.rstrip("s")
    return "other"


def _rename_listing(body: bytes, name: str) -> bytes:
    """A tags list names the repository as the client asked for it, not the mirror's path."""
    try:
        data = json.loads(body)
        data["name"] = name
        return json.dumps(data).encode()
    except (ValueError, TypeError, RecursionError):
        return body


class Proxy:
    """The server's state: configuration, upstream client, pull memory, metrics."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.fallback = Fallback(options.fallback)
        self.config = NodeConfig.load(options.files)
        self.planner = self._planner(self.config)
        self.metrics = Metrics()
        self.cooldown = CoolDown(seconds=options.cooldown_seconds)
        self.memory = PullMemory(options.sticky_seconds)
        self.walks = PullWalks()
        self.suspects = SuspectBlobs()
        self.budget = BlobBudget(options.buffer_budget)
        self.upstreams: Upstreams | None = None
        self._stamp = self._files_stamp()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cache: CacheStore | None = None
        self.cache_metrics: CacheMetrics | None = None
        if options.cache_dir is not None:
            self.cache = CacheStore(options.cache_dir, options.cache_max_bytes)
            self.cache_metrics = CacheMetrics(self.metrics.registry, self.cache)
        self.flights: dict[FlightKey, Flight] = {}
        self._manifest_flights: dict[tuple[object, ...], asyncio.Future[
            tuple[Manifest | None, Step | None, list[Attempt]]]] = {}
        self._storing: set[str] = set()

    def _planner(self, config: NodeConfig) -> Planner:
        options = self.options
        return Planner(config, options.default_registry, options.short_names,
                       options.resolve, options.any_registry)

    # ------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024, middlewares=[self._observe])
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
                 *self.config.registries.drop_in_dirs, files.registries_d_dir(),
                 *self.config.registries_d.files,
                 *(path for path, _ in files.auth_file_paths())]
        stamp = []
        for path in paths:
            try:
                stamp.append((path, os.stat(path).st_mtime))
            except OSError:
                stamp.append((path, -1.0))
        return tuple(stamp)

    async def _watch_files(self) -> None:
        """Reload on change; nothing a file holds may stop the watching."""
        while True:
            await asyncio.sleep(self.options.reload_interval)
            try:
                if self._files_stamp() != self._stamp:
                    self.reload()
            except Exception as error:  # a bug in a loader: logged, old configuration kept
                self._stamp = self._files_stamp()
                log.error(json.dumps({"event": "reload", "ok": False,
                                      "error": f"{type(error).__name__}: {error}"[:500]}))

    def reload(self) -> None:
        """Re-read every file; a bad new configuration is logged and the old one kept."""
        try:
            config = NodeConfig.load(self.options.files)
        except Exception as error:  # MirrorlabError, or a loader's bug: keep the old one
            kind = "" if isinstance(error, ValueError) and str(error) else \
                f"{type(error).__name__}: "
            log.error(json.dumps({"event": "reload", "ok": False,
                                  "error": f"{kind}{error}"[:500]}))
            self._stamp = self._files_stamp()
            return
        self.config = config
        self.planner = self._planner(config)
        if self.upstreams is not None:
            self.upstreams.configure(certs=config.certs, auth_files=config.auth_files)
        self.memory.clear()
        self.walks.clear()
        self.suspects.clear()
        self.cooldown.clear()
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
        except Exception as error:  # a bug: a 500 and one log line, never a failover
            log.error(json.dumps({"event": "bug", "request": request[REQUEST_ID],
                                  "kind": kind, "error": f"{type(error).__name__}: {error}"}))
            self.metrics.requests.labels(kind, "500").inc()
            return oci_error(500, "UNKNOWN", f"mirrorlab bug: {type(error).__name__}")
        self.metrics.requests.labels(kind, str(response.status)).inc()
        return response

    # ------------------------------------------------------------ small endpoints

    async def handle_base(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers=API_VERSION)

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "files": list(self.config.registries.files),
                                  "fallback": str(self.fallback.mode),
                                  "buffered_bytes": self.budget.used,
                                  "cache": self._cache_state()})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(),
                            content_type="text/plain", charset="utf-8")

    async def handle_explain(self, request: web.Request) -> web.Response:
        ref = request.query.get("ref", "")
        result = explain(self.config, ref, self.fallback.mode)
        data = result.to_json()
        data["cache"] = self._cache_state(result.reference)
        return web.json_response(data)

    def _cache_state(self, reference: object = None) -> dict[str, object]:
        """The cache's state for /healthz and /mirrorlab/explain (for a reference: whether
        its manifest is cached, or its tag's last verified answer)."""
        cache = self.cache
        if cache is None:
            return {"enabled": False}
        state: dict[str, object] = {
            "enabled": True, **cache.summary(), "serve_stale": self.options.serve_stale,
            "in_flight": len(self.flights),
            "note": "a cache hit contacts no source: prove a configuration without --cache"}
        digest = getattr(reference, "digest", None)
        if isinstance(digest, str):
            state["manifest"] = "cached" if cache.lookup("manifest", digest) else "absent"
        elif reference is not None:
            record = cache.tags.get(str(reference))
            state["tag"] = None if record is None else {
                **record.to_json(), "since": age(record.at),
                "manifest": "cached" if cache.lookup("manifest", record.digest) else "absent"}
        return state

    async def handle_unsupported(self, request: web.Request) -> web.Response:
        return oci_error(405, "UNSUPPORTED", f"{request.method} {request.path}: mirrorlab is a "
                         "pull-only proxy")

    # ------------------------------------------------------------ the chain

    def _loop(self, request: web.Request, kind: str, referenced: bool) -> AttemptLoop[T]:
        return AttemptLoop(kind, referenced, self.fallback, self.cooldown, self.metrics,
                           request[REQUEST_ID], self.config.registries.blocked_origin)

    def _steps(self, request: web.Request, kind: str, identity: str) -> Chain | Refusal:
        """Policy and plan first (nothing is contacted on a refusal); then, for a digest a
        served manifest referenced, the sources the mode allows from that pull's plan."""
        name = _request_name(request)
        planned = self.planner.plan(name, identity)
        if isinstance(planned, Refusal):
            if planned.denied is not None:
                logical, scope, reason = planned.denied
                log.info(json.dumps({"event": "denied", "request": request[REQUEST_ID],
                                     "kind": kind, "logical": logical, "scope": scope,
                                     "reason": reason}))
            return planned
        remembered = self.memory.lookup(name, identity) if ":" in identity else None
        if remembered is None:
            if kind == "blob" and self.fallback.resumes_across_sources:
                return Chain(self.suspects.order(planned, identity), planned)
            return Chain(planned, planned)
        plan = [step.for_identity(identity) for step in remembered.plan]
        home = remembered.step.for_identity(identity)
        candidates = self.fallback.candidates(plan, home, kind)
        chain = Chain(candidates, plan, home, size=remembered.size)
        if kind != "blob":
            return chain
        if self.fallback.mode is FallbackMode.BLOB:
            chain.walk = self.walks.get(remembered.pull, [s.source_name for s in candidates[1:]])
        elif self.fallback.resumes_across_sources:
            chain.candidates = self.suspects.order(candidates, identity)
        return chain

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
        found = self._steps(request, "manifest", identity)
        if isinstance(found, Refusal):
            return refusal_response(found)
        home = found.home
        cache = self.cache
        by_digest = ":" in identity
        # A top-level manifest whose policy verifies signatures is read from a source: its
        # signatures are that source's (a hit or a stale answer would skip them).
        signed = home is None and self._needs_signatures(found)
        if cache is not None and by_digest and not signed:
            hit = self._manifest_hit(request, identity, found)
            if hit is not None:
                return hit
        accept = request.headers.getall("Accept", [])
        manifest, step, attempts = await self._fetch_manifest(
            request, identity, found, accept, shared=cache is not None and by_digest)
        if manifest is None or step is None:
            if cache is not None and not by_digest and self.options.serve_stale \
                    and not signed:
                stale = self._stale(request, found, attempts)
                if stale is not None:
                    return stale
            return failure_response(attempts, self.fallback.message(
                attempts, referenced=home is not None), "MANIFEST_UNKNOWN")
        if home is None:  # a top-level manifest: signatures as the policy requires them
            refusal = await self._verify_signatures(request, step, manifest)
            if refusal is not None:
                return refusal
        self.memory.remember(_request_name(request), step, found.plan, manifest.digest,
                             referenced_descriptors(manifest.body))
        headers = {**API_VERSION, "Docker-Content-Digest": manifest.digest,
                   SOURCE_HEADER: str(step.source.reference)}
        served = attempts[-1]
        if served.fallback:
            headers[FALLBACK_HEADER] = "manifest"
        if served.rescued:
            headers[RESCUED_HEADER] = ",".join(served.rescued)
        if manifest.media_type:
            headers["Content-Type"] = manifest.media_type
        if cache is not None:
            headers[CACHE_HEADER] = "miss"
            assert self.cache_metrics is not None
            self.cache_metrics.requests.labels("manifest", "miss").inc()
            self._spawn(self._store_manifest(manifest, None if by_digest else str(step.logical),
                                             str(step.source.reference)))
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(manifest.body))
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=manifest.body, headers=headers)

    async def _fetch_manifest(self, request: web.Request, identity: str, found: Chain,
                              accept: list[str], *, shared: bool
                              ) -> tuple[Manifest | None, Step | None, list[Attempt]]:
        """The manifest from the chain's sources. `shared` (the cache is on, a digest is
        asked): concurrent requests with the same chain and Accept share one fetch."""
        upstreams = self.upstreams
        assert upstreams is not None
        key = (identity, tuple(s.source_name for s in found.candidates),
               found.home.source_name if found.home else "", tuple(accept))
        if shared:
            pending = self._manifest_flights.get(key)
            if pending is not None:
                assert self.cache_metrics is not None
                self.cache_metrics.joined.labels("manifest").inc()
                return await asyncio.shield(pending)
        future: asyncio.Future[tuple[Manifest | None, Step | None, list[Attempt]]] | None = None
        if shared:
            future = asyncio.get_running_loop().create_future()
            self._manifest_flights[key] = future
        loop: AttemptLoop[Manifest] = self._loop(request, "manifest", found.home is not None)
        result: tuple[Manifest | None, Step | None, list[Attempt]] = (None, None, loop.attempts)
        try:
            manifest = await loop.run(found.candidates,
                                      lambda step: upstreams.manifest(step.source, accept))
            result = (manifest, loop.served_by, loop.attempts)
            return result
        finally:
            if future is not None:
                del self._manifest_flights[key]
                future.set_result(result)  # a failure (or a bug here): the others fail too

    def _needs_signatures(self, found: Chain) -> bool:
        logicals = {str(step.logical): step.logical for step in found.plan}
        return any(evaluate_policy(self.config.policy, logical).needs_signatures
                   for logical in logicals.values())

    def _log_cache(self, request: web.Request, kind: str, logical: str, digest: str,
                   state: str, detail: str, started: float, **more: object) -> None:
        """A request the cache answered, as an attempt line whose source is the cache: no
        source was contacted, so nothing of the mirror chain is shown by it."""
        log.info(json.dumps({
            "event": "attempt", "request": request[REQUEST_ID], "kind": kind,
            "logical": logical, "source": "cache", "outcome": f"cache_{state}",
            "detail": detail, "ms": round((time.monotonic() - started) * 1000, 2),
            "fallback": False, "mode": str(self.fallback.mode), "cache": state,
            "digest": digest, **more}))

    def _manifest_hit(self, request: web.Request, digest: str,
                      found: Chain) -> web.Response | None:
        cache, metrics = self.cache, self.cache_metrics
        assert cache is not None and metrics is not None
        started = time.monotonic()
        try:
            got = cache.read_manifest(digest)
        except CorruptEntry as error:
            metrics.corrupt.labels("manifest").inc()
            log.warning(json.dumps({"event": "cache_corrupt", "request": request[REQUEST_ID],
                                    "kind": "manifest", "digest": digest, "error": str(error)}))
            return None
        if got is None:
            return None
        media_type, body = got
        if found.home is not None:  # a per-platform manifest: its blobs go where a node's
            self.memory.remember(_request_name(request), found.home, found.plan, digest,
                                 referenced_descriptors(body))
        metrics.requests.labels("manifest", "hit").inc()
        self._log_cache(request, "manifest", str(found.plan[0].logical), digest, "hit",
                        "served from the verified cache (hashed on read); no source "
                        "contacted", started)
        headers = {**API_VERSION, "Docker-Content-Digest": digest, CACHE_HEADER: "hit"}
        if media_type:
            headers["Content-Type"] = media_type
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=body, headers=headers)

    def _stale(self, request: web.Request, found: Chain,
               attempts: list[Attempt]) -> web.Response | None:
        """--serve-stale: every source down, the last verified answer for the tag."""
        cache, metrics = self.cache, self.cache_metrics
        assert cache is not None and metrics is not None
        if not stale_allowed(attempts):
            return None
        started = time.monotonic()
        for reference in dict.fromkeys(str(step.logical) for step in found.plan):
            try:
                got = cache.stale(reference)
            except CorruptEntry:
                metrics.corrupt.labels("manifest").inc()
                continue
            if got is None:
                continue
            record, media_type, body = got
            since = age(record.at)
            metrics.requests.labels("manifest", "stale").inc()
            self._log_cache(request, "manifest", reference, record.digest, "stale",
                            f"every source failed; served the last verified answer for "
                            f"{reference} ({since}, from {record.source})", started,
                            since=since, answered_by=record.source)
            headers = {**API_VERSION, "Docker-Content-Digest": record.digest,
                       CACHE_HEADER: "stale", STALE_HEADER: since}
            if media_type:
                headers["Content-Type"] = media_type
            if request.method == "HEAD":
                headers["Content-Length"] = str(len(body))
                return web.Response(status=200, headers=headers)
            return web.Response(status=200, body=body, headers=headers)
        return None

    async def _store_manifest(self, manifest: Manifest, reference: str | None,
                              source: str) -> None:
        """Keep a served manifest under its digest, and a tag's answer (for --serve-stale);
        in the background, after the response."""
        cache, metrics = self.cache, self.cache_metrics
        assert cache is not None and metrics is not None
        digest = manifest.digest
        try:
            if cache.lookup("manifest", digest) is None and digest not in self._storing:
                self._storing.add(digest)
                size = len(cache.manifest_bytes(manifest.media_type, manifest.body))
                try:
                    cache.reserve(size)
                    try:
                        entry = await asyncio.to_thread(cache.write_manifest, digest,
                                                        manifest.media_type, manifest.body)
                    finally:
                        cache.unreserve(size)
                    cache.add(entry)
                    metrics.fills.labels("manifest", "stored").inc()
                finally:
                    self._storing.discard(digest)
            if reference is not None:
                record = TagRecord(reference, digest, manifest.media_type, source, time.time())
                if cache.tag_changed(record):
                    cache.tags[reference] = record
                    await asyncio.to_thread(cache.write_tag, record)
        except (OSError, CacheUnavailable) as error:
            metrics.fills.labels("manifest", "uncached").inc()
            reason = error.reason if isinstance(error, CacheUnavailable) else \
                f"{error.strerror or error}"
            log.warning(json.dumps({"event": "cache_fill", "kind": "manifest",
                                    "digest": digest, "result": "uncached",
                                    "reason": reason}))

    async def _verify_signatures(self, request: web.Request, step: Step,
                                 manifest: Manifest) -> web.Response | None:
        """The policy's signature requirements against the signatures of the source that
        served the manifest (`signature/policy_eval.go: IsRunningImageAllowed`); a refusal,
        or None. No other source is asked: a mirror without the signature fails the pull."""
        decision = evaluate_policy(self.config.policy, step.logical)
        if not decision.needs_signatures:
            return None
        upstreams = self.upstreams
        assert upstreams is not None
        event: dict[str, object] = {"event": "signatures", "request": request[REQUEST_ID],
                                    "logical": str(step.logical),
                                    "source": str(step.source.reference),
                                    "scope": decision.scope}
        try:
            storage = self.config.signature_storage(step.source)
            signatures = await fetch_signatures(upstreams, step.source, storage,
                                                manifest.digest)
        except MirrorlabError as error:  # reading failed: the pull fails, as upstream
            log.info(json.dumps({**event, "ok": False, "error": str(error)}))
            # A 4xx, so that the client shows the reason (containers/image reads the body
            # of a 4xx only), in the words a node's policy check gives.
            return oci_error(403, "DENIED", f"Source image rejected: {error}",
                             detail={"scope": decision.scope,
                                     "source": str(step.source.reference)})
        verdict = evaluate_requirements(decision.requirements, step.logical, manifest.body,
                                        signatures)
        log.info(json.dumps({**event, "ok": verdict.allowed, "signatures": len(signatures),
                             "lookaside": redacted(storage.lookaside),
                             "attachments": storage.use_sigstore_attachments,
                             "reason": verdict.reason}))
        if verdict.allowed:
            return None
        return oci_error(403, "DENIED", f"Source image rejected: {verdict.reason}",
                         detail={"scope": decision.scope, "source": str(step.source.reference),
                                 "signatures": len(signatures)})

    # ------------------------------------------------------------ tags and referrers

    async def handle_tags(self, request: web.Request) -> web.Response:
        query = {k: v for k, v in request.query.items() if k in ("n", "last")}
        suffix = f"?{urlencode(query)}" if query else ""
        return await self._listing(request, "tags", "latest",
                                   lambda s: f"/v2/{s.source.reference.path}/tags/list{suffix}")

    async def handle_referrers(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        artifact = request.query.get("artifactType")
        suffix = f"?{urlencode({'artifactType': artifact})}" if artifact else ""
        return await self._listing(
            request, "referrers", digest,
            lambda s: f"/v2/{s.source.reference.path}/referrers/{digest}{suffix}")

    async def _listing(self, request: web.Request, kind: str, identity: str,
                       path_of: Callable[[Step], str]) -> web.Response:
        """Tags and referrers: the first source that answers 200, body passed through."""
        planned = self.planner.plan(_request_name(request), identity)
        if isinstance(planned, Refusal):
            return refusal_response(planned)
        upstreams = self.upstreams
        assert upstreams is not None

        async def fetch(step: Step) -> tuple[bytes, dict[str, str]]:
            async with await upstreams.request(step.source, "GET", path_of(step)) as up:
                body = await read_limited(up, SMALL_BLOB)
                if up.status != 200:
                    code, message = status_message(up.status, body)
                    raise SourceFailure(outcome_of_status(up.status), message,
                                        status=up.status, code=code)
                if len(body) > SMALL_BLOB:
                    raise SourceFailure(Outcome.TOO_LARGE, f"the {kind} list is larger "
                                        "than 4 MiB")
                return body, dict(up.headers)

        loop: AttemptLoop[tuple[bytes, dict[str, str]]] = self._loop(request, kind, False)
        result = await loop.run(planned, fetch)
        step = loop.served_by
        if result is None or step is None:
            return failure_response(loop.attempts, self.fallback.message(
                loop.attempts, referenced=False), "NAME_UNKNOWN")
        body, headers = result
        out = {**API_VERSION, SOURCE_HEADER: str(step.source.reference),
               "Content-Type": headers.get("Content-Type", "application/json")}
        for name in ("Link", "OCI-Filters-Applied"):
            if name in headers:
                out[name] = headers[name].replace(f"/v2/{step.source.reference.path}/",
                                                  f"/v2/{request.match_info['name']}/")
        if kind == "tags":
            body = _rename_listing(body, request.match_info["name"])
        return web.Response(status=200, body=body, headers=out)

    # ------------------------------------------------------------ blobs

    async def handle_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        try:
            validate_digest(digest)
            hashlib.new(digest.split(":", 1)[0])
        except (InvalidReference, ValueError) as error:
            return oci_error(400, "DIGEST_INVALID", f"{digest}: {error}")
        found = self._steps(request, "blob", digest)
        if isinstance(found, Refusal):
            return refusal_response(found)
        if self.cache is not None:
            response = await self._cached_blob(request, digest, found)
            if response is not None:
                return response
        return await self._blob_from_sources(request, digest, found)

    def _client_gone(self, request: web.Request, digest: str, at: int) -> None:
        self.metrics.client_aborts.labels("blob").inc()
        log.info(json.dumps({"event": "client_gone", "request": request[REQUEST_ID],
                             "digest": digest, "at": at}))

    async def _blob_from_sources(self, request: web.Request, digest: str,
                                 found: Chain) -> web.StreamResponse:
        """The uncached way: this request's own transfer from its chain's sources."""
        home = found.home
        upstreams = self.upstreams
        assert upstreams is not None
        blob = BlobTransfer(request, digest, upstreams=upstreams, budget=self.budget,
                            metrics=self.metrics, fallback=self.fallback,
                            suspects=self.suspects, size=found.size,
                            home=home.source_name if home else None)
        if self.cache is not None:
            blob.extra_headers[CACHE_HEADER] = "miss"
        loop: AttemptLoop[None] = self._loop(request, "blob", home is not None)
        started = time.monotonic()
        try:
            await loop.run(found.candidates, blob.attempt, found.walk)
            served = loop.attempts[-1] if loop.served_by is not None else None
            response = await blob.finish(served.rescued if served else ())
        except ClientGone:  # the transfer ends here; no source is blamed
            self._client_gone(request, digest, blob.received)
            if request.transport is not None:
                request.transport.abort()
            return blob.response or web.Response(status=499)
        finally:
            blob.release()
        if len(blob.segments) > 1:
            log.info(json.dumps({"event": "served", "request": request[REQUEST_ID],
                                 "digest": digest, "sources": blob.contributors(),
                                 "ms": round((time.monotonic() - started) * 1000, 2)}))
        if response is None:
            return failure_response(loop.attempts, self.fallback.message(
                loop.attempts, referenced=home is not None), "BLOB_UNKNOWN")
        return response

    # ------------------------------------------------------------ blobs, with the cache

    async def _cached_blob(self, request: web.Request, digest: str,
                           found: Chain) -> web.StreamResponse | None:
        """A hit from its file; a miss through the flight for this digest and chain (one
        upstream fetch for concurrent requests). None: serve it the uncached way."""
        cache, metrics = self.cache, self.cache_metrics
        assert cache is not None and metrics is not None
        logical = str(found.plan[0].logical) if found.plan else ""
        entry = cache.lookup("blob", digest)
        if entry is not None:
            started = time.monotonic()
            headers = {**API_VERSION, "Docker-Content-Digest": digest,
                       "Content-Type": "application/octet-stream", CACHE_HEADER: "hit"}
            gone = False

            def on_gone() -> None:
                nonlocal gone
                gone = True
                self._client_gone(request, digest, -1)

            response = await serve_blob_hit(request, cache, entry, headers, found.size,
                                            metrics, on_gone)
            if response is not None:
                metrics.requests.labels("blob", "hit").inc()
                if gone:  # a hit all the same, but not served: the line says so
                    self._log_cache(request, "blob", logical, digest, "hit",
                                    "found in the verified cache; the client went away "
                                    "before it was all sent", started)
                else:
                    self._log_cache(request, "blob", logical, digest, "hit",
                                    "served from the verified cache; no source contacted",
                                    started, bytes=entry.size)
                return response
            log.warning(json.dumps({"event": "cache_dropped", "request": request[REQUEST_ID],
                                    "digest": digest, "detail": "the entry was gone or did "
                                    "not match its digest or size: removed, asked of the "
                                    "sources"}))
        metrics.requests.labels("blob", "miss").inc()
        if request.method == "HEAD":
            return None  # a HEAD of a miss is asked of the sources; nothing to cache
        key: FlightKey = (digest, tuple(s.source_name for s in found.candidates),
                          found.home.source_name if found.home else "")
        flight = self.flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = self._start_flight(request, key, digest, found)
            if flight is None:
                return None
        else:
            metrics.joined.labels("blob").inc()
        flight.readers += 1
        log.info(json.dumps({"event": "cache", "request": request[REQUEST_ID], "kind": "blob",
                             "logical": logical, "digest": digest, "cache": "miss",
                             "flight": flight.request_id, "joined": joined}))
        result = await read_flight(request, flight, cache, self._flight_headers,
                                   lambda: self._client_gone(request, digest, -1))
        if isinstance(result, web.StreamResponse):
            return result
        if result is FlightState.UNCACHED:
            return None
        if flight.reason.startswith("mirrorlab bug"):
            return oci_error(500, "UNKNOWN", flight.reason)
        return failure_response(flight.attempts, self.fallback.message(
            flight.attempts, referenced=flight.referenced), "BLOB_UNKNOWN")

    def _flight_headers(self, flight: Flight) -> dict[str, str]:
        step = flight.step
        assert step is not None
        headers = {**API_VERSION, "Docker-Content-Digest": flight.digest,
                   "Content-Type": "application/octet-stream",
                   SOURCE_HEADER: str(step.source.reference), CACHE_HEADER: "miss"}
        home = flight.key[2]
        if home and step.source_name != home:
            headers[FALLBACK_HEADER] = "blob"
        if flight.rescued:
            headers[RESCUED_HEADER] = ",".join(flight.rescued)
        return headers

    def _uncached(self, request_id: int, digest: str, reason: str) -> None:
        assert self.cache_metrics is not None
        self.cache_metrics.fills.labels("blob", "uncached").inc()
        log.warning(json.dumps({"event": "cache_fill", "request": request_id, "kind": "blob",
                                "digest": digest, "result": "uncached", "reason": reason}))

    def _start_flight(self, request: web.Request, key: FlightKey, digest: str,
                      found: Chain) -> Flight | None:
        cache, upstreams = self.cache, self.upstreams
        assert cache is not None and upstreams is not None
        flight = Flight(key, digest, request[REQUEST_ID], referenced=found.home is not None)
        fill = CacheFill(flight, cache, upstreams=upstreams, metrics=self.metrics,
                         fallback=self.fallback, suspects=self.suspects, size=found.size,
                         home=found.home.source_name if found.home else None)
        if found.size is not None:  # room first, before any source is asked
            try:
                fill.allocate(found.size)
            except CacheUnavailable as error:
                self._uncached(request[REQUEST_ID], digest, error.reason)
                return None
        elif cache.disk_full():
            self._uncached(request[REQUEST_ID], digest, "the cache's disk was full moments "
                           "ago")
            return None
        self.flights[key] = flight
        self._spawn(self._fly(request, flight, fill, found))
        return flight

    async def _fly(self, request: web.Request, flight: Flight, fill: CacheFill,
                   found: Chain) -> None:
        """The flight's one walk over the chain, into the temporary file; then into the
        cache (fsync, rename), before it leaves the table."""
        cache, metrics = self.cache, self.cache_metrics
        assert cache is not None and metrics is not None
        loop: AttemptLoop[None] = self._loop(request, "blob", flight.referenced)
        started = time.monotonic()
        result = "failed"
        try:
            try:
                await loop.run(found.candidates, fill.attempt, found.walk)
            except CacheUnavailable as error:
                flight.state, flight.reason, result = \
                    FlightState.UNCACHED, error.reason, "uncached"
            except Exception as error:  # a bug: its readers answer 500, as the uncached way
                flight.state = FlightState.FAILED
                flight.reason = f"mirrorlab bug: {type(error).__name__}"
                log.error(json.dumps({"event": "bug", "request": flight.request_id,
                                      "kind": "blob", "error": f"{type(error).__name__}: "
                                      f"{error}"}))
            flight.attempts = loop.attempts
            if flight.state is FlightState.RUNNING:
                if loop.served_by is not None:
                    flight.rescued = loop.attempts[-1].rescued
                    flight.state = FlightState.VERIFIED
                else:
                    flight.state = FlightState.FAILED
            flight.notify()
            if flight.state is FlightState.VERIFIED:
                result = await self._commit(flight, fill)
                while flight.waiting and flight.path is None:  # uncommitted: let them open it
                    await flight.changed()
        finally:
            if flight.state is FlightState.RUNNING:  # cancelled: the proxy stops
                flight.state, flight.attempts = FlightState.FAILED, loop.attempts
            fill.release()
            if self.flights.get(flight.key) is flight:
                del self.flights[flight.key]
            flight.notify()
            metrics.fills.labels("blob", result).inc()
            event: dict[str, object] = {
                "event": "cache_fill", "request": flight.request_id, "kind": "blob",
                "digest": flight.digest, "result": result, "bytes": flight.total,
                "readers": flight.readers,
                "ms": round((time.monotonic() - started) * 1000, 2)}
            if flight.reason:
                event["reason"] = flight.reason
            if len(fill.segments) > 1:
                event["sources"] = fill.contributors()
            log.info(json.dumps(event))

    async def _commit(self, flight: Flight, fill: CacheFill) -> str:
        cache = self.cache
        assert cache is not None
        assert flight.fd is not None and flight.temp is not None and flight.total is not None
        if flight.passthrough:
            flight.reason = flight.passthrough
            return "uncached"
        try:
            entry = await asyncio.to_thread(cache.commit_file, flight.fd, flight.temp, "blob",
                                            flight.digest, flight.total)
        except OSError as error:  # served from the temporary file all the same
            flight.reason = f"committing: {error.strerror or error}"
            return "uncached"
        flight.temp = None  # renamed: nothing left to remove
        flight.path = cache.path("blob", flight.digest)
        fill.release()  # readers that come now open the entry itself
        cache.add(entry)
        entry.readers += flight.active
        flight.entry = entry
        return "stored"


def _bad_request_filter(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed request with a traceback that echoes its bytes (a client's
    own Authorization header among them): one JSON line without them instead."""
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        return True
    status = getattr(error, "code", None) or getattr(error, "status", None) or 400
    log.warning(json.dumps({"event": "bad_request", "status": status,
                            "error": type(error).__name__}))
    return False


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mirrorlab")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    server_log = logging.getLogger("aiohttp.server")
    if _bad_request_filter not in server_log.filters:
        server_log.addFilter(_bad_request_filter)


async def serve(options: ServeOptions, host: str, port: int,
                ssl_context: object | None = None) -> None:
    """Run until cancelled (SIGINT/SIGTERM)."""
    proxy = Proxy(options)
    # lingering_time: how long a body nobody asked for (this API takes none) is read and
    # dropped after the answer, before the connection closes (aiohttp's default: 10 s).
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False,
                           keepalive_timeout=options.idle_timeout, lingering_time=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)  # type: ignore[arg-type]
        await site.start()
        log.info(json.dumps({"event": "listening", "address": f"{host}:{port}",
                             "fallback": str(options.fallback),
                             "any_registry": options.any_registry,
                             "files": list(proxy.config.registries.files)}))
        if proxy.cache is not None:
            log.info(json.dumps({"event": "cache", **proxy._cache_state(),
                                 "removed_temporary": len(proxy.cache.cleaned)}))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


__all__ = ["Outcome", "Proxy", "ServeOptions", "configure_logging", "serve"]
