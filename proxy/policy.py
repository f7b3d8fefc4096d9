"""policy.json: strict parsing and the docker-transport decision for a logical reference.

The policy is looked up on the *logical* reference (what the user asked for), never on
the mirror that serves it. Exactly one requirement list applies, the most specific scope
that exists; all its requirements must allow (AND).

`signedBy` and `sigstoreSigned` are parsed as strictly as containers/image parses them
(signature/policy_config.go, policy_config_sigstore.go). Their verdict needs the image's
manifest and signatures: `mirrorlab.proxy.signatures.evaluate_requirements` gives it from
the decision's `requirements`. `evaluate_policy` alone, for callers that fetch no
signatures, answers what containers/image answers for an image without signatures (`A
signature was required, but no signature exists`) and sets `needs_signatures` when the
verdict would depend on them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PARSER_FAILURES, ConfigError, parser_failure
from .reference import DOMAIN_PATTERN, ImageReference, InvalidReference, parse_normalized

TRANSPORT = "docker"


@dataclass(frozen=True)
class Requirement:
    """One entry of a requirement list; `fields` keeps the parsed options for reports."""

    type: str
    fields: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Policy:
    default: tuple[Requirement, ...]
    transports: Mapping[str, Mapping[str, tuple[Requirement, ...]]]
    path: str = ""


SIGNATURE_REQUIREMENTS = frozenset({"signedBy", "sigstoreSigned"})
"""The requirement types that verify signatures (`verifiesSignatures` upstream)."""

NO_SIGNATURE = "A signature was required, but no signature exists"


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    scope: str
    """The scope whose list decided: a docker scope key, `""`, or `default`."""
    reason: str
    """Why not allowed, as containers/image says it for an image without signatures."""
    requirements: tuple[Requirement, ...] = ()
    needs_signatures: bool = False
    """The list verifies signatures and nothing in it refuses regardless of them: the
    verdict is `evaluate_requirements(requirements, ...)` on the served manifest and its
    signatures, not `allowed`."""


# ---------------------------------------------------------------- strict JSON


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(f'Duplicate key "{key}"')
        result[key] = value
    return result


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} is not a JSON object")
    return value


def _check_keys(
    obj: Mapping[str, Any], allowed: Collection[str], required: Collection[str] = ()
) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(f'Unknown key "{key}"')
    for key in sorted(required):
        if key not in obj:
            raise ConfigError(f'Mandatory field "{key}" is missing')


def _string(obj: Mapping[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ConfigError(f'Field "{key}" must be a string')
    return value


def _docker_ref(text: str, *, needs_identity: bool) -> None:
    try:
        ref = parse_normalized(text)
    except InvalidReference as error:
        raise ConfigError(f'Invalid reference "{text}": {error}') from None
    if needs_identity and ref.tag is None and ref.digest is None:
        raise ConfigError(f'Reference "{text}" must contain a tag or digest')


def _go_type_error(value: Any, go_type: str) -> ConfigError:
    kind = ("object" if isinstance(value, dict) else "array" if isinstance(value, list)
            else "bool" if isinstance(value, bool) else "number"
            if isinstance(value, int | float) else "string")
    return ConfigError(f"json: cannot unmarshal {kind} into Go value of type {go_type}")


def _opt_string(obj: Mapping[str, Any], key: str) -> str:
    """A Go `string` field: absent or `null` is empty."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _go_type_error(value, "string")
    return value


