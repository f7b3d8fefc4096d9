"""ClusterImagePolicy and ImagePolicy: read as the API server validates them, rendered as the
Machine Config Operator writes them (pkg/controller/container-runtime-config: helpers.go
and container_runtime_config_controller.go).

- `policyItemFromSpec`: each CR's `spec.policy` becomes one `sigstoreSigned` requirement,
  its key material inline (`keyData`, `rekorPublicKeyData`, `fulcio.caData`, `pki.caRootsData`
  are the CR's bytes, base64 in policy.json: no key file is written on the node), with
  `signedIdentity` from `matchPolicy` (`matchRepoDigestOrExact` when absent).
- `getValidScopePolicies`: every ClusterImagePolicy scope collects the requirements of all
  CRs naming it; an ImagePolicy scope equal to or nested in a ClusterImagePolicy scope is
  dropped (the operator sets the ImagePolicy's `Pending` condition, reason `ConflictScopes`).
- `validateImagePolicyWithAllowedBlockedRegistries`: with `allowedRegistries` every policy
  scope must be nested in one of them; a scope nested in a policy-blocked registry is an error.
- `updatePolicyJSON` appends the requirements under `transports.docker[scope]` and, for scopes
  with fewer than three `/`, `transports.atomic[scope]`; an allowed registry that is also a
  policy scope gets no `insecureAcceptAnything`.
- `updateNamespacedPolicyJSONs`: `/etc/crio/policies/<namespace>.json` is the cluster's
  policy.json plus that namespace's scopes (4.18+).
- `generateSigstoreRegistriesdConfig` / `addScopeMirrorsSigstoreRegistriesdConfig`:
  `/etc/containers/registries.d/sigstore-registries.yaml` turns `use-sigstore-attachments`
  on for every policy scope and (4.17+) for every endpoint the rendered registries.conf pulls
  that scope from, by digest and by tag, and likewise for each registries.conf entry nested
  in a policy scope; written with ghodss/yaml (JSON, then yaml.v2: keys in its "natural"
  order, a key over 128 bytes as `? key`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..matching import RewriteError, find_registry, rewrite_reference
from ..reference import InvalidReference, parse_reference
from ..registries_conf import Registry, merge, parse_registries_conf
from .scopes import nested

CIP, IP = "ClusterImagePolicy", "ImagePolicy"
API_V1, API_V1ALPHA1 = "config.openshift.io/v1", "config.openshift.io/v1alpha1"
POLICY_TYPES = ("PublicKey", "FulcioCAWithRekor", "PKI")
MATCH_POLICIES = ("MatchRepoDigestOrExact", "MatchRepository", "ExactRepository",
                  "RemapIdentity")
SIGSTORE_REGISTRIES_D = "etc/containers/registries.d/sigstore-registries.yaml"
CRIO_POLICIES_DIR = "etc/crio/policies"
FEATURE_SETS = ("Default", "TechPreviewNoUpgrade", "DevPreviewNoUpgrade")


# ---------------------------------------------------------------- versions and feature gates


def sigstore_gate(version: tuple[int, int], feature_set: str) -> bool:
    """SigstoreImageVerification (openshift/api features/features.go per release): Tech and
    Dev Preview from 4.16, Default from 4.20."""
    return version >= (4, 20) or (version >= (4, 16) and feature_set != "Default")


def pki_gate(version: tuple[int, int], feature_set: str) -> bool:
    """SigstoreImageVerificationPKI: Dev Preview 4.19, Tech Preview 4.20, Default 4.21."""
    if version >= (4, 21):
        return True
    if version >= (4, 20):
        return feature_set != "Default"
    return version >= (4, 19) and feature_set == "DevPreviewNoUpgrade"


def served_api(version: tuple[int, int]) -> str:
    """The version the API serves: v1alpha1 until 4.19, v1 (a hard cut) from 4.20."""
    return API_V1 if version >= (4, 20) else API_V1ALPHA1


# ---------------------------------------------------------------- the CRs


@dataclass(frozen=True)
class SigstorePolicy:
    """`spec.policy` of either kind, decoded (byte fields are the decoded bytes)."""

    policy_type: str
    key_data: bytes | None = None
    rekor_key_data: bytes | None = None
    fulcio_ca_data: bytes | None = None
    oidc_issuer: str = ""
    signed_email: str = ""
    ca_roots_data: bytes | None = None
    ca_intermediates_data: bytes | None = None
    pki_email: str = ""
    pki_hostname: str = ""
    match_policy: str | None = None
    """None when `signedIdentity` is absent."""
    exact_repository: str = ""
    remap_prefix: str = ""
    remap_signed_prefix: str = ""


@dataclass(frozen=True)
class ImagePolicyCR:
    kind: str
    api_version: str
    name: str
    namespace: str
    scopes: tuple[str, ...]
    policy: SigstorePolicy
    origin: Any
    """The `crs.Origin` (file, kind, name) for messages and the report."""

    def at(self, path: str) -> str:
        return str(self.origin.at(path))


# The CRD grammar of scopes and identity prefixes, in a linear-time form (the API's path
# separator `(?:[._]|__|[-]*)` may be empty; `-+` accepts the same strings).
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})+(?::[0-9]+)?|localhost(?::[0-9]+)?)"
_PATH = r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_SCOPE = re.compile(rf"{_HOST}{_PATH}(?::[\w][\w.-]{{0,127}})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
                    re.ASCII)
_WILDCARD = re.compile(rf"\*(?:\.{_LABEL})+", re.ASCII)
_PREFIX = re.compile(rf"{_HOST}{_PATH}", re.ASCII)
_TAG_SUFFIX = re.compile(r".*:[\w][\w.-]{0,127}", re.ASCII | re.DOTALL)
_EMAIL = re.compile(r"\S+@\S+", re.ASCII)
_DNS1123 = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:|/)[^\x00-\x20\x7f]*", re.ASCII)


def scope_error(scope: str) -> str | None:
    """The message of the first `ImageScope` rule `scope` breaks, or None."""
    if len(scope) > 512:
        return "Too long: may not be more than 512 bytes"
    host = scope.split("/", 1)[0]
    if len(host.split(".")) == 1 and host.split(":", 1)[0] != "localhost":
        return ("invalid image scope format, scope must contain a fully qualified domain "
                "name or 'localhost'")
    if "*" in scope:
        if not _WILDCARD.fullmatch(scope):
            return ("invalid image scope with wildcard, a wildcard can only be at the start "
                    "of the domain and is only supported for subdomain matching, not path "
                    "matching")
    elif not _SCOPE.fullmatch(scope):
        return "invalid repository namespace or image specification in the image scope"
    return None


def _prefix_error(value: str) -> str | None:
    """`IdentityRepositoryPrefix`: a repository or namespace, never a tag or digest."""
    if len(value) > 512:
        return "Too long: may not be more than 512 bytes"
    if _TAG_SUFFIX.fullmatch(value) and not re.fullmatch(r"localhost:[0-9]+", value):
        return ("invalid repository or prefix in the signedIdentity, should not include the "
                "tag or digest")
    if not _PREFIX.fullmatch(value):
        return ("invalid repository or prefix in the signedIdentity. The repository or prefix "
                "must starts with 'localhost' or a valid '.' separated domain. If contains "
                "registry paths, the path component names must start with at least one letter "
                "or number, with following parts able to be separated by one period, one or two "
                "underscore and multiple dashes.")
    return None


class _Spec:
    """Reads one CR's spec, failing with the API server's kind of message."""

    def __init__(self, origin: Any, api_version: str) -> None:
        self.origin = origin
        self.v1 = api_version == API_V1

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin.at(path)}: {message}")

    def mapping(self, value: Any, path: str, *, required: bool = True) -> Mapping[str, Any]:
        if value is None:
            if required:
                raise self.fail(path, "Required value")
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "Invalid value: must be an object")
        return value

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False,
               max_length: int | None = None) -> str:
        value = obj.get(key)
        where = f"{path}.{key}"
        if value is None:
            if required:
                raise self.fail(where, "Required value")
            return ""
        if not isinstance(value, str):
            raise self.fail(where, f"Invalid value: {type(value).__name__}: must be a string")
        if max_length is not None and len(value) > max_length:
            raise self.fail(where, f"Too long: may not be more than {max_length} bytes")
        return value

    def data(self, obj: Mapping[str, Any], key: str, path: str, *, required: bool,
             pem: str | None, min_length: int | None = None,
             count_certificates: bool = False) -> bytes | None:
        """A `format: byte` field: base64 in the CR, bytes after decoding; the v1 CEL rules
        check the PEM armour of the decoded text."""
        text = self.string(obj, key, path, required=required, max_length=8192)
        where = f"{path}.{key}"
        if key not in obj or obj.get(key) is None:
            return None
        if self.v1 and min_length is not None and len(text) < min_length:
            raise self.fail(where, f"Invalid value: should be at least {min_length} chars long")
        try:
            decoded = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(where, "Invalid value: must be base64-encoded data") from None
        if pem is not None and (self.v1 or count_certificates):
            armoured = decoded.decode("utf-8", "replace")
            begin, end = f"-----BEGIN {pem}-----", f"-----END {pem}-----"
            if not armoured.startswith(begin):
                raise self.fail(where, f"Invalid value: the {key} must start with base64 "
                                f"encoding of '{begin}'.")
            if not (armoured.endswith(end + "\n") or armoured.endswith(end)):
                raise self.fail(where, f"Invalid value: the {key} must end with base64 "
                                f"encoding of '{end}'.")
            if count_certificates and armoured.count(begin) != armoured.count(end):
                raise self.fail(where, f"Invalid value: {key} must be base64 encoding of valid "
                                f"PEM format data contain the same number of '{begin}' and "
                                f"'{end}' markers.")
        return decoded

    def policy(self, raw: Any, pki_allowed: bool) -> SigstorePolicy:
        spec_policy = self.mapping(raw, "spec.policy")
        trust = self.mapping(spec_policy.get("rootOfTrust"), "spec.policy.rootOfTrust")
        at = "spec.policy.rootOfTrust"
        kind = self.string(trust, "policyType", at, required=True)
        allowed = POLICY_TYPES if pki_allowed else POLICY_TYPES[:2]
        if kind not in allowed:
            supported = ", ".join(f'"{value}"' for value in allowed)
            raise self.fail(f"{at}.policyType", f'Unsupported value: "{kind}": supported '
                            f"values: {supported}")
        for member, wanted in (("publicKey", "PublicKey"), ("fulcioCAWithRekor",
                                                            "FulcioCAWithRekor"), ("pki", "PKI")):
            if (member in trust) != (kind == wanted):
                raise self.fail(at, f"Invalid value: {member} is required when policyType is "
                                f"{wanted}, and forbidden otherwise")
        values: dict[str, Any] = {"policy_type": kind}
        if kind == "PublicKey":
            key = self.mapping(trust.get("publicKey"), f"{at}.publicKey")
            values["key_data"] = self.data(key, "keyData", f"{at}.publicKey", required=True,
                                           pem="PUBLIC KEY", min_length=68)
            values["rekor_key_data"] = self.data(key, "rekorKeyData", f"{at}.publicKey",
                                                 required=False, pem="PUBLIC KEY")
        elif kind == "FulcioCAWithRekor":
            where = f"{at}.fulcioCAWithRekor"
            fulcio = self.mapping(trust.get("fulcioCAWithRekor"), where)
            values["fulcio_ca_data"] = self.data(fulcio, "fulcioCAData", where, required=True,
                                                 pem="CERTIFICATE")
            values["rekor_key_data"] = self.data(fulcio, "rekorKeyData", where, required=True,
                                                 pem="PUBLIC KEY")
            subject = self.mapping(fulcio.get("fulcioSubject"), f"{where}.fulcioSubject")
            issuer = self.string(subject, "oidcIssuer", f"{where}.fulcioSubject",
                                 required=True, max_length=2048)
            if not _URL.fullmatch(issuer):
                raise self.fail(f"{where}.fulcioSubject.oidcIssuer",
                                f"Invalid value: {issuer!r}: oidcIssuer must be a valid URL")
            email = self.string(subject, "signedEmail", f"{where}.fulcioSubject",
                                required=True, max_length=320)
            if not _EMAIL.fullmatch(email):
                raise self.fail(f"{where}.fulcioSubject.signedEmail",
                                f"Invalid value: {email!r}: invalid email address")
            values.update(oidc_issuer=issuer, signed_email=email)
        else:
            where = f"{at}.pki"
            pki = self.mapping(trust.get("pki"), where)
            values["ca_roots_data"] = self.data(pki, "caRootsData", where, required=True,
                                                pem="CERTIFICATE", min_length=72,
                                                count_certificates=True)
            values["ca_intermediates_data"] = self.data(
                pki, "caIntermediatesData", where, required=False, pem="CERTIFICATE",
                min_length=72, count_certificates=True)
            subject = self.mapping(pki.get("pkiCertificateSubject"),
                                   f"{where}.pkiCertificateSubject")
            sub_at = f"{where}.pkiCertificateSubject"
            email = self.string(subject, "email", sub_at, max_length=320)
            hostname = self.string(subject, "hostname", sub_at, max_length=253)
            if "email" not in subject and "hostname" not in subject:
                raise self.fail(sub_at, "Invalid value: at least one of email or hostname must "
                                "be set in pkiCertificateSubject")
            if "email" in subject and not _EMAIL.fullmatch(email):
                raise self.fail(f"{sub_at}.email", f"Invalid value: {email!r}: invalid email "
                                "address")
            bare = hostname[2:] if hostname.startswith("*.") else hostname
            if "hostname" in subject and not (len(bare) <= 253 and _DNS1123.fullmatch(bare)):
                raise self.fail(f"{sub_at}.hostname", f"Invalid value: {hostname!r}: hostname "
                                "must be a valid dns 1123 subdomain name, optionally prefixed "
                                "by '*.'. It must consist only of lowercase alphanumeric "
                                "characters, hyphens, periods and the optional preceding "
                                "asterisk.")
            values.update(pki_email=email, pki_hostname=hostname)
        identity_raw = spec_policy.get("signedIdentity")
        if identity_raw is not None:
            where = "spec.policy.signedIdentity"
            identity = self.mapping(identity_raw, where)
            match = self.string(identity, "matchPolicy", where, required=True)
            if match not in MATCH_POLICIES:
                raise self.fail(f"{where}.matchPolicy", f'Unsupported value: "{match}": '
                                "supported values: " + ", ".join(f'"{m}"'
                                                                 for m in MATCH_POLICIES))
            for member, wanted in (("exactRepository", "ExactRepository"),
                                   ("remapIdentity", "RemapIdentity")):
                if (member in identity) != (match == wanted):
                    raise self.fail(where, f"Invalid value: {member} is required when "
                                    f"matchPolicy is {wanted}, and forbidden otherwise")
            values["match_policy"] = match
            fields = {"ExactRepository": ("exactRepository", ("repository",)),
                      "RemapIdentity": ("remapIdentity", ("prefix", "signedPrefix"))}
            if match in fields:
                member, names = fields[match]
                sub = self.mapping(identity.get(member), f"{where}.{member}")
                found = []
                for name in names:
                    value = self.string(sub, name, f"{where}.{member}", required=True)
                    problem = _prefix_error(value)
                    if problem is not None:
                        raise self.fail(f"{where}.{member}.{name}",
                                        f"Invalid value: {value!r}: {problem}")
                    found.append(value)
                if match == "ExactRepository":
                    values["exact_repository"] = found[0]
                else:
                    values["remap_prefix"], values["remap_signed_prefix"] = found
        return SigstorePolicy(**values)


def parse_image_policy(doc: Mapping[str, Any], origin: Any, *, pki_allowed: bool = True
                       ) -> ImagePolicyCR:
    """A ClusterImagePolicy or ImagePolicy document, checked as its CRD checks it."""
    api = str(doc.get("apiVersion", ""))
    reader = _Spec(origin, api)
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    namespace = str(metadata.get("namespace") or "") if metadata else ""
    if origin.kind == IP and not namespace:
        raise reader.fail("metadata.namespace", "Required value: ImagePolicy is namespaced")
    spec = reader.mapping(doc.get("spec"), "spec")
    raw_scopes = spec.get("scopes")
    if raw_scopes is None:
        raise reader.fail("spec.scopes", "Required value")
    if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
        raise reader.fail("spec.scopes", "Invalid value: must be a list of strings")
    if len(raw_scopes) > 256:
        raise reader.fail("spec.scopes", f"Too many: {len(raw_scopes)}: must have at most 256 "
                          "items")
    seen: set[str] = set()
    for index, scope in enumerate(raw_scopes):
        if scope in seen:
            raise reader.fail(f"spec.scopes[{index}]", f'Duplicate value: "{scope}"')
        seen.add(scope)
        problem = scope_error(scope)
        if problem is not None:
            raise reader.fail(f"spec.scopes[{index}]", f"Invalid value: {scope!r}: {problem}")
    policy = reader.policy(spec.get("policy"), pki_allowed)
    return ImagePolicyCR(origin.kind, api, origin.name, namespace, tuple(raw_scopes), policy,
                         origin)


# ---------------------------------------------------------------- requirements (policyItemFromSpec)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def requirement(policy: SigstorePolicy) -> dict[str, Any]:
    """The `sigstoreSigned` requirement, fields in the order Go's encoder writes
    prSigstoreSigned (type, keyData, fulcio, rekorPublicKeyData, pki, signedIdentity)."""
    out: dict[str, Any] = {"type": "sigstoreSigned"}
    if policy.policy_type == "PublicKey":
        if policy.key_data:
            out["keyData"] = _b64(policy.key_data)
        if policy.rekor_key_data:
            out["rekorPublicKeyData"] = _b64(policy.rekor_key_data)
    elif policy.policy_type == "FulcioCAWithRekor":
        fulcio: dict[str, Any] = {}
        if policy.fulcio_ca_data:
            fulcio["caData"] = _b64(policy.fulcio_ca_data)
        fulcio.update(oidcIssuer=policy.oidc_issuer, subjectEmail=policy.signed_email)
        out["fulcio"] = fulcio
        if policy.rekor_key_data:
            out["rekorPublicKeyData"] = _b64(policy.rekor_key_data)
    else:
        pki: dict[str, Any] = {}
        if policy.ca_roots_data:
            pki["caRootsData"] = _b64(policy.ca_roots_data)
        if policy.ca_intermediates_data:
            pki["caIntermediatesData"] = _b64(policy.ca_intermediates_data)
        if policy.pki_email:
            pki["subjectEmail"] = policy.pki_email
        if policy.pki_hostname:
            pki["subjectHostname"] = policy.pki_hostname
        out["pki"] = pki
    match = policy.match_policy or "MatchRepoDigestOrExact"
    if match == "RemapIdentity":
        out["signedIdentity"] = {"type": "remapIdentity", "prefix": policy.remap_prefix,
                                 "signedPrefix": policy.remap_signed_prefix}
    elif match == "ExactRepository":
        out["signedIdentity"] = {"type": "exactRepository",
                                 "dockerRepository": policy.exact_repository}
    else:
        out["signedIdentity"] = {"type": "matchRepository" if match == "MatchRepository"
                                 else "matchRepoDigestOrExact"}
    return out


@dataclass(frozen=True)
class Sourced:
    """A requirement with the CR field that produced it."""

    requirement: dict[str, Any]
    source: str


@dataclass
class ScopePolicies:
    """`getValidScopePolicies`' two maps, with where each entry came from."""

    cluster: dict[str, list[Sourced]] = field(default_factory=dict)
    namespaced: dict[str, dict[str, list[Sourced]]] = field(default_factory=dict)
    """scope -> namespace -> requirements."""
    conflicts: list[str] = field(default_factory=list)
    """Report lines: ImagePolicy scopes dropped for a ClusterImagePolicy scope."""

    def __bool__(self) -> bool:
        return bool(self.cluster or self.namespaced)


