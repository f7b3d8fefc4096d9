"""`mirrorlab check`: walk one image's pull plan against the real registries, as a node would.

Policy first (`evaluate_policy`): a rejected image contacts nothing. Then the top-level
manifest through the plan's sources in order (`resolve_sources`), every failure moving to
the next source, as containers/image's `newImageSource` does; then what it references
(every per-platform manifest of an index, or the one `--platform` names; each config and
layer) at the source that served it, where the fallback mode's rules
(`Fallback.candidates`, `goes_on`, `blob_fallback_trigger`, applied by `AttemptLoop`)
decide what a missing one does. The proxy's own loop does the walking: nothing here
re-decides where to go next.

A blob is checked with HEAD; when HEAD does not answer 200 a GET follows, because a node
sends GET and blob mode's rule depends on the error body (`BLOB_UNKNOWN`) that a HEAD
cannot carry. `verify` downloads each blob and checks its digest and size instead.
A source the run assumes down (`--disconnected`, `--assume-down`) fails as a refused
connection would, without being contacted. One source's answer for one blob is asked once
per run, however many images share the blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import IO, Any

from .attempts import AttemptLoop, PullWalk
from .cooldown import CoolDown
from .errors import ConfigError, MirrorlabError
from .explain import NodeConfig
from .failures import describe, source_failure
from .fallback import NODE_MODES, Fallback, FallbackMode
from .metrics import Metrics
from .outcomes import (
    Attempt,
    Outcome,
    SourceFailure,
    outcome_of_status,
)
from .plan import PullPlan, PullSource, resolve_sources
from .policy import SIGNATURE_REQUIREMENTS, PolicyDecision, evaluate_policy
from .reference import ImageReference
from .registries_d import SignatureStorage
from .signature_fetch import fetch_signatures
from .signatures import Verdict as SignatureVerdict
from .signatures import evaluate_requirements
from .steps import Step
from .upstream import Manifest, Upstreams, status_message

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
_IDS = itertools.count(1)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{text!r} is not OS/ARCH or OS/ARCH/VARIANT (e.g. linux/amd64)")
        return cls(*parts)

    @classmethod
    def of(cls, value: Any) -> Platform | None:
        if not isinstance(value, dict):
            return None
        os_, arch = value.get("os"), value.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            return None
        variant = value.get("variant")
        return cls(os_, arch, variant if isinstance(variant, str) else "")

    def matches(self, other: Platform) -> bool:
        """`self` is asked for: a variant asked for must be the same, else any variant."""
        return (self.os, self.architecture) == (other.os, other.architecture) and (
            not self.variant or self.variant == other.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    what: str
    """`config`, `layer`, or `platform manifest`."""
    digest: str
    size: int | None
    media_type: str = ""
    platform: Platform | None = None


def _descriptor(item: Any, what: str) -> Descriptor | None:
    if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
        return None
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        size = None
    media_type = item.get("mediaType")
    return Descriptor(what, item["digest"], size,
                      media_type if isinstance(media_type, str) else "",
                      Platform.of(item.get("platform")))


def read_manifest(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"the manifest is not JSON: {describe(error)}") from None
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    return data


def index_entries(data: dict[str, Any]) -> list[Descriptor] | None:
    """An index's per-platform manifests (attestations, `unknown/unknown`, left out), or
    None when `data` is not an index."""
    items = data.get("manifests")
    if not isinstance(items, list):
        return None
    found = []
    for item in items:
        descriptor = _descriptor(item, "platform manifest")
        if descriptor is None:
            continue
        if descriptor.platform is not None and descriptor.platform.os == "unknown":
            continue
        found.append(descriptor)
    return found


def image_blobs(data: dict[str, Any]) -> list[Descriptor]:
    """Config then layers (schema 2, OCI); schema 1 `fsLayers` (no sizes), once each."""
    found = []
    config = _descriptor(data.get("config"), "config")
    if config is not None:
        found.append(config)
    for item in data.get("layers") or []:
        layer = _descriptor(item, "layer")
        if layer is not None:
            found.append(layer)
    for item in data.get("fsLayers") or []:
        if isinstance(item, dict) and isinstance(item.get("blobSum"), str):
            found.append(Descriptor("layer", item["blobSum"], None))
    unique: dict[str, Descriptor] = {}
    for descriptor in found:
        unique.setdefault(descriptor.digest, descriptor)
    return list(unique.values())


@dataclass
class Fetch:
    """One thing fetched for a pull: every source tried for it, and the one that served."""

    what: str
    """`manifest`, `platform manifest`, `config` or `layer`."""
    kind: str
    """The fallback rules' kind: `manifest` or `blob`."""
    referenced: bool
    digest: str | None = None
    platform: Platform | None = None
    attempts: list[Attempt] = field(default_factory=list)
    steps: dict[str, Step] = field(default_factory=dict)
    """`Attempt.source` -> the step it was (for the host, blocked_by, mirror)."""
    served_by: Step | None = None
    home: Step | None = None
    """For a referenced fetch: the source of the manifest that referenced it."""

    @property
    def ok(self) -> bool:
        return self.served_by is not None

    @property
    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.failed]

    def failing_node_modes(self) -> tuple[FallbackMode, ...]:
        """The node modes that would not have served this fetch (empty when it failed)."""
        if not self.ok or not self.referenced:
            return ()
        return tuple(mode for mode in NODE_MODES if not Fallback(mode).serves(
            self.attempts, kind=self.kind, referenced=True))


