"""From cluster CRs to the files of a node, as the Machine Config Operator renders them.

Order of work, as the controller's: the blocked list is filtered against the release
payload, the mirror CRs and scopes are validated, registries.conf is edited (or left as
the template), then policy.json, then the search-registries drop-in; CA files come from
the `additionalTrustedCA` ConfigMap. Any error stops everything: nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..plan import resolve_sources
from ..reference import InvalidReference, parse_docker_reference
from ..registries_conf import Mirror as ConfMirror
from ..registries_conf import RegistriesConf, Registry
from .cas import ca_files
from .crs import ICSP, IDMS, ITMS, ClusterCRs, ConfigMap, MirrorEntry
from .mirrorsets import merge_mirror_sets
from .policy import TEMPLATE_POLICY, build_policy, check_scopes
from .registries import Entry, ScopeSource, edit_registries, encode_registries_conf
from .scopes import nested, valid_mirror, valid_source

TEMPLATE_SEARCH = ("registry.access.redhat.com", "docker.io")
TEMPLATE_REGISTRIES_CONF = (
    b"unqualified-search-registries = ['registry.access.redhat.com', 'docker.io']\n")
REGISTRIES_CONF = "etc/containers/registries.conf"
SEARCH_DROP_IN = "etc/containers/registries.conf.d/01-image-searchRegistries.conf"
POLICY_JSON = "etc/containers/policy.json"


@dataclass(frozen=True)
class RenderOptions:
    release_image: str | None = None
    """`clusterversion.status.desired.image`: needed to decide if blocking it is allowed."""
    ocp_version: tuple[int, int] = (4, 19)
    """4.19+ encoders write `additional-layer-store-auth-helper = ""`; older ones do not."""
    extra_config_maps: tuple[ConfigMap, ...] = ()


@dataclass
class RenderedNode:
    files: dict[str, bytes] = field(default_factory=dict)
    """Relative path under the node's `/` -> bytes."""
    regenerated: dict[str, bool] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    report: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- validation (MCO level)


def _mirror_entries(crs: ClusterCRs) -> list[tuple[str, MirrorEntry]]:
    """Entries in the order the operator validates them: IDMS, then ICSP, then ITMS."""
    return [(kind, entry) for kind in (IDMS, ICSP, ITMS)
            for mirror_set in crs.of_kind(kind) for entry in mirror_set.entries]


def validate_scopes(insecure: Sequence[str], blocked: Sequence[str], allowed: Sequence[str],
                    entries: Sequence[tuple[str, MirrorEntry]], lists_at: str = "") -> None:
    """`validateRegistriesConfScopes`: the first error wins, in the operator's order.
    `lists_at` (the image config's file and field) prefixes errors in its lists."""
    check_scopes("insecure", insecure, lists_at)
    check_scopes("blocked", blocked, lists_at)
    check_scopes("allowed", allowed, lists_at)
    policies: dict[str, str] = {}
    for _, entry in entries:
        where = entry.origin.at(entry.path)
        if not valid_source(entry.source):
            raise ConfigError(f'{where}: invalid format for source "{entry.source}"')
        policy = entry.policy or "AllowContactingSource"
        if policies.setdefault(entry.source, policy) != policy:
            raise ConfigError(
                f'{where}: conflicting mirrorSourcePolicy is set for the same source '
                f'"{entry.source}" in imagedigestmirrorsets, imagetagmirrorsets, or '
                "imagecontentsourcepolicies")
        for mirror in entry.mirrors:
            if not valid_mirror(mirror):
                raise ConfigError(f'{where}: invalid format for mirror "{mirror}"')
            if entry.never_contact and mirror == entry.source:
                raise ConfigError(f"{where}: cannot set mirrorSourcePolicy: NeverContactSource "
                                  f'if the source "{entry.source}" is one of the mirrors')


# ---------------------------------------------------------------- the release payload


def _as_registries_conf(entries: Sequence[Entry]) -> RegistriesConf:
    registries = [Registry(prefix=e.scope, location=e.location, insecure=e.insecure,
                           blocked=e.blocked,
                           mirrors=tuple(ConfMirror(m.location, m.insecure, m.pull_from_mirror)
                                         for m in e.mirrors))
                  for e in entries]
    return RegistriesConf(registries=tuple(sorted(registries, key=lambda r: r.prefix.encode())))


@dataclass(frozen=True)
class PayloadFilter:
    registries_blocked: list[str]
    policy_blocked: list[str]
    allowed: list[str]
    dropped: list[str]


def filter_blocked_for_payload(crs: ClusterCRs, release: str | None) -> PayloadFilter:
    """A blocked scope holding the release payload stays only if an unblocked mirror of the
    payload exists (digest mirrors only; tag-referenced payloads can use none)."""
    image = crs.image
    blocked = list(image.blocked or ()) if image else []
    insecure = list(image.insecure or ()) if image else []
    allowed_cfg = list(image.allowed or ()) if image else []
    if release is None:
        return PayloadFilter(blocked, list(blocked), allowed_cfg, [])
    try:
        payload = parse_docker_reference(release)
    except InvalidReference as error:
        raise ConfigError(f'--release-image "{release}": {error}') from None
    name = payload.name
    registries_blocked: list[str] = []
    policy_blocked: list[str] = []
    allowed: list[str] = []
    dropped: list[str] = []
    for scope in blocked:
        if not nested(name, scope):
            registries_blocked.append(scope)
            policy_blocked.append(scope)
            continue
        digest_sets = merge_mirror_sets(
            e for kind in (IDMS, ICSP) for s in crs.of_kind(kind) for e in s.entries)
        entries = edit_registries(digest_sets, [], [ScopeSource(s, "") for s in insecure],
                                  [ScopeSource(s, "") for s in blocked])
        sources = resolve_sources(_as_registries_conf(entries), payload).sources
        if any(not any(nested(s.reference.name, b) for b in blocked) for s in sources):
            registries_blocked.append(scope)
            if scope != name:
                policy_blocked.append(scope)
            allowed.append(name)
        else:
            dropped.append(scope)
    return PayloadFilter(registries_blocked, policy_blocked, allowed + allowed_cfg, dropped)


