"""What the Machine Config Operator does to nodes for a change of CRs (`render --previous`).

The chapter's rules: creating an IDMS or ICSP neither drains nor reboots; creating an ITMS,
or deleting or modifying any of them, drains and reboots. At file level: a registries.conf
change drains, except for adding registries whose mirrors are all `digest-only`, adding
`digest-only` mirrors, or adding search registries; a policy.json change never drains;
registry CAs need no MachineConfig at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registries_conf import Registry, merge, parse_registries_conf
from .crs import IDMS, ITMS, ClusterCRs, MirrorSet
from .render import POLICY_JSON, REGISTRIES_CONF, SEARCH_DROP_IN, RenderedNode

NOTHING = "nothing"
NO_DRAIN = "applied without drain or reboot"
DRAIN = "drain and reboot"
NO_MACHINE_CONFIG = "no MachineConfig: the daemon writes it, no drain or reboot"
_RANK = {NOTHING: 0, NO_MACHINE_CONFIG: 1, NO_DRAIN: 1, DRAIN: 2}


@dataclass(frozen=True)
class NodeAction:
    subject: str
    action: str
    reason: str


def _sets(crs: ClusterCRs) -> dict[tuple[str, str], MirrorSet]:
    return {(s.kind, s.origin.name): s for s in crs.mirror_sets}


def _content(mirror_set: MirrorSet) -> list[tuple[str, tuple[str, ...], str | None]]:
    return [(e.source, e.mirrors, e.policy) for e in mirror_set.entries]


def cr_changes(previous: ClusterCRs, current: ClusterCRs) -> list[NodeAction]:
    before, after = _sets(previous), _sets(current)
    actions = []
    for key in sorted(after.keys() - before.keys()):
        kind, name = key
        action = DRAIN if kind == ITMS else NO_DRAIN
        actions.append(NodeAction(f"{kind}/{name} created", action,
                                  "creating an ITMS drains and reboots" if kind == ITMS else
                                  f"creating an {'IDMS' if kind == IDMS else 'ICSP'} neither "
                                  "drains nor reboots"))
    for key in sorted(before.keys() - after.keys()):
        actions.append(NodeAction(f"{key[0]}/{key[1]} deleted", DRAIN,
                                  "deleting an ITMS, IDMS or ICSP drains and reboots"))
    for key in sorted(before.keys() & after.keys()):
        if _content(before[key]) != _content(after[key]):
            actions.append(NodeAction(f"{key[0]}/{key[1]} modified", DRAIN,
                                      "modifying an ITMS, IDMS or ICSP drains and reboots "
                                      "(unless the file change below is drain-free)"))
    return actions


def _entries(data: bytes) -> tuple[tuple[str, ...], dict[str, Registry]]:
    config = merge([parse_registries_conf(data.decode(), "registries.conf")], "", ())
    return (config.unqualified_search_registries or (),
            {r.prefix: r for r in config.registries})


def _is_extension(old: tuple[str, ...], new: tuple[str, ...]) -> bool:
    """`new` is `old` with items added (order of the old ones kept)."""
    remaining = iter(new)
    return all(any(item == candidate for candidate in remaining) for item in old)


def registries_conf_change(old: bytes, new: bytes) -> NodeAction | None:
    if old == new:
        return None
    old_search, old_entries = _entries(old)
    new_search, new_entries = _entries(new)
    subject = "/" + REGISTRIES_CONF
    if not _is_extension(old_search, new_search):
        return NodeAction(subject, DRAIN, "unqualified-search-registries shrank or reordered")
    for prefix, entry in old_entries.items():
        changed = new_entries.get(prefix)
        if changed is None:
            return NodeAction(subject, DRAIN, f"[[registry]] {prefix} removed")
        flags = ("location", "insecure", "blocked", "mirror_by_digest_only")
        if any(getattr(entry, f) != getattr(changed, f) for f in flags):
            return NodeAction(subject, DRAIN, f"[[registry]] {prefix}: location, insecure or "
                              "blocked changed")
        added = [m for m in changed.mirrors if m not in entry.mirrors]
        if [m for m in changed.mirrors if m not in added] != list(entry.mirrors):
            return NodeAction(subject, DRAIN, f"[[registry]] {prefix}: mirrors removed or "
                              "reordered")
        if any(m.pull_from_mirror != "digest-only" for m in added):
            return NodeAction(subject, DRAIN, f"[[registry]] {prefix}: a mirror that is not "
                              "digest-only was added")
    for prefix in new_entries.keys() - old_entries.keys():
        entry = new_entries[prefix]
        if entry.insecure or entry.blocked or not entry.mirrors or any(
                m.pull_from_mirror != "digest-only" for m in entry.mirrors):
            return NodeAction(subject, DRAIN, f"[[registry]] {prefix} added with flags or "
                              "mirrors that are not all digest-only")
    return NodeAction(subject, NO_DRAIN, "only digest-only mirrors or search registries were "
                      "added (CRI-O is reloaded)")


def rollout(previous_crs: ClusterCRs, previous: RenderedNode, current_crs: ClusterCRs,
            current: RenderedNode) -> tuple[str, list[NodeAction]]:
    """The overall verdict and each change with its reason."""
    actions = cr_changes(previous_crs, current_crs)
    change = registries_conf_change(previous.files[REGISTRIES_CONF],
                                    current.files[REGISTRIES_CONF])
    if change is not None:
        actions.append(change)
    if previous.files[POLICY_JSON] != current.files[POLICY_JSON]:
        actions.append(NodeAction("/" + POLICY_JSON, NO_DRAIN,
                                  "policy.json changes do not drain (CRI-O is reloaded)"))
    reloaded = ("etc/containers/registries.d/", "etc/crio/policies/")
    signature_files = sorted(p for p in {*previous.files, *current.files}
                             if p.startswith(reloaded))
    for path in signature_files:
        if previous.files.get(path) != current.files.get(path):
            actions.append(NodeAction("/" + path, NO_DRAIN, "registries.d and /etc/crio/policies "
                                      "changes do not drain (CRI-O is reloaded; the daemon's "
                                      "constants)"))
    old_search = previous.files.get(SEARCH_DROP_IN)
    new_search = current.files.get(SEARCH_DROP_IN)
    if old_search != new_search:
        old_list = _entries(old_search)[0] if old_search else ()
        new_list = _entries(new_search)[0] if new_search else ()
        added_only = _is_extension(old_list, new_list) and new_search is not None
        actions.append(NodeAction("/" + SEARCH_DROP_IN, NO_DRAIN if added_only else DRAIN,
                                  "search registries added" if added_only else
                                  "search registries removed or reordered"))
    cas = sorted(p for p in {*previous.files, *current.files} if p.startswith("etc/docker/"))
    for path in cas:
        if previous.files.get(path) != current.files.get(path):
            actions.append(NodeAction("/" + path, NO_MACHINE_CONFIG,
                                      "registry CAs travel in ControllerConfig"))
    file_level = [a for a in actions if a.subject.startswith("/")]
    deciding = file_level or actions
    verdict = max((a.action for a in deciding), key=_RANK.__getitem__, default=NOTHING)
    if verdict == NO_MACHINE_CONFIG:
        verdict = NO_DRAIN
    return verdict, actions

