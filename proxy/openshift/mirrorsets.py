"""Merging mirror lists of several objects for one source, as runtime-utils does.

Each list says "try m[i] before m[i+1]" (and "the source after the last mirror"); all
lists of a source become one graph, ordered by a FIFO topological sort whose ties and
cycles are broken by sorted name. So the result does not depend on object order, and
independent lists interleave by generation rather than being concatenated.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .crs import MirrorEntry


@dataclass(frozen=True)
class MergedMirrors:
    source: str
    mirrors: tuple[str, ...]
    never_contact: bool
    entries: tuple[MirrorEntry, ...]
    """The CR entries that contributed, for the render report."""


def topological_order(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """FIFO Kahn order; when a cycle blocks progress, the smallest unemitted node goes next."""
    everything = sorted(set(nodes))
    predecessors: dict[str, set[str]] = {node: set() for node in everything}
    successors: dict[str, set[str]] = {node: set() for node in everything}
    for before, after in set(edges):
        predecessors[after].add(before)
        successors[before].add(after)
    queue = deque(node for node in everything if not predecessors[node])
    emitted: set[str] = set()
    order: list[str] = []
    cursor = 0
    while queue or cursor < len(everything):
        if queue:
            node = queue.popleft()
        else:
            while cursor < len(everything) and everything[cursor] in emitted:
                cursor += 1
            if cursor == len(everything):
                break
            node = everything[cursor]
        emitted.add(node)
        order.append(node)
        ready = []
        for successor in successors[node]:
            predecessors[successor].discard(node)
            if not predecessors[successor] and successor not in emitted:
                ready.append(successor)
        queue.extend(sorted(ready))
    return order


def merge_mirror_sets(entries: Iterable[MirrorEntry]) -> list[MergedMirrors]:
    """One merged, ordered mirror list per source; sources in byte order."""
    lists: dict[str, list[tuple[str, ...]]] = {}
    never: set[str] = set()
    contributors: dict[str, list[MirrorEntry]] = {}
    for entry in entries:
        if all(mirror == entry.source for mirror in entry.mirrors):
            continue  # no real mirror: the entry (and its policy) is ignored
        lists.setdefault(entry.source, []).append(entry.mirrors)
        contributors.setdefault(entry.source, []).append(entry)
        if entry.never_contact:
            never.add(entry.source)
    merged = []
    for source in sorted(lists, key=str.encode):
        nodes: set[str] = set()
        edges: set[tuple[str, str]] = set()
        for mirrors in lists[source]:
            nodes.update(mirrors)
            edges.update(itertools.pairwise(mirrors))
            if source not in mirrors:
                nodes.add(source)
                edges.add((mirrors[-1], source))
        order = topological_order(nodes, edges)
        if order and order[-1] == source:
            order.pop()
        merged.append(MergedMirrors(source, tuple(order), source in never,
                                    tuple(contributors[source])))
    return merged
