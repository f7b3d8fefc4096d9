"""From cluster CRs to the files of a node, as the Machine Config Operator renders them.

Order of work, as the controller's: the blocked list is filtered against the release
payload, the mirror CRs and scopes are validated, registries.conf is edited (or left as
the template), then policy.json, then the search-registries drop-in; CA files come from
the `additionalTrustedCA` ConfigMap. Any error stops everything: nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..plan import resolve_sources
from ..reference import InvalidReference, parse_docker_reference
from ..registries_conf import Mirror as ConfMirror
from ..registries_conf import RegistriesConf, Registry
from .cas import ca_files
from .crs import ICSP, IDMS, ITMS, ClusterCRs, ConfigMap, MirrorEntry
from .imagepolicies import (
    CIP,
    CRIO_POLICIES_DIR,
    IP,
    SIGSTORE_REGISTRIES_D,
    ImagePolicyCR,
    ScopePolicies,
    attachment_scopes,
    encode_sigstore_registries,
    namespaced_policies,
    pki_gate,
    served_api,
    sigstore_gate,
    valid_scope_policies,
    validate_with_registries,
)
from .mirrorsets import merge_mirror_sets
from .policy import (
    TEMPLATE_POLICY,
    build_policy_object,
    check_scopes,
    policy_indent,
    policy_json,
)
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
    feature_set: str = "Default"
    """The cluster's feature set: decides the sigstore feature gates before 4.20/4.21."""


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


# ---------------------------------------------------------------- image policies


def _image_policies(crs: ClusterCRs, options: RenderOptions, node: RenderedNode
                    ) -> ScopePolicies:
    """The CRs the operator of this version and feature set reads, then
    `getValidScopePolicies`. CRs it would not see are named in the report."""
    version, feature_set = options.ocp_version, options.feature_set
    label = f"OCP {version[0]}.{version[1]} ({feature_set})"
    cluster: list[ImagePolicyCR] = []
    namespaced: list[ImagePolicyCR] = []
    for cr in crs.image_policies:
        name = f"{cr.origin.file}: {cr.kind}/{cr.name}"
        if not sigstore_gate(version, feature_set):
            node.report.append(
                f"warning: {name}: the SigstoreImageVerification feature gate is off in "
                f"{label}: no such API, the operator renders nothing for it (on by default "
                "from 4.20, with TechPreviewNoUpgrade from 4.16: --ocp-version, --feature-set)")
            continue
        if cr.kind == IP and version < (4, 18):
            node.report.append(f"warning: {name}: the operator reads ImagePolicy from 4.18 "
                               f"on; {label} renders nothing for it")
            continue
        if cr.api_version != served_api(version):
            raise ConfigError(f"{cr.at('apiVersion')}: no matches for kind \"{cr.kind}\" in "
                              f"version \"{cr.api_version}\": {label} serves "
                              f"{served_api(version)}")
        if cr.policy.policy_type == "PKI" and not (pki_gate(version, feature_set)
                                                   and version >= (4, 19)):
            raise ConfigError(f"{cr.at('spec.policy.rootOfTrust.policyType')}: Unsupported "
                              'value: "PKI": supported values: "PublicKey", '
                              f'"FulcioCAWithRekor" (the SigstoreImageVerificationPKI gate is '
                              f"off in {label})")
        (cluster if cr.kind == CIP else namespaced).append(cr)
    policies = valid_scope_policies(cluster, namespaced)
    node.report.extend(policies.conflicts)
    return policies


def _with_source(error: ConfigError, policies: ScopePolicies) -> ConfigError:
    """Prefix an operator message naming a scope with the CR field that holds it."""
    text = str(error)
    for scope, items in [*policies.cluster.items(),
                         *((s, [i for n in ns.values() for i in n])
                           for s, ns in policies.namespaced.items())]:
        if f"the scope {scope} is" in text and items:
            return ConfigError(f"{items[0].source}: {text}")
    return error


