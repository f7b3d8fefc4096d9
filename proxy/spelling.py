"""Blocked and policy-restricted scopes that another spelling of the same registry escapes.

containers/image matches registries.conf prefixes and policy.json scopes as text: the
host `quay.io` written `quay.io:443` (its default port), `QUAY.IO` (DNS and TLS ignore
case) or, for Docker Hub, `registry-1.docker.io` is another registry to it, while the
connection goes to the same server. mirrorlab keeps that matching, as a node does, and
says where a blocked or restricted scope can be walked around this way, and what to add.
Pure over a loaded configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .matching import find_registry, prefix_match_length
from .policy import Policy, Requirement, name_scopes, requirements_for
from .registries_conf import RegistriesConf

DEFAULT_PORT = "443"
_HUB = "docker.io"
_HUB_HOST = "registry-1.docker.io"

HOW = {
    "port": "the default port written out",
    "case": "the host in capitals",
    "hub": "Docker Hub's registry host",
}


@dataclass(frozen=True)
class Bypass:
    """`spelling` reaches what `scope` blocks (kind `blocked`), rejects (`rejected`) or
    restricts to signed images (`restricted`), and gets none of it."""

    kind: str
    scope: str
    origin: str
    """Where the scope is written: `file:line` of the [[registry]], or the policy file."""
    spelling: str
    how: str
    """`port`, `case` or `hub` (see HOW)."""
    decided_by: str = ""
    """For `rejected`: the scope that decides the spelling instead (`default`: none)."""
    advice: str = ""

    @property
    def message(self) -> str:
        if self.kind == "blocked":
            what = ("is not blocked: containers/image matches [[registry]] prefixes as text, "
                    f"so '{self.scope}' ({self.origin}) does not cover it, and no entry "
                    "blocks it")
        else:
            by = ("the global default" if self.decided_by == "default"
                  else f"docker scope '{self.decided_by}'")
            what = (f"is not {self.restricted}: containers/image matches policy scopes as "
                    f"text, so docker scope '{self.scope}' ({self.origin}) does not cover it, "
                    f"and {by} accepts it")
        return f"{self.spelling} ({HOW[self.how]}) {what}; {self.advice}"

    @property
    def restricted(self) -> str:
        """`blocked`, `rejected` or, for a signature requirement, `restricted`."""
        return "restricted" if self.kind == "restricted" else self.kind

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "origin": self.origin,
                "spelling": self.spelling, "how": self.how,
                "decided_by": self.decided_by or None, "advice": self.advice,
                "message": self.message}


def _split(scope: str) -> tuple[str, str]:
    """`host[:port]` and the rest (`/path[:tag|@digest]`, or nothing)."""
    slash = scope.find("/")
    return (scope, "") if slash == -1 else (scope[:slash], scope[slash:])


def spellings(scope: str) -> Iterator[tuple[str, str]]:
    """(how, spelling) for every other way to write the registry of `scope`."""
    host, rest = _split(scope)
    bare, _, port = host.partition(":")
    if bare == _HUB:
        # Only docker.io written so is dialled as registry-1.docker.io (connect_host):
        # docker.io:443 and DOCKER.IO are dialled as written, not at Docker Hub's registry.
        if port in ("", DEFAULT_PORT):
            yield "hub", _HUB_HOST + rest
        return
    if ":" not in host and not host.startswith("*.") and host:
        yield "port", f"{host}:{DEFAULT_PORT}{rest}"
    if host.upper() != host:
        yield "case", host.upper() + rest
    if bare == _HUB_HOST and port in ("", DEFAULT_PORT):
        yield "hub", _HUB + rest


def canonical(text: str) -> str:
    """`text` with the spellings above undone: lower-case host, no `:443`, docker.io."""
    host, rest = _split(text)
    host = host.lower().removesuffix(f":{DEFAULT_PORT}")
    return (_HUB if host == _HUB_HOST else host) + rest


def _scopes(text: str) -> list[str]:
    """The policy scopes tried for a scope-shaped `text` (identity split off)."""
    host, rest = _split(text)
    for mark in ("@", ":"):
        at = rest.rfind(mark)
        if at != -1 and "/" not in rest[at:]:
            return name_scopes(host + rest[:at], rest[at:])
    return name_scopes(text)


def _accepts_anything(requirements: tuple[Requirement, ...]) -> bool:
    return all(r.type == "insecureAcceptAnything" for r in requirements)


def _rejects(requirements: tuple[Requirement, ...]) -> bool:
    return any(r.type == "reject" for r in requirements)


def _blocked(registries: RegistriesConf, name: str) -> bool:
    found = find_registry(registries.registries, name)
    return found is not None and found.blocked


def bypasses(registries: RegistriesConf, policy: Policy) -> tuple[Bypass, ...]:
    """Every blocked [[registry]] and every restricted docker scope that a spelling of
    the same registry escapes. A blocked one is escaped when the spelling is neither
    blocked nor rejected by policy; a restricted one when the spelling is accepted with
    no requirement at all."""
    found: list[Bypass] = []
    for registry in registries.registries:
        if not registry.blocked:
            continue
        for how, spelling in spellings(registry.prefix):
            if _blocked(registries, spelling):
                continue
            if _rejects(requirements_for(policy, _scopes(spelling))[1]):
                continue
            mirrors = ", with the same mirrors" if registry.mirrors else ""
            advice = (f'also block {spelling} (a [[registry]] with prefix = "{spelling}" and '
                      f"blocked = true{mirrors})" if how != "case" else _CASE_ADVICE)
            found.append(Bypass("blocked", registry.prefix, registry.origin, spelling, how,
                                advice=advice))
    for scope, requirements in (policy.transports.get("docker") or {}).items():
        if not scope or _accepts_anything(requirements):
            continue
        for how, spelling in spellings(scope):
            decided_by, given = requirements_for(policy, _scopes(spelling))
            if not _accepts_anything(given):
                continue
            kind = "rejected" if _rejects(requirements) else "restricted"
            if how == "case":
                advice = _CASE_ADVICE
            elif kind == "rejected":
                advice = (f'also reject {spelling} (transports.docker["{spelling}"] = '
                          '[{"type": "reject"}])')
            else:
                advice = (f'also give {spelling} the requirements of {scope} '
                          f'(transports.docker["{spelling}"])')
            found.append(Bypass(kind, scope, policy.path or "policy.json", spelling, how,
                                decided_by, advice))
    return tuple(found)


_CASE_ADVICE = ("no list of entries covers every spelling in capitals: make the policy's "
                'default {"type": "reject"} and accept the registries wanted by name')


def relevant(found: tuple[Bypass, ...], reference: str) -> tuple[Bypass, ...]:
    """Those of `found` whose scope governs `reference` in any of its spellings: as a
    [[registry]] prefix matches (a host also covers its other ports), or as a policy
    scope does (exactly, or as a parent or `*.` wildcard)."""
    text = canonical(reference)
    scopes = set(_scopes(text))
    return tuple(b for b in found
                 if (prefix_match_length(text, canonical(b.scope)) != -1 if b.kind == "blocked"
                     else canonical(b.scope) in scopes))
