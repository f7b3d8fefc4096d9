"""policy.json: strict parsing and the docker-transport decision for a logical reference.

The policy is looked up on the *logical* reference (what the user asked for), never on
the mirror that serves it. Exactly one requirement list applies, the most specific scope
that exists; all its requirements must allow (AND). `signedBy` and `sigstoreSigned` are
parsed in full but mirrorlab does not verify signatures yet, so they reject with that
reason rather than pretend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PARSER_FAILURES, ConfigError, parser_failure
from .reference import ImageReference, InvalidReference, parse_normalized

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


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    scope: str
    """The scope whose list decided: a docker scope key, `""`, or `default`."""
    reason: str
    requirements: tuple[Requirement, ...] = ()


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


def _exactly_one(obj: Mapping[str, Any], keys: tuple[str, ...], kind: str) -> None:
    present = [key for key in keys if key in obj]
    if len(present) != 1:
        raise ConfigError(f"{kind} must specify exactly one of {', '.join(keys)}")


def _docker_ref(text: str, *, needs_identity: bool) -> None:
    try:
        ref = parse_normalized(text)
    except InvalidReference as error:
        raise ConfigError(f'Invalid reference "{text}": {error}') from None
    if needs_identity and ref.tag is None and ref.digest is None:
        raise ConfigError(f'Reference "{text}" must contain a tag or digest')


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
            _string(obj, key)
    else:
        raise ConfigError(f'Unknown policy reference match type "{kind}"')
    return ("signedIdentity", dict(obj))


def _requirement(value: Any) -> Requirement:
    obj = _object(value, "policy requirement")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ConfigError('Mandatory field "type" is missing')
    fields: list[tuple[str, Any]] = []
    if kind in ("insecureAcceptAnything", "reject"):
        _check_keys(obj, {"type"})
    elif kind == "signedBy":
        _check_keys(obj, {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"},
                    {"keyType"})
        key_type = _string(obj, "keyType")
        if key_type not in ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs"):
            raise ConfigError(f'Unknown key type "{key_type}"')
        _exactly_one(obj, ("keyPath", "keyPaths", "keyData"), "signedBy")
        fields = [(k, obj[k]) for k in ("keyType", "keyPath", "keyPaths", "keyData") if k in obj]
        if "signedIdentity" in obj:
            fields.append(_signed_identity(obj["signedIdentity"]))
    elif kind == "sigstoreSigned":
        keys = ("keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki")
        rekor = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
                 "rekorPublicKeyDatas")
        _check_keys(obj, {"type", "signedIdentity", *keys, *rekor})
        _exactly_one(obj, keys, "sigstoreSigned")
        if sum(key in obj for key in rekor) > 1:
            raise ConfigError(f"sigstoreSigned may specify at most one of {', '.join(rekor)}")
        if "fulcio" in obj and not any(key in obj for key in rekor):
            raise ConfigError("sigstoreSigned with fulcio requires a rekor public key")
        fields = [(k, obj[k]) for k in (*keys, *rekor) if k in obj]
        if "signedIdentity" in obj:
            fields.append(_signed_identity(obj["signedIdentity"]))
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


def _verdict(ref: ImageReference, requirements: tuple[Requirement, ...]) -> tuple[bool, str]:
    for requirement in requirements:
        if requirement.type == "reject":
            return False, f"Running image docker://{ref} is rejected by policy."
        if requirement.type in ("signedBy", "sigstoreSigned"):
            return False, (
                f"{requirement.type} requires signature verification, which mirrorlab "
                "does not perform yet"
            )
        if requirement.type == "signedBaseLayer":
            return False, "signedBaseLayer is not implemented"
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
                return PolicyDecision(allowed, scope, reason, scopes[scope])
    allowed, reason = _verdict(ref, policy.default)
    return PolicyDecision(allowed, "default", reason, policy.default)