def valid_scope_policies(cluster_crs: Sequence[ImagePolicyCR],
                         namespaced_crs: Sequence[ImagePolicyCR]) -> ScopePolicies:
    """`getValidScopePolicies`: ClusterImagePolicies first; an ImagePolicy scope equal to or
    nested in a cluster scope is left out, and reported as the operator's status says."""
    result = ScopePolicies()
    for cr in cluster_crs:
        item = requirement(cr.policy)
        for index, scope in enumerate(cr.scopes):
            result.cluster.setdefault(scope, []).append(
                Sourced(item, cr.at(f"spec.scopes[{index}]")))
    for cr in namespaced_crs:
        item = requirement(cr.policy)
        conflicting = []
        for index, scope in enumerate(cr.scopes):
            if any(nested(scope, cluster) for cluster in result.cluster):
                conflicting.append(scope)
                continue
            result.namespaced.setdefault(scope, {}).setdefault(cr.namespace, []).append(
                Sourced(item, cr.at(f"spec.scopes[{index}]")))
        if conflicting:
            quoted = "[" + " ".join(json.dumps(s) for s in conflicting) + "]"
            result.conflicts.append(
                f"{cr.origin.file}: ImagePolicy {cr.namespace}/{cr.name}: condition Pending, "
                f"reason ConflictScopes: has conflicting scope(s) {quoted} that equal to or "
                "nest inside existing clusterimagepolicy, only policy from clusterimagepolicy "
                "scope(s) will be applied")
    return result


