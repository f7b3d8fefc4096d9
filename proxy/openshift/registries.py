"""registries.conf as the Machine Config Operator edits it (runtime-utils' EditRegistriesConfig).

The steps run in a fixed order that shapes the file: merged digest mirror sets, then tag
sets (sorted by source), then empty entries for blocked scopes, then insecure flags
(propagated to nested entries and mirrors), then blocked flags (to nested entries), then
mirrors copied into sub-scopes that would otherwise hide their parent's mirrors. Each
entry keeps the reasons it exists, for `render`'s report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from .mirrorsets import MergedMirrors
from .scopes import nested


@dataclass
class Mirror:
    location: str
    pull_from_mirror: str
    insecure: bool = False


@dataclass
class Entry:
    """One `[[registry]]`; `prefix` only for `*.` wildcards, as the operator writes it."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: list[Mirror] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return self.prefix or self.location


@dataclass(frozen=True)
class ScopeSource:
    """An insecure or blocked scope with where it was written."""

    scope: str
    reason: str


class RegistriesEditor:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def get(self, scope: str) -> Entry:
        for entry in self.entries:
            if entry.scope == scope:
                return entry
        wildcard = scope.startswith("*.")
        entry = Entry(prefix=scope if wildcard else "", location="" if wildcard else scope)
        self.entries.append(entry)
        return entry

    def add_mirror_sets(self, sets: Sequence[MergedMirrors], mode: str) -> None:
        for merged in sets:
            entry = self.get(merged.source)
            if merged.never_contact:
                entry.blocked = True
                entry.reasons.append("blocked: mirrorSourcePolicy NeverContactSource in " +
                                     ", ".join(e.origin.at(e.path)
                                               for e in merged.entries if e.never_contact))
            for mirror in merged.mirrors:
                entry.mirrors.append(Mirror(mirror, mode))
            entry.reasons.append(f"{mode} mirrors from " + ", ".join(
                e.origin.at(e.path) for e in merged.entries))

    def mark_insecure(self, scopes: Sequence[ScopeSource]) -> None:
        for item in scopes:
            self.get(item.scope).insecure = True
            for entry in self.entries:
                if nested(entry.scope, item.scope):
                    if not entry.insecure or entry.scope == item.scope:
                        entry.reasons.append(f"insecure: {item.reason}")
                    entry.insecure = True
                for mirror in entry.mirrors:
                    if nested(mirror.location, item.scope):
                        mirror.insecure = True

    def mark_blocked(self, scopes: Sequence[ScopeSource]) -> None:
        for item in scopes:
            self.get(item.scope).blocked = True
            for entry in self.entries:
                if nested(entry.scope, item.scope):
                    entry.reasons.append(f"blocked: {item.reason}")
                    entry.blocked = True

    def copy_mirrors_into_subscopes(self, sets: Sequence[MergedMirrors]) -> None:
        """c/image uses only the longest prefix: a sub-scope entry would hide its parent's
        mirrors, so the operator copies them in, with the sub-path appended."""
        for merged in sets:
            parent = self.get(merged.source)
            for entry in self.entries:
                if entry.scope == parent.scope or not nested(entry.scope, parent.scope):
                    continue
                if entry.mirrors:
                    continue
                if parent.scope.startswith("*."):
                    raise ConfigError("internal error: mirrorsAdjustedForNestedScope for a "
                                      f'wildcard scope "{parent.scope}"')
                suffix = entry.scope[len(parent.scope):]
                entry.mirrors = [Mirror(m.location + suffix, m.pull_from_mirror, m.insecure)
                                 for m in parent.mirrors]
                entry.reasons.append(f"mirrors copied from {parent.scope} (sub-scope)")


def edit_registries(digest_sets: Sequence[MergedMirrors], tag_sets: Sequence[MergedMirrors],
                    insecure: Sequence[ScopeSource], blocked: Sequence[ScopeSource]
                    ) -> list[Entry]:
    """The `[[registry]]` entries, in file order."""
    editor = RegistriesEditor()
    editor.add_mirror_sets(digest_sets, "digest-only")
    editor.add_mirror_sets(tag_sets, "tag-only")
    for item in blocked:
        editor.get(item.scope)
    editor.mark_insecure(insecure)
    editor.mark_blocked(blocked)
    editor.copy_mirrors_into_subscopes([*digest_sets, *tag_sets])
    return editor.entries


# ---------------------------------------------------------------- TOML, byte for byte


def _quote(text: str) -> str:
    """A TOML basic string, escaped as Go's BurntSushi encoder does."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def encode_registries_conf(search: Sequence[str] | None, entries: Sequence[Entry], *,
                           layer_store_key: bool = True) -> bytes:
    """The operator's encoding of `V2RegistriesConf` (keys, order, indentation, blanks)."""
    lines = []
    if search is not None:
        lines.append(f"unqualified-search-registries = [{', '.join(map(_quote, search))}]")
    lines.append('short-name-mode = ""')
    if layer_store_key:
        lines.append('additional-layer-store-auth-helper = ""')
    for entry in entries:
        lines += ["", "[[registry]]", f"  prefix = {_quote(entry.prefix)}"]
        if entry.location:
            lines.append(f"  location = {_quote(entry.location)}")
        if entry.insecure:
            lines.append("  insecure = true")
        if entry.blocked:
            lines.append("  blocked = true")
        for mirror in entry.mirrors:
            lines += ["", "  [[registry.mirror]]", f"    location = {_quote(mirror.location)}"]
            if mirror.insecure:
                lines.append("    insecure = true")
            if mirror.pull_from_mirror:
                lines.append(f"    pull-from-mirror = {_quote(mirror.pull_from_mirror)}")
    return ("\n".join(lines) + "\n").encode()
