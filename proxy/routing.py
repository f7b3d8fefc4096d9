"""From a request path on the proxy to the logical image reference it stands for.

`podman pull 127.0.0.1:5000/quay.io/ns/app:v1` asks the proxy for `quay.io/ns/app`: the
first path component names the source registry. A registry with a port cannot be a path
component (`:` is not allowed there), so `host_port` stands for `host:port`; no host
name contains `_`, so the encoding is unambiguous. containerd's `?ns=<registry>` names
the registry instead, and a path that names none goes to a default registry (docker.io,
as Docker's `registry-mirrors` sends them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reference import ImageReference, InvalidReference, is_valid_domain, parse_docker_reference

_PORT_ALIAS = re.compile(r"(?P<host>.+)_(?P<port>[0-9]+)")
_UPPER = re.compile(r"[A-Z]")
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Route:
    """The logical repository a request names, and how the proxy read it."""

    registry: str
    repository: str
    via: str
    """`path` (first component), `ns` (query), or `default` (no registry named)."""

    def reference(self, tag_or_digest: str) -> ImageReference:
        """The logical reference of a manifest request (`:tag` or `@digest` appended)."""
        separator = "@" if ":" in tag_or_digest else ":"
        text = f"{self.registry}/{self.repository}{separator}{tag_or_digest}"
        return parse_docker_reference(text)


def path_component_for(registry: str) -> str:
    """How to write `registry` as the first path component (the inverse of `route`)."""
    host, colon, port = registry.partition(":")
    return f"{host}_{port}" if colon else registry


def _as_registry(component: str) -> str | None:
    alias = _PORT_ALIAS.fullmatch(component)
    if alias and ("." in alias["host"] or alias["host"] == "localhost"):
        return f"{alias['host']}:{alias['port']}"
    if "." in component or component == "localhost":
        return component
    return None


def route(name: str, ns: str | None = None, default_registry: str = "docker.io") -> Route:
    """Split the `<name>` of `/v2/<name>/...` into registry and repository.

    Repository names in the distribution API are lowercase, and so, here, is the registry
    they name (path, `host_port` or `?ns=`): containers/image matches registries.conf
    prefixes and policy scopes as text, so `BLOCKED.example.org` would escape an entry for
    `blocked.example.org` while DNS reaches the same host. Refused as a registry does:
    InvalidReference, which the server answers with NAME_INVALID."""
    if _UPPER.search(name):
        raise InvalidReference(f"invalid repository name {name!r}: it must be lowercase")
    if ns:
        registry = "docker.io" if ns in DOCKER_HUB_ALIASES else ns
        if not is_valid_domain(registry):
            raise ValueError(f"ns={ns!r} is not a registry host")
        if _UPPER.search(registry):
            raise InvalidReference(f"ns={ns!r}: a registry must be named in lowercase")
        return Route(registry, name, "ns")
    first, slash, rest = name.partition("/")
    host = _as_registry(first)
    if host is not None and slash:
        return Route(host, rest, "path")
    return Route(default_registry, name, "default")