def _render_signatures(policies: ScopePolicies, payload: PayloadFilter, repository: str | None,
                       options: RenderOptions, node: RenderedNode, lists_at: str) -> None:
    """policy.json, /etc/crio/policies/<namespace>.json and sigstore-registries.yaml, as the
    operator's policy block writes them (`registriesConfigIgnition`)."""
    version = options.ocp_version
    allowed, blocked = payload.allowed, payload.policy_blocked
    cluster_scopes = {scope: [s.requirement for s in items]
                      for scope, items in policies.cluster.items()}
    try:
        if allowed and blocked and list(allowed) != [repository]:
            raise ConfigError("invalid images config: only one of AllowedRegistries or "
                              "BlockedRegistries may be specified")
        try:
            validate_with_registries(policies, allowed, blocked, namespaced=False)
        except ConfigError as error:
            raise _with_source(error, policies) from None
        policy = build_policy_object(allowed, blocked, repository, cluster_scopes)
    except ConfigError as error:
        raise ConfigError(f"{lists_at}{error}") from None
    entered = bool(allowed or blocked or policies)
    node.regenerated[POLICY_JSON] = entered
    node.files[POLICY_JSON] = (TEMPLATE_POLICY if policy is None
                               else policy_json(policy, policy_indent(version)))
    if policy is None:
        node.report.append(f"{POLICY_JSON}: template " + (
            "bytes, written by the operator (ImagePolicy only)" if entered
            else "kept (no allowed or blocked registries, no ClusterImagePolicy)"))
    elif allowed:
        node.report.append(f"{POLICY_JSON}: default reject; accepted: "
                           f"{', '.join(a for a in allowed if a not in cluster_scopes)} "
                           "(allowedRegistries)")
    if blocked:
        node.report.append(f"{POLICY_JSON}: rejected: {', '.join(blocked)} "
                           "(blockedRegistries)")
    for scope in sorted(policies.cluster):
        items = policies.cluster[scope]
        atomic = " and atomic" if scope.count("/") < 3 else " (not atomic: 3 or more /)"
        node.report.append(f"{POLICY_JSON}: docker{atomic} {scope}: "
                           + "; ".join(f"sigstoreSigned from {s.source}" for s in items))
    if not policies:
        return

    if policies.namespaced:
        try:
            validate_with_registries(policies, allowed, blocked, cluster=False)
        except ConfigError as error:
            raise _with_source(error, policies) from None
        base = policy if policy is not None else json.loads(TEMPLATE_POLICY)
        indent = "  " if version >= (4, 19) else " "
        for namespace, document in namespaced_policies(base, policies).items():
            path = f"{CRIO_POLICIES_DIR}/{namespace}.json"
            node.files[path] = policy_json(document, indent)
            node.regenerated[path] = True
            for scope, by_namespace in sorted(policies.namespaced.items()):
                for item in by_namespace.get(namespace, []):
                    node.report.append(f"{path}: docker {scope}: sigstoreSigned from "
                                       f"{item.source} (the cluster policy.json plus this "
                                       "namespace's scopes)")

    registries_conf = (node.files[REGISTRIES_CONF] if node.regenerated.get(REGISTRIES_CONF)
                       else None)
    reasons = attachment_scopes(policies, registries_conf, [e.scope for e in node.entries],
                                mirrors=version >= (4, 17), namespaced=version >= (4, 18))
    node.files[SIGSTORE_REGISTRIES_D] = encode_sigstore_registries(reasons)
    node.regenerated[SIGSTORE_REGISTRIES_D] = True
    for key in sorted(reasons):
        node.report.append(f"{SIGSTORE_REGISTRIES_D}: {key}: use-sigstore-attachments "
                           f"({reasons[key]})")


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
    policies = _image_policies(crs, options, node)
    _render_signatures(policies, payload, repository, options, node, lists_at)

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