def _opt_strings(obj: Mapping[str, Any], key: str) -> list[str] | None:
    """A Go `[]string` field: absent or `null` is nil."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _go_type_error(value, "[]string")
    for item in value:
        if item is not None and not isinstance(item, str):
            raise _go_type_error(item, "string")
    return [item or "" for item in value]


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _go_type_error(value, "[]uint8")
    cleaned = value.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"illegal base64 data in {value[:20]!r}") from None


def _opt_bytes(obj: Mapping[str, Any], key: str) -> bytes | None:
    """A Go `[]byte` field: a base64 string; absent or `null` is nil."""
    value = obj.get(key)
    return None if value is None else _base64(value)


def _opt_bytes_list(obj: Mapping[str, Any], key: str) -> list[bytes] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _go_type_error(value, "[][]uint8")
    return [b"" if item is None else _base64(item) for item in value]


_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMAP_DOMAIN = re.compile(DOMAIN_PATTERN, re.ASCII)
_REMAP_NAME = re.compile(rf"(?:{DOMAIN_PATTERN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*",
                         re.ASCII)
_REMAP_DOMAIN_PREFIX = re.compile(rf"{DOMAIN_PATTERN}/", re.ASCII)


def _remap_prefix(text: str) -> None:
    """validateIdentityRemappingPrefix: a registry, or a repository that starts with one."""
    if _REMAP_DOMAIN.fullmatch(text) or (
            _REMAP_NAME.fullmatch(text) and _REMAP_DOMAIN_PREFIX.match(text)):
        return
    raise ConfigError(f'prefix "{text}" is not valid')


def _signed_identity(value: Any) -> tuple[str, Any]:
    obj = _object(value, "signedIdentity")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ConfigError('Mandatory field "type" is missing')
    if kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        _check_keys(obj, {"type"})
    elif kind == "exactReference":
        _check_keys(obj, {"type", "dockerReference"}, {"dockerReference"})
        _docker_ref(_string(obj, "dockerReference"), needs_identity=True)
    elif kind == "exactRepository":
        _check_keys(obj, {"type", "dockerRepository"}, {"dockerRepository"})
        _docker_ref(_string(obj, "dockerRepository"), needs_identity=False)
    elif kind == "remapIdentity":
        _check_keys(obj, {"type", "prefix", "signedPrefix"}, {"prefix", "signedPrefix"})
        for key in ("prefix", "signedPrefix"):
            _remap_prefix(_string(obj, key))
    else:
        raise ConfigError(f'Unknown policy reference match type "{kind}"')
    return ("signedIdentity", dict(obj))


def _signed_by(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    _check_keys(obj, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"},
                {"keyType"})
    key_type = _string(obj, "keyType")
    if key_type not in ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs"):
        raise ConfigError(f'Unknown key type "{key_type}"')
    present = [key for key in ("keyPath", "keyPaths", "keyData") if key in obj]
    if len(present) != 1:
        raise ConfigError("signedBy must specify exactly one of keyPath, keyPaths, keyData")
    sources = (_opt_string(obj, "keyPath") != "") + (_opt_strings(obj, "keyPaths") is not None) \
        + (_opt_bytes(obj, "keyData") is not None)
    if sources != 1:
        raise ConfigError("exactly one of keyPath, keyPaths and keyData must be specified")
    fields = [(k, obj[k]) for k in ("keyType", "keyPath", "keyPaths", "keyData") if k in obj]
    if "signedIdentity" in obj:
        fields.append(_signed_identity(obj["signedIdentity"]))
    return fields


_FULCIO_KEYS = ("caPath", "caData", "oidcIssuer", "subjectEmail")
_PKI_KEYS = ("caRootsPath", "caRootsData", "caIntermediatesPath", "caIntermediatesData",
             "subjectEmail", "subjectHostname")


def _fulcio(value: Any) -> dict[str, Any]:
    obj = _object(value, "fulcio")
    _check_keys(obj, _FULCIO_KEYS)
    ca_path, ca_data = _opt_string(obj, "caPath"), _opt_bytes(obj, "caData")
    issuer, email = _opt_string(obj, "oidcIssuer"), _opt_string(obj, "subjectEmail")
    if ca_path and ca_data is not None:
        raise ConfigError("caPath and caData cannot be used simultaneously")
    if not ca_path and ca_data is None:
        raise ConfigError("At least one of caPath and caData must be specified")
    if not issuer:
        raise ConfigError("oidcIssuer not specified")
    if not email:
        raise ConfigError("subjectEmail not specified")
    return dict(obj)


def _pki(value: Any) -> dict[str, Any]:
    obj = _object(value, "pki")
    _check_keys(obj, _PKI_KEYS)
    roots_path, roots_data = _opt_string(obj, "caRootsPath"), _opt_bytes(obj, "caRootsData")
    mid_path = _opt_string(obj, "caIntermediatesPath")
    mid_data = _opt_bytes(obj, "caIntermediatesData")
    if roots_path and roots_data is not None:
        raise ConfigError("caRootsPath and caRootsData cannot be used simultaneously")
    if not roots_path and roots_data is None:
        raise ConfigError("At least one of caRootsPath and caRootsData must be specified")
    if mid_path and mid_data is not None:
        raise ConfigError("caIntermediatesPath and caIntermediatesData cannot be used "
                          "simultaneously")
    if not _opt_string(obj, "subjectEmail") and not _opt_string(obj, "subjectHostname"):
        raise ConfigError("At least one of subjectEmail, subjectHostname must be specified")
    return dict(obj)


_SIGSTORE_KEYS = ("keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki")
_REKOR_KEYS = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
               "rekorPublicKeyDatas")


def _sigstore_signed(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """newPRSigstoreSigned's rules; `null` values count as absent, as Go decodes them."""
    _check_keys(obj, {"type", "signedIdentity", *_SIGSTORE_KEYS, *_REKOR_KEYS})
    parsed: dict[str, Any] = {}
    for key in obj:
        if key == "fulcio":
            parsed[key] = _fulcio(obj[key])
        elif key == "pki":
            parsed[key] = _pki(obj[key])
    identity = _signed_identity(obj["signedIdentity"]) if "signedIdentity" in obj else None
    for key in ("keyPaths", "keyDatas", "rekorPublicKeyPaths", "rekorPublicKeyDatas"):
        values = (_opt_strings if key.endswith("Paths") else _opt_bytes_list)(obj, key)
        if key in obj and not values:  # `null` too: the option is given, with no entries
            raise ConfigError(f'"{key}" contains no entries')
    keys = (_opt_string(obj, "keyPath") != "") + (_opt_strings(obj, "keyPaths") is not None) \
        + (_opt_bytes(obj, "keyData") is not None) \
        + (_opt_bytes_list(obj, "keyDatas") is not None) + ("fulcio" in parsed) \
        + ("pki" in parsed)
    if keys != 1:
        raise ConfigError("exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki "
                          "must be specified")
    rekor = (_opt_string(obj, "rekorPublicKeyPath") != "") \
        + (_opt_strings(obj, "rekorPublicKeyPaths") is not None) \
        + (_opt_bytes(obj, "rekorPublicKeyData") is not None) \
        + (_opt_bytes_list(obj, "rekorPublicKeyDatas") is not None)
    if rekor > 1:
        raise ConfigError("at most one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously")
    if "fulcio" in parsed and rekor == 0:
        raise ConfigError("At least one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas must be specified if "
                          "fulcio is used")
    if "pki" in parsed and rekor > 0:
        raise ConfigError("rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and "
                          "rekorPublicKeyDatas are not supported for pki")
    fields = [(k, parsed.get(k, obj[k])) for k in (*_SIGSTORE_KEYS, *_REKOR_KEYS)
              if obj.get(k) is not None]
    if identity is not None:
        fields.append(identity)
    return fields


