"""Scopes: the CRD grammar for sources and mirrors, and the operator's nesting relation.

The API's pattern has an optional empty separator that makes Python's `re` backtrack
exponentially on bad input; the grammar here (`SEP = [._]|__|-+`) accepts the same strings
and runs in linear time.
"""

from __future__ import annotations

import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
MIRROR_PATTERN = re.compile(rf"{_HOST}(?::[0-9]+)?(?:/{_COMPONENT})*", re.ASCII)
WILDCARD_PATTERN = re.compile(rf"\*(?:\.{_LABEL})+", re.ASCII)


def valid_mirror(text: str) -> bool:
    """`host[:port][/path]` without tags, digests, trailing `/` or uppercase paths."""
    return MIRROR_PATTERN.fullmatch(text) is not None


def valid_source(text: str) -> bool:
    """A mirror-like scope, or a `*.domain` wildcard (no port, no path)."""
    return WILDCARD_PATTERN.fullmatch(text) is not None or valid_mirror(text)


def valid_registries_conf_scope(scope: str) -> bool:
    """The operator's looser check for insecure/blocked/allowed entries."""
    if not scope:
        return False
    if "*" not in scope:
        return True
    return scope.startswith("*.") and not any(c in scope[2:] for c in "/@:*")


def nested(sub: str, sup: str) -> bool:
    """`ScopeIsNestedInsideScope`: is every image under `sub` also under `sup`?"""
    if sub == sup:
        return True
    if len(sub) > len(sup) and sub.startswith(sup) and sub[len(sup)] == "/":
        return True
    if not sup.startswith("*."):
        return False
    suffix = sup[1:]
    if ":" in sub:
        host = sub.split(":", 1)[0]
        return host.endswith(suffix) and "/" not in host
    return sub.split("/", 1)[0].endswith(suffix)