@dataclass
class PlatformCheck:
    """One platform of an image (or the image itself, when it is no index)."""

    platform: Platform | None
    digest: str
    manifest: Fetch | None = None
    """The per-platform manifest fetch; None when the top-level manifest is the image."""
    blobs: list[Fetch] = field(default_factory=list)
    descriptors: list[Descriptor] = field(default_factory=list)
    error: str | None = None
    """A manifest that was served but cannot be read."""

    @property
    def served_by(self) -> Step | None:
        return self.manifest.served_by if self.manifest is not None else None


@dataclass
class ImageWalk:
    """Everything checked for one image."""

    reference: ImageReference
    policy: PolicyDecision | None = None
    rejected: bool = False
    signatures: tuple[str, ...] = ()
    """Requirement types that need a signature verified."""
    signature_verdict: SignatureVerdict | None = None
    """Their verdict over the signatures of the source that served the manifest."""
    signature_count: int = 0
    signature_storage: SignatureStorage | None = None
    signature_error: str | None = None
    """Reading the signatures failed (a node fails the pull)."""
    plan: PullPlan | None = None
    plan_error: str | None = None
    top: Fetch | None = None
    digest: str | None = None
    """The digest of the top-level manifest that was served."""
    index: bool = False
    platforms: list[PlatformCheck] = field(default_factory=list)
    available: list[Platform] = field(default_factory=list)
    """An index's platforms."""
    wanted: Platform | None = None
    error: str | None = None
    """The served top-level manifest cannot be read."""

    def fetches(self) -> list[Fetch]:
        found = [self.top] if self.top is not None else []
        for platform in self.platforms:
            if platform.manifest is not None:
                found.append(platform.manifest)
            found.extend(platform.blobs)
        return found