def _requirement(value: Any) -> Requirement:
    obj = _object(value, "policy requirement")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ConfigError('Mandatory field "type" is missing')
    fields: list[tuple[str, Any]] = []
    if kind in ("insecureAcceptAnything", "reject"):
        _check_keys(obj, {"type"})
    elif kind == "signedBy":
        fields = _signed_by(obj)
    elif kind == "sigstoreSigned":
        fields = _sigstore_signed(obj)
    elif kind == "signedBaseLayer":
        _check_keys(obj, {"type", "baseLayerIdentity"}, {"baseLayerIdentity"})
        fields = [("baseLayerIdentity", _signed_identity(obj["baseLayerIdentity"])[1])]
    else:
        raise ConfigError(f'Unknown policy requirement type "{kind}"')
    return Requirement(kind, tuple(fields))


def _requirements(value: Any) -> tuple[Requirement, ...]:
    if not isinstance(value, list):
        raise ConfigError("a requirement list is not a JSON array")
    if not value:
        raise ConfigError("List of verification policy requirements must not be empty")
    return tuple(_requirement(item) for item in value)


_ATOMIC_SCOPE = re.compile(r"[^/]*(/[^:/]*(/[^:/]*(:[^:/]*)?)?)?")
_DIGEST_LIKE = re.compile(r"[A-Za-z0-9_+.-]+:[A-Fa-f0-9]+")
_SCOPE_CHECKS: dict[str, Callable[[str], bool]] = {
    "atomic": lambda scope: _ATOMIC_SCOPE.fullmatch(scope) is not None,
    "docker-daemon": lambda scope: _DIGEST_LIKE.fullmatch(scope) is None,
}