# ---------------------------------------------------------------- render


def _config_map(crs: ClusterCRs, options: RenderOptions, node: RenderedNode) -> ConfigMap | None:
    wanted = crs.image.additional_trusted_ca if crs.image else None
    candidates = [*options.extra_config_maps, *crs.config_maps]
    if wanted is None:
        if options.extra_config_maps:
            node.report.append("CA ConfigMap: image.config names no additionalTrustedCA; "
                               f"using {options.extra_config_maps[0].origin.name} as given")
            return options.extra_config_maps[0]
        return None
    for config_map in candidates:
        if config_map.name == wanted:
            return config_map
    node.report.append(f"warning: additionalTrustedCA names ConfigMap {wanted!r}, which was "
                       "not given: no CA files (the operator only logs this)")
    return None


def render(crs: ClusterCRs, options: RenderOptions = RenderOptions()) -> RenderedNode:
    node = RenderedNode()
    image = crs.image
    if image is not None:
        node.report.extend(image.warnings)
    payload = filter_blocked_for_payload(crs, options.release_image)
    if payload.dropped:
        node.report.append(
            "warning: error adding [" + " ".join(f'"{b}"' for b in payload.dropped) +
            "] to blocked registries, cannot block the repository being used by the payload "
            "(the operator logs this and continues without them)")
    insecure = list(image.insecure or ()) if image else []
    # The operator's scope messages name only the value; ours also name the file and field.
    lists_at = image.origin.at("spec.registrySources") + ": " if image else ""
    validate_scopes(insecure, payload.registries_blocked, [], _mirror_entries(crs), lists_at)

    mirror_sets_exist = bool(crs.mirror_sets)
    regenerate = ((image is not None and image.insecure is not None)
                  or bool(payload.registries_blocked) or mirror_sets_exist)
    node.regenerated[REGISTRIES_CONF] = regenerate
    if regenerate:
        digest_sets = merge_mirror_sets(
            e for kind in (IDMS, ICSP) for s in crs.of_kind(kind) for e in s.entries)
        tag_sets = merge_mirror_sets(e for s in crs.of_kind(ITMS) for e in s.entries)
        field_of = "spec.registrySources"
        origin = image.origin if image else None
        insecure_sources = [ScopeSource(s, origin.at(f"{field_of}.insecureRegistries[{i}]")
                                        if origin else s) for i, s in enumerate(insecure)]
        blocked_sources = [ScopeSource(s, origin.at(f"{field_of}.blockedRegistries") if origin
                                       else s) for s in payload.registries_blocked]
        node.entries = edit_registries(digest_sets, tag_sets, insecure_sources,
                                       blocked_sources)
        node.files[REGISTRIES_CONF] = encode_registries_conf(
            TEMPLATE_SEARCH, node.entries, layer_store_key=options.ocp_version >= (4, 19))
    else:
        node.files[REGISTRIES_CONF] = TEMPLATE_REGISTRIES_CONF
        node.report.append(f"{REGISTRIES_CONF}: template kept (no insecure or blocked "
                           "registries, no IDMS, ITMS or ICSP)")

    repository = (parse_docker_reference(options.release_image).name
                  if options.release_image else None)
    try:
        policy = build_policy(payload.allowed, payload.policy_blocked, repository)
    except ConfigError as error:
        raise ConfigError(f"{lists_at}{error}") from None
    node.regenerated[POLICY_JSON] = policy is not None
    node.files[POLICY_JSON] = policy if policy is not None else TEMPLATE_POLICY
    if policy is None:
        node.report.append(f"{POLICY_JSON}: template kept (no allowed or blocked registries)")
    elif payload.allowed:
        node.report.append(f"{POLICY_JSON}: default reject; accepted: "
                           f"{', '.join(payload.allowed)} (allowedRegistries)")
    if payload.policy_blocked:
        node.report.append(f"{POLICY_JSON}: rejected: {', '.join(payload.policy_blocked)} "
                           "(blockedRegistries)")

    if image is not None and image.search is not None:
        node.files[SEARCH_DROP_IN] = encode_registries_conf(
            image.search, [], layer_store_key=options.ocp_version >= (4, 19))
        node.regenerated[SEARCH_DROP_IN] = True
        node.report.append(f"{SEARCH_DROP_IN}: unqualified-search-registries = "
                           f"{list(image.search)} (containerRuntimeSearchRegistries; replaces "
                           "the main file's list)")

    config_map = _config_map(crs, options, node)
    if config_map is not None:
        for path, data in ca_files(config_map).items():
            node.files[path] = data
            node.report.append(f"{path}: from ConfigMap {config_map.name} "
                               f"({config_map.origin.file}); no MachineConfig, no drain")
    for entry in node.entries:
        node.report.append(f"{REGISTRIES_CONF}: [[registry]] {entry.scope}: "
                           + "; ".join(entry.reasons or ["created"]))
    if image is not None:
        unused = [(name, value) for name, value in (
            ("spec.allowedRegistriesForImport", image.allowed_for_import),
            ("spec.externalRegistryHostnames", image.external_hostnames),
            ("status.internalRegistryHostname", image.internal_hostname)) if value]
        for name, value in unused:
            node.report.append(f"{name} = {value!r}: read, does not affect node files")
    node.report.extend(crs.skipped)
    return node