def validate_with_registries(policies: ScopePolicies, allowed: Sequence[str],
                             blocked: Sequence[str], *, cluster: bool = True,
                             namespaced: bool = True) -> None:
    """`validateImagePolicyWithAllowedBlockedRegistries`. Go walks its maps in random order;
    here scopes go in sorted order, so the same error is named every time."""
    if not allowed and not blocked:
        return
    groups: list[tuple[str, Iterable[str]]] = []
    if cluster:
        groups.append(("clusterimagePolicy", list(policies.cluster)))
    if namespaced:
        groups.append(("imagePolicy", list(policies.namespaced)))
    for name, scopes in groups:
        for scope in sorted(scopes):
            if allowed and not any(nested(scope, reg) for reg in allowed):
                raise ConfigError(f"{name} configured for the scope {scope} is not nested "
                                  "inside allowedRegistries")
        for scope in sorted(scopes):
            if any(nested(scope, reg) for reg in blocked):
                raise ConfigError(f"{name} configured for the scope {scope} is nested inside "
                                  "blockedRegistries")


# ---------------------------------------------------------------- per-namespace policy.json


def namespaced_policies(cluster_policy: Mapping[str, Any], policies: ScopePolicies
                        ) -> dict[str, dict[str, Any]]:
    """`updateNamespacedPolicyJSONs`: namespace -> the cluster's policy object plus that
    namespace's scopes (docker, and atomic below three `/`)."""
    by_namespace: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scope, namespaces in policies.namespaced.items():
        for namespace, sourced in namespaces.items():
            by_namespace.setdefault(namespace, {}).setdefault(scope, []).extend(
                s.requirement for s in sourced)
    out = {}
    for namespace in sorted(by_namespace):
        policy = json.loads(json.dumps(cluster_policy))
        transports = policy.setdefault("transports", {})
        docker = transports.setdefault("docker", {})
        atomic = transports.setdefault("atomic", {})
        for scope, items in by_namespace[namespace].items():
            docker[scope] = docker.get(scope, []) + items
            if scope.count("/") < 3:
                atomic[scope] = atomic.get(scope, []) + items
        out[namespace] = policy
    return out