def parse_policy(text: str, path: str = "") -> Policy:
    """Parse policy.json as strictly as containers/image: unknown or duplicate keys fail."""
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as error:
        raise ConfigError(f"line {error.lineno}: invalid JSON: {error.msg}") from None
    except PARSER_FAILURES as error:
        raise ConfigError(f"invalid JSON: {parser_failure(error)}") from None
    top = _object(raw, "policy")
    _check_keys(top, {"default", "transports"})
    if "default" not in top:
        raise ConfigError("Default policy is missing")
    default = _requirements(top["default"])
    transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
    for transport, scopes in _object(top.get("transports", {}), "transports").items():
        check = _SCOPE_CHECKS.get(transport)
        parsed: dict[str, tuple[Requirement, ...]] = {}
        for scope, requirements in _object(scopes, f'transport "{transport}"').items():
            if check is not None and not check(scope):
                raise ConfigError(f'Unknown key "{scope}"')
            try:
                parsed[scope] = _requirements(requirements)
            except ConfigError as error:
                raise ConfigError(f'transports.{transport}["{scope}"]: {error}') from None
        transports[transport] = parsed
    return Policy(default=default, transports=transports, path=path)


def load_policy(path: str) -> Policy:
    """Read and parse policy.json; the error names the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no policy.json file found at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f'reading policy "{path}": {error}') from None
    try:
        return parse_policy(text, path)
    except ConfigError as error:
        raise ConfigError(f'invalid policy in "{path}": {error}') from None


# ---------------------------------------------------------------- evaluation


def policy_scopes(ref: ImageReference) -> list[str]:
    """The docker scope keys tried for `ref`, most specific first, ending with `""`."""
    return name_scopes(ref.name, ref.identity)


def name_scopes(name: str, identity: str = "") -> list[str]:
    """The docker scope keys tried for the repository `name` (`host[:port]/path`, or a
    host alone) with `identity` (`:tag`, `@digest` or nothing): compared as text."""
    scopes = [name + identity] if identity else []
    domain = name.split("/", 1)[0]
    while True:
        scopes.append(name)
        slash = name.rfind("/")
        if slash == -1:
            break
        name = name[:slash]
    host = domain.split(":", 1)[0]
    labels = host.split(".")
    scopes.extend("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    scopes.append("")
    return scopes


def verifies_signatures(requirements: tuple[Requirement, ...]) -> bool:
    """Does the list hold a requirement that verifies signatures?"""
    return any(r.type in SIGNATURE_REQUIREMENTS for r in requirements)


def needs_signatures(requirements: tuple[Requirement, ...]) -> bool:
    """Would the verdict depend on the image's signatures: the list verifies some, and no
    requirement refuses every image (`reject`, `signedBaseLayer`)?"""
    return verifies_signatures(requirements) and not any(
        r.type in ("reject", "signedBaseLayer") for r in requirements)


def _verdict(ref: ImageReference, requirements: tuple[Requirement, ...]) -> tuple[bool, str]:
    """IsRunningImageAllowed for an image without signatures: the first requirement that
    does not allow it decides."""
    for requirement in requirements:
        if requirement.type == "reject":
            # prReject.isRunningImageAllowed names the image by transports.ImageName: the
            # transport, then the docker transport's StringWithinTransport, `//` and
            # reference.FamiliarString (`docker://busybox:latest`)
            return False, f"Running image docker://{ref.familiar} is rejected by policy."
        if requirement.type in SIGNATURE_REQUIREMENTS:
            return False, NO_SIGNATURE
        if requirement.type == "signedBaseLayer":
            return False, "signedBaseLayer not implemented yet!"
    return True, "insecureAcceptAnything"


def requirements_for(policy: Policy, scopes: list[str]) -> tuple[str, tuple[Requirement, ...]]:
    """The scope that decides among `scopes` (most specific first), or `default`, and its
    requirement list."""
    found = policy.transports.get(TRANSPORT) or {}
    for scope in scopes:
        if scope in found:
            return scope, found[scope]
    return "default", policy.default


def evaluate_policy(policy: Policy, ref: ImageReference) -> PolicyDecision:
    """The decision for pulling the logical reference `ref` over the docker transport."""
    scopes = policy.transports.get(TRANSPORT)
    if scopes is not None:
        for scope in policy_scopes(ref):
            if scope in scopes:
                allowed, reason = _verdict(ref, scopes[scope])
                return PolicyDecision(allowed, scope, reason, scopes[scope],
                                      needs_signatures(scopes[scope]))
    allowed, reason = _verdict(ref, policy.default)
    return PolicyDecision(allowed, "default", reason, policy.default,
                          needs_signatures(policy.default))