class Walker:
    """Walks images' pull plans for one run: one upstream client, one rule set."""

    def __init__(self, config: NodeConfig, upstreams: Upstreams, fallback: Fallback, *,
                 disconnected: bool = False, assume_down: Collection[str] = (),
                 platform: Platform | None = None, verify: bool = False,
                 blob_jobs: int = 16) -> None:
        self.config = config
        self.upstreams = upstreams
        self.fallback = fallback
        self.disconnected = disconnected
        self.assume_down = frozenset(assume_down)
        self.platform = platform
        self.verify = verify
        self.metrics = Metrics()
        self.cooldown = CoolDown(seconds=0)  # every image is judged on its own
        self.mirror_hosts = frozenset(
            mirror.location.split("/", 1)[0]
            for registry in config.registries.registries for mirror in registry.mirrors)
        self._blob_jobs = asyncio.Semaphore(blob_jobs)  # blob requests at once, whole run
        self._probes: dict[tuple[str, str], asyncio.Future[SourceFailure | None]] = {}

    # ------------------------------------------------------------ sources assumed down

    def down_because(self, source: PullSource) -> str | None:
        """Why the run treats this source as unreachable, or None."""
        bare = source.host.rsplit(":", 1)[0]
        if source.host in self.assume_down or bare in self.assume_down:
            return "--assume-down"
        if self.disconnected and source.host not in self.mirror_hosts:
            return "--disconnected"
        return None

    def _reachable(self, source: PullSource) -> None:
        why = self.down_because(source)
        if why is not None:
            raise SourceFailure(Outcome.CONNECT, f"{source.host}: not contacted, assumed "
                                f"unreachable ({why})")

    # ------------------------------------------------------------ one request's walk

    def _loop(self, kind: str, referenced: bool) -> AttemptLoop[Any]:
        return AttemptLoop(kind, referenced, self.fallback, self.cooldown, self.metrics,
                           next(_IDS), self.config.registries.blocked_origin)

    async def _manifest(self, fetch: Fetch, candidates: list[Step]) -> Manifest | None:
        async def attempt(step: Step) -> Manifest:
            self._reachable(step.source)
            return await self.upstreams.manifest(step.source, list(MANIFEST_TYPES))

        loop: AttemptLoop[Manifest] = self._loop("manifest", fetch.referenced)
        fetch.steps.update((str(s.source.reference), s) for s in candidates)
        manifest = await loop.run(candidates, attempt)
        fetch.attempts, fetch.served_by = loop.attempts, loop.served_by
        return manifest if loop.served_by is not None else None

    async def _probe(self, source: PullSource, digest: str, size: int | None) -> None:
        """One source's answer for one blob, asked once per run."""
        key = (str(source.reference.name), digest)
        future = self._probes.get(key)
        if future is None:
            future = self._probes[key] = asyncio.get_running_loop().create_future()
            try:
                await fetch_blob(self.upstreams, source, digest, size, verify=self.verify)
            except SourceFailure as error:
                future.set_result(error)
            except BaseException:
                future.cancel()  # a bug or a cancelled run: nobody waits on it for an answer
                del self._probes[key]
                raise
            else:
                future.set_result(None)
        failure = await asyncio.shield(future)
        if failure is not None:
            raise SourceFailure(failure.outcome, str(failure), status=failure.status,
                                code=failure.code, final=failure.final)

    async def blob(self, plan: list[Step], home: Step, descriptor: Descriptor,
                   walk: PullWalk | None, sink: IO[bytes] | None = None) -> Fetch:
        """Check one blob that a manifest served by `home` references; with `sink`,
        download it there (emptied before each source is tried), digest checked."""
        digest = descriptor.digest
        steps = [step.for_identity(digest) for step in plan]
        fetch = Fetch(descriptor.what, "blob", True, digest, descriptor.platform,
                      home=home.for_identity(digest))
        candidates = self.fallback.candidates(steps, fetch.home, "blob")
        fetch.steps.update((str(s.source.reference), s) for s in candidates)

        async def attempt(step: Step) -> None:
            self._reachable(step.source)
            if sink is None:
                await self._probe(step.source, digest, descriptor.size)
            else:
                sink.seek(0)
                sink.truncate()
                await fetch_blob(self.upstreams, step.source, digest, descriptor.size,
                                 verify=True, out=sink)

        loop: AttemptLoop[None] = self._loop("blob", True)
        async with self._blob_jobs:
            await loop.run(candidates, attempt, walk)
        fetch.attempts, fetch.served_by = loop.attempts, loop.served_by
        return fetch

    # ------------------------------------------------------------ one image

    def policy(self, walk: ImageWalk) -> None:
        decision = evaluate_policy(self.config.policy, walk.reference)
        walk.policy = decision
        walk.rejected = not decision.allowed and not decision.needs_signatures
        if decision.needs_signatures:
            walk.signatures = tuple(dict.fromkeys(
                r.type for r in decision.requirements if r.type in SIGNATURE_REQUIREMENTS))

    async def walk(self, ref: ImageReference) -> ImageWalk:
        walk = ImageWalk(ref, wanted=self.platform)
        self.policy(walk)
        if walk.rejected:
            return walk
        try:
            walk.plan = resolve_sources(self.config.registries, ref)
        except ConfigError as error:
            walk.plan_error = str(error)
            return walk
        plan = [Step(ref, source) for source in walk.plan.sources]
        walk.top = Fetch("manifest", "manifest", False, ref.digest)
        manifest = await self._manifest(walk.top, plan)
        home = walk.top.served_by
        if manifest is None or home is None:
            return walk
        walk.digest = manifest.digest
        if walk.signatures:
            await self._signatures(walk, home, manifest)
        try:
            data = read_manifest(manifest.body)
        except ValueError as error:
            walk.error = str(error)
            return walk
        blob_walk = (PullWalk([s.source_name for s in self.fallback.candidates(
            plan, home, "blob")[1:]]) if self.fallback.mode is FallbackMode.BLOB else None)
        entries = index_entries(data)
        if entries is None:
            check = PlatformCheck(None, manifest.digest, descriptors=image_blobs(data))
            walk.platforms.append(check)
            await self._blobs(check, plan, home, blob_walk)
            return walk
        walk.index = True
        walk.available = [e.platform for e in entries if e.platform is not None]
        if self.platform is not None:
            wanted = self.platform
            entries = [e for e in entries if e.platform is not None
                       and wanted.matches(e.platform)][:1]
        await asyncio.gather(*(self._platform(walk, entry, plan, home, blob_walk)
                               for entry in entries))
        return walk

    async def _signatures(self, walk: ImageWalk, home: Step, manifest: Manifest) -> None:
        """The policy's signature requirements, as `serve` checks them: against the
        signatures of the source that served the top-level manifest, read where
        registries.d says for that source's name."""
        assert walk.policy is not None
        try:
            storage = self.config.signature_storage(home.source)
            walk.signature_storage = storage
            found = await fetch_signatures(self.upstreams, home.source, storage,
                                           manifest.digest)
        except MirrorlabError as error:
            walk.signature_error = str(error)
            return
        walk.signature_count = len(found)
        walk.signature_verdict = evaluate_requirements(
            walk.policy.requirements, walk.reference, manifest.body, found)

    async def _platform(self, walk: ImageWalk, entry: Descriptor, plan: list[Step],
                        home: Step, blob_walk: PullWalk | None) -> None:
        check = PlatformCheck(entry.platform, entry.digest)
        walk.platforms.append(check)
        steps = [step.for_identity(entry.digest) for step in plan]
        fetch = Fetch("platform manifest", "manifest", True, entry.digest, entry.platform,
                      home=home.for_identity(entry.digest))
        check.manifest = fetch
        manifest = await self._manifest(
            fetch, self.fallback.candidates(steps, fetch.home, "manifest"))
        served = fetch.served_by
        if manifest is None or served is None:
            return
        try:
            data = read_manifest(manifest.body)
        except ValueError as error:
            check.error = str(error)
            return
        check.descriptors = image_blobs(data)
        await self._blobs(check, plan, served, blob_walk)

    async def _blobs(self, check: PlatformCheck, plan: list[Step], home: Step,
                     blob_walk: PullWalk | None) -> None:
        descriptors = [d if d.platform else Descriptor(d.what, d.digest, d.size, d.media_type,
                                                       check.platform)
                       for d in check.descriptors]
        check.blobs = list(await asyncio.gather(
            *(self.blob(plan, home, d, blob_walk) for d in descriptors)))