# ---------------------------------------------------------------- sigstore-registries.yaml


def _endpoints(registry: Registry, scope: str) -> list[str]:
    """`addScopeMirrorsSigstoreRegistriesdConfig` for one scope and the entry it matched: the
    repository names a digest and a tag pull of the scope would use (entries without a
    location, a wildcard's own, are skipped)."""
    dummy_added = False
    name = scope
    if name.startswith("*."):
        name = "matched" + name[1:]
    if "/" not in name:
        name += "/a"
        dummy_added = True
    try:
        parsed = parse_reference(name)
    except InvalidReference as error:
        raise ConfigError(f"error parsing scope {name}: {error}") from None
    repository = parsed.name
    found = []
    for digested in (True, False):
        ref = parse_reference(repository + ("@sha256:" + "a" * 64 if digested else ":aaa"))
        endpoints = [m for m in registry.mirrors
                     if not (registry.mirror_by_digest_only and not digested)
                     and not (m.pull_from_mirror == "digest-only" and not digested)
                     and not (m.pull_from_mirror == "tag-only" and digested)]
        locations = [m.location for m in endpoints] + [registry.location]
        for location in locations:
            try:
                physical = rewrite_reference(ref, registry.prefix, location)
            except RewriteError as error:
                kind = "digest" if digested else "tag"
                raise ConfigError(f"error getting {kind} sources for scope {name}: "
                                  f"{error}") from None
            if location == "":
                continue
            endpoint = physical.name
            if dummy_added:
                endpoint = endpoint.removesuffix("/a")
            found.append(endpoint)
    return found


