"""Which `[[registry]]` governs a name, and how its prefix rewrites to a location.

These are containers/image's `refMatchingPrefix`, `FindRegistry` and `rewriteReference`:
byte-exact, case-sensitive string rules, including the upstream quirks users rely on
(a host prefix also matches that host with any port; `*.` wildcards win length ties).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigError
from .reference import ImageReference, InvalidReference, parse_canonical
from .registries_conf import Registry

_BOUNDARY = (":", "/", "@")


def prefix_match_length(ref: str, prefix: str) -> int:
    """Length of `ref` that `prefix` covers, or -1 when it does not match."""
    if prefix.startswith("*."):
        suffix = prefix[1:]
        index = ref.find(suffix)
        if index == -1 or "/" in ref[:index]:
            return -1
        end = index + len(suffix)
        if end == len(ref) or ref[end] in _BOUNDARY:
            return end
        return -1
    if len(ref) < len(prefix):
        return -1
    if len(ref) == len(prefix):
        return len(prefix) if ref == prefix else -1
    if ref.startswith(prefix) and ref[len(prefix)] in _BOUNDARY:
        return len(prefix)
    return -1


def find_registry(registries: Iterable[Registry], name: str) -> Registry | None:
    """The entry with the longest matching prefix; ties go to the first in sorted order."""
    best: Registry | None = None
    best_length = 0
    for registry in registries:
        if prefix_match_length(name, registry.prefix) != -1 and len(registry.prefix) > best_length:
            best, best_length = registry, len(registry.prefix)
    return best


class RewriteError(ConfigError):
    """A prefix-to-location rewrite gives no valid reference: the whole pull fails."""


def rewrite_reference(ref: ImageReference, prefix: str, location: str) -> ImageReference:
    """Replace the part of `ref` that `prefix` matched with `location`, then re-parse."""
    full = str(ref)
    length = prefix_match_length(full, prefix)
    if length == -1:
        raise RewriteError(f"invalid prefix '{prefix}' for reference '{full}'")
    if location == "":
        if prefix.startswith("*."):
            return ref
        raise RewriteError(f"invalid location: empty location for prefix '{prefix}'")
    candidate = location + full[length:]
    try:
        return parse_canonical(candidate)
    except InvalidReference as error:
        raise RewriteError(f"rewriting reference: {error}: {candidate!r}") from None