async def fetch_blob(upstreams: Upstreams, source: PullSource, digest: str, size: int | None,
                     *, verify: bool, out: IO[bytes] | None = None) -> None:
    """Whether `source` serves the blob: HEAD, then GET when HEAD does not say 200 (the
    error body decides blob mode's fallback). `verify`: GET it whole, checking size and
    digest (and write it to `out`). Raises `SourceFailure`."""
    path = f"/v2/{source.reference.path}/blobs/{digest}"
    what = f"reading blob {digest}"
    try:
        if not verify:
            head = await upstreams.request(source, "HEAD", path)
            async with head:
                if head.status == 200:
                    _check_length(head.headers.get("Content-Length"), size, what)
                    return
        response = await upstreams.request(source, "GET", path)
        async with response:
            if response.status != 200:
                body = await response.content.read(64 * 1024)
                code, message = status_message(response.status, body)
                raise SourceFailure(outcome_of_status(response.status), f"{what}: {message}",
                                    status=response.status, code=code)
            if not verify:
                _check_length(response.headers.get("Content-Length"), size, what)
                return
            algorithm = digest.split(":", 1)[0]
            hasher = hashlib.new(algorithm)
            received = 0
            async for chunk in response.content.iter_chunked(1024 * 1024):
                hasher.update(chunk)
                received += len(chunk)
                if out is not None:
                    out.write(chunk)
                if size is not None and received > size:
                    raise SourceFailure(Outcome.BAD_RESPONSE, f"{what}: more than the "
                                        f"{size} bytes its descriptor gives")
    except (SourceFailure, ConfigError):
        raise
    except Exception as error:
        raise source_failure(error, what) from None
    if size is not None and received != size:
        raise SourceFailure(Outcome.TRUNCATED, f"{what}: {received} bytes, its descriptor "
                            f"gives {size}")
    found = f"{algorithm}:{hasher.hexdigest()}"
    if found != digest:
        raise SourceFailure(Outcome.DIGEST, f"{what}: its content has digest {found}")


def _check_length(header: str | None, size: int | None, what: str) -> None:
    if size is not None and header is not None and header.isdigit() and int(header) != size:
        raise SourceFailure(Outcome.BAD_RESPONSE, f"{what}: the source has {header} bytes, "
                            f"its descriptor gives {size}")

