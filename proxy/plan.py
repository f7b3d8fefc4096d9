"""The pull plan: the ordered physical sources containers/image tries for a reference.

Mirrors come first, in file order, filtered by `mirror-by-digest-only` and each
mirror's `pull-from-mirror`; the registry's own location is always last, even when
blocked. `blocked` is decided per source on its *physical* name, and `insecure` comes
from the endpoint itself, never from whatever entry the physical name happens to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .matching import find_registry, rewrite_reference
from .reference import ImageReference
from .registries_conf import Mirror, RegistriesConf, Registry


@dataclass(frozen=True)
class PullSource:
    """One attempt of a pull: where it goes and how the transport treats it."""

    reference: ImageReference
    mirror: bool
    insecure: bool
    blocked: bool
    blocked_by: str | None = None
    """The prefix of the blocked entry that governs the physical name, when blocked."""
    pull_from_mirror: str = ""

    @property
    def host(self) -> str:
        """`host[:port]` as written in the reference: the certs.d and auth.json key."""
        return self.reference.domain

    @property
    def connect_host(self) -> str:
        """The host actually dialled: docker.io is served by registry-1.docker.io."""
        return "registry-1.docker.io" if self.host == "docker.io" else self.host


@dataclass(frozen=True)
class PullPlan:
    """Every source for one logical reference, in the order they are tried."""

    reference: ImageReference
    registry: Registry | None
    """The `[[registry]]` that matched the logical name; None when nothing matched."""
    sources: tuple[PullSource, ...]


class _Endpoint(NamedTuple):
    location: str
    insecure: bool
    pull_from_mirror: str
    mirror: bool


def _mirror_wanted(registry: Registry, mirror: Mirror, digested: bool) -> bool:
    """The pull-from-mirror table: which mirrors a tag or digest pull may use."""
    if registry.mirror_by_digest_only:
        return digested
    if mirror.pull_from_mirror == "tag-only":
        return not digested
    if mirror.pull_from_mirror == "digest-only":
        return digested
    return True


def resolve_sources(config: RegistriesConf, ref: ImageReference) -> PullPlan:
    """`newImageSource`'s source list. Raises `RewriteError` when any rewrite fails."""
    registry = find_registry(config.registries, ref.name)
    if registry is None:
        endpoints = [_Endpoint(str(ref), False, "", False)]
    else:
        endpoints = [
            _Endpoint(mirror.location, mirror.insecure, mirror.pull_from_mirror, True)
            for mirror in registry.mirrors
            if _mirror_wanted(registry, mirror, ref.is_digested)
        ]
        endpoints.append(_Endpoint(registry.location, registry.insecure, "", False))

    sources = []
    for endpoint in endpoints:
        physical = (
            ref if registry is None else rewrite_reference(ref, registry.prefix, endpoint.location)
        )
        governing = find_registry(config.registries, physical.name)
        blocked = governing is not None and governing.blocked
        sources.append(
            PullSource(
                reference=physical,
                mirror=endpoint.mirror,
                insecure=endpoint.insecure,
                blocked=blocked,
                blocked_by=governing.prefix if blocked and governing else None,
                pull_from_mirror=endpoint.pull_from_mirror,
            )
        )
    return PullPlan(reference=ref, registry=registry, sources=tuple(sources))