def attachment_scopes(policies: ScopePolicies, registries_conf: bytes | None,
                      entry_scopes: Iterable[str], *, mirrors: bool = True,
                      namespaced: bool = True) -> dict[str, str]:
    """`generateSigstoreRegistriesdConfig`: each key of the file with the reason it is there.
    `registries_conf` is the rendered file (None when the template is kept: scopes only);
    `entry_scopes` its `[[registry]]` scopes in file order."""
    scopes = list(policies.cluster) + (list(policies.namespaced) if namespaced else [])
    reasons: dict[str, str] = {}
    registries: tuple[Registry, ...] = ()
    if registries_conf is not None and mirrors:
        parsed = parse_registries_conf(registries_conf.decode(), "registries.conf")
        registries = merge([parsed], "registries.conf", ()).registries
    entries = list(entry_scopes)
    for scope in scopes:
        reasons[scope] = "a policy scope"
        if registries_conf is None or not mirrors:
            continue
        try:
            found = find_registry(registries, scope)
            if found is not None:
                for endpoint in _endpoints(found, scope):
                    reasons.setdefault(endpoint, f"endpoint of {scope} in registries.conf")
            for entry in entries:
                if entry != scope and nested(entry, scope):
                    nested_registry = find_registry(registries, entry)
                    if nested_registry is not None:
                        for endpoint in _endpoints(nested_registry, entry):
                            reasons.setdefault(endpoint, f"endpoint of {entry} (nested in "
                                               f"{scope}) in registries.conf")
        except ConfigError as error:
            raise ConfigError(f"error adding clusterimagepolicy scope {scope} relevant "
                              f"mirrors: {error}") from None
    return reasons


