"""From a client request to the steps it may try: routing, policy, plan, and pull memory.

Nothing here touches the network. `plan_request` answers either the steps (every source
of the plan of every candidate logical reference, policy already checked) or a
`Refusal`. `PullMemory` is how the proxy recognises a pull among separate HTTP requests:
a served manifest's descriptors name the digests the client will ask for next, and the
source that served it is where a node would fetch them.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import MirrorlabError
from .explain import NodeConfig
from .matching import RewriteError
from .plan import PullSource, resolve_sources
from .policy import evaluate_policy
from .reference import ImageReference, InvalidReference
from .resolve_table import ResolveTable
from .routing import route
from .shortnames import ShortNameError, resolve_short_name


@dataclass(frozen=True)
class Step:
    """One source of a request's chain, with the logical reference it serves."""

    logical: ImageReference
    source: PullSource

    @property
    def source_name(self) -> str:
        return self.source.reference.name

    def for_identity(self, identity: str) -> Step:
        """The same source asked for another digest (what a manifest references)."""
        source = replace(self.source, reference=self.source.reference.with_digest(identity))
        return Step(self.logical.with_digest(identity), source)


@dataclass(frozen=True)
class Refusal:
    """A request answered without contacting anything."""

    status: int
    code: str
    message: str
    detail: Any = None
    denied: tuple[str, str, str] | None = None
    """(logical reference, policy scope, reason) when policy.json rejected it."""


@dataclass(frozen=True)
class RequestName:
    """The repository a client named: the path's `<name>` and containerd's `?ns=`."""

    name: str
    ns: str | None = None

    @property
    def key(self) -> str:
        return f"{self.ns or ''}|{self.name}"


def _config_hosts(config: NodeConfig, default_registry: str) -> tuple[frozenset[str],
                                                                      tuple[str, ...]]:
    """Hosts the configuration names (exact `host[:port]`) and wildcard suffixes."""
    names: set[str] = {default_registry}
    suffixes: list[str] = []

    def add(location: str) -> None:
        host = location.split("/", 1)[0]
        if host.startswith("*."):
            suffixes.append(host[1:])
        elif host:
            names.add(host)

    registries = config.registries
    for registry in registries.registries:
        add(registry.prefix)
        add(registry.location)
        for mirror in registry.mirrors:
            add(mirror.location)
    for host in registries.unqualified_search_registries or ():
        add(host)
    for target in registries.aliases.values():
        add(target)
    for scope in config.policy.transports.get("docker", {}):
        add(scope)
    return frozenset(names), tuple(suffixes)