def _natural_less(a: str, b: str) -> bool:
    """yaml.v2's keyList.Less for two string keys: letters by code point, a letter after
    any non-letter, runs of digits by value (with its leading-zero rule)."""
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            continue
        a_letter, b_letter = a[i].isalpha(), b[i].isalpha()
        if a_letter and b_letter:
            return a[i] < b[i]
        if a_letter or b_letter:
            return b_letter
        a_number = b_number = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdigit():
                if a[j] != "0":
                    a_number = b_number = 1
                    break
                j -= 1
        a_end = i
        while a_end < len(a) and a[a_end].isdigit():
            a_number = a_number * 10 + int(a[a_end])
            a_end += 1
        b_end = i
        while b_end < len(b) and b[b_end].isdigit():
            b_number = b_number * 10 + int(b[b_end])
            b_end += 1
        if a_number != b_number:
            return a_number < b_number
        if a_end != b_end:
            return a_end < b_end
        return a[i] < b[i]
    return len(a) < len(b)


_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_YAML_INT = re.compile(r"[-+]?(?:0[bB][01]+|0[oO]?[0-7]+|0[xX][0-9a-fA-F]+|[0-9]+)")
_YAML_WORDS = frozenset(("y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true",
                         "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off",
                         "Off", "OFF", "null", "Null", "NULL", "~", ".inf", ".Inf", ".INF",
                         "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", ".nan",
                         ".NaN", ".NAN", "<<"))