@dataclass(frozen=True)
class Planner:
    """Turns requests into steps under one configuration (rebuilt on reload)."""

    config: NodeConfig
    default_registry: str = "docker.io"
    short_names: str = "default"
    resolve: ResolveTable = field(default_factory=ResolveTable)
    any_registry: bool = True
    """False: contact only registries the configuration or `--resolve` names."""
    _plans: dict[tuple[str, str], tuple[Step, ...] | Refusal] = field(
        default_factory=dict, compare=False, repr=False)
    _hosts: tuple[frozenset[str], tuple[str, ...]] = field(
        default=(frozenset(), ()), init=False, compare=False, repr=False)
    """Answers already given: the configuration is fixed for this planner's life (a
    reload makes a new one), and many clients ask for the same digests at once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hosts", _config_hosts(self.config, self.default_registry))

    def _named(self, host: str) -> bool:
        names, suffixes = self._hosts
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return (host in names or host in self.resolve.entries or bare in self.resolve.entries
                or any(bare.endswith(suffix) for suffix in suffixes))

    def candidates(self, request: RequestName, identity: str) -> list[ImageReference]:
        """Logical references the request may mean: one, or several for a short name."""
        found = route(request.name, request.ns, self.default_registry)
        if found.via == "default" and self.short_names == "search":
            return resolve_short_name(self.config.registries, request.name, identity)
        return [found.reference(identity)]

    def plan(self, request: RequestName, identity: str) -> list[Step] | Refusal:
        """Policy, then the plan of every candidate: nothing upstream is touched yet."""
        key = (request.key, identity)
        found = self._plans.get(key)
        if found is None:
            found = self._plan(request, identity)
            # Only answers of valid names are kept (a client may send any name), and at
            # most 10,000 of them.
            if not (isinstance(found, Refusal) and found.code == "NAME_INVALID"):
                if len(self._plans) >= 10_000:
                    self._plans.clear()
                self._plans[key] = found
        return found if isinstance(found, Refusal) else list(found)

    def _plan(self, request: RequestName, identity: str) -> tuple[Step, ...] | Refusal:
        try:
            candidates = self.candidates(request, identity)
        except ShortNameError as error:
            return Refusal(404, "NAME_UNKNOWN", str(error))
        except (InvalidReference, ValueError, MirrorlabError) as error:
            # The handlers validated the tag or digest: what is left is the name.
            return Refusal(400, "NAME_INVALID", str(error))
        steps: list[Step] = []
        refusal: Refusal | None = None
        for logical in candidates:
            decision = evaluate_policy(self.config.policy, logical)
            # A list that verifies signatures is decided once a source served the
            # manifest (its signatures are read from that source); anything else now.
            if not decision.allowed and not decision.needs_signatures:
                refusal = refusal or Refusal(
                    403, "DENIED", f"Source image rejected: {decision.reason}",
                    {"scope": decision.scope, "reference": str(logical)},
                    denied=(str(logical), decision.scope, decision.reason))
                continue
            try:
                plan = resolve_sources(self.config.registries, logical)
            except RewriteError as error:
                refusal = refusal or Refusal(400, "NAME_INVALID", str(error))
                continue
            if not self.any_registry:
                unnamed = [s.host for s in plan.sources if not self._named(s.host)]
                if unnamed:
                    refusal = refusal or Refusal(
                        403, "DENIED", f"registry {unnamed[0]} is named by neither the "
                        "configuration nor --resolve; this proxy listens beyond loopback, so "
                        "it contacts only those (mirrorlab serve --any-registry allows any)")
                    continue
            steps += [Step(logical, source) for source in plan.sources]
        if not steps:
            return refusal or Refusal(404, "NAME_UNKNOWN", "no source to try")
        return tuple(steps)


def referenced_descriptors(body: bytes) -> list[tuple[str, int | None]]:
    """The digests (and sizes) a manifest points at: config and layers, or an index's
    manifests; schema 1 `fsLayers` too (no sizes there)."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    items = [*(data.get("manifests") or []), *(data.get("layers") or [])]
    if isinstance(data.get("config"), dict):
        items.append(data["config"])
    found: list[tuple[str, int | None]] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("digest"), str):
            size = item.get("size")
            found.append((item["digest"], size if isinstance(size, int) and size >= 0
                          and not isinstance(size, bool) else None))
    for layer in data.get("fsLayers") or []:
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            found.append((layer["blobSum"], None))
    return found


@dataclass(frozen=True)
class Remembered:
    """What a served manifest said of one digest it references."""

    step: Step
    """The step that served the manifest: where a node fetches this digest."""
    size: int | None
    """The descriptor's size: the size of the blob, whatever a source announces."""
    pull: str
    """The manifest that referenced it (client repository and digest): one pull."""
    plan: tuple[Step, ...]
    """The sources of that pull, in order (a tag pull's plan, for a tag-pulled image)."""
    at: float


class PullMemory:
    """(client repository, digest) -> what the manifest that referenced it said."""

    def __init__(self, seconds: float = 600.0, limit: int = 100_000) -> None:
        self.seconds, self.limit = seconds, limit
        self._entries: OrderedDict[tuple[str, str], Remembered] = OrderedDict()
        self._pulls = itertools.count(1)

    def remember(self, request: RequestName, step: Step, plan: Iterable[Step],
                 manifest_digest: str, descriptors: Iterable[tuple[str, int | None]]) -> None:
        now = time.monotonic()
        # One pull per top-level manifest served (its time in the key: the next pull of the
        # same image is another one); a per-platform manifest stays in its index's pull.
        pull, steps = f"{request.key}@{manifest_digest}@{next(self._pulls)}", tuple(plan)
        parent = self._entries.get((request.key, manifest_digest))
        if parent is not None:
            pull = parent.pull
        for digest, size in descriptors:
            key = (request.key, digest)
            self._entries[key] = Remembered(step, size, pull, steps, now)
            self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def lookup(self, request: RequestName, digest: str) -> Remembered | None:
        entry = self._entries.get((request.key, digest))
        if entry is None or time.monotonic() - entry.at > self.seconds:
            return None
        return entry

    def clear(self) -> None:
        self._entries.clear()