def _yaml_key(key: str) -> str:
    """A string key as yaml.v2 writes it: double-quoted when plain text would read back as
    another type, single-quoted when it starts with an indicator, else plain."""
    plain = key.replace("_", "")
    if key in _YAML_WORDS or _YAML_INT.fullmatch(plain) or _YAML_FLOAT.fullmatch(plain):
        return json.dumps(key)
    indicator = key[:1] in ("", *"#,[]{}&*!|>'\"%@`") or (
        key[0] in "-?:" and (len(key) == 1 or key[1] == " "))
    if indicator or key.startswith(("---", "...")) or any(c in key for c in ("# ", ": ")) or (
            key != key.strip()):
        return "'" + key.replace("'", "''") + "'"
    return key


def encode_sigstore_registries(keys: Iterable[str]) -> bytes:
    """`{"docker": {key: {"use-sigstore-attachments": true}}}` through ghodss/yaml."""
    def compare(a: str, b: str) -> int:
        return -1 if _natural_less(a, b) else 1 if _natural_less(b, a) else 0

    ordered = sorted(set(keys), key=functools.cmp_to_key(compare))
    lines = ["docker:"]
    for key in ordered:
        if len(key) > 128:
            lines += [f"  ? {_yaml_key(key)}", "  : use-sigstore-attachments: true"]
        else:
            lines += [f"  {_yaml_key(key)}:", "    use-sigstore-attachments: true"]
    return ("\n".join(lines) + "\n").encode()
