"""policy.json: strict parsing and the docker-transport decision for a logical reference.

The policy is looked up on the *logical* reference (what the user asked for), never on
the mirror that serves it. Exactly one requirement list applies, the most specific scope
that exists; all its requirements must allow (AND).

The file is read as containers/image reads it (signature/policy_config.go,
policy_config_sigstore.go, signature/internal/json.go): `json.Unmarshal` first checks the
syntax of the whole document, then the strict decoders walk it in document order and the
first problem met is the error, with upstream's text (Go's encoding/json texts for syntax
and type errors: `gojson` reads the document). mirrorlab only adds where it is: the file,
the list (`transports.docker["scope"]: `) and, for a syntax error, the line.

`signedBy` and `sigstoreSigned` are parsed as strictly as upstream parses them. Their
verdict needs the image's manifest and signatures: `mirrorlab.proxy.signatures.
evaluate_requirements` gives it from the decision's `requirements`. `evaluate_policy` alone,
for callers that fetch no signatures, answers what containers/image answers for an image
without signatures (`A signature was required, but no signature exists`) and sets
`needs_signatures` when the verdict would depend on them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .gojson import (
    Handler,
    JSONError,
    JSONSyntaxError,
    NumberTooLong,
    Object,
    TooDeep,
    as_bytes,
    as_string,
    decode,
    go_quote,
    kind,
    type_error,
    walk,
    walk_exact,
)
from .reference import (
    DOMAIN_PATTERN,
    ImageReference,
    InvalidReference,
    parse_normalized,
    validate_digest,
)

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


# ---------------------------------------------------------------- Go's encoding/json
#
# The document is read by `gojson` (Go's scanner, decoders and texts); what is here is
# policy.json's own: where a syntax error is, and the types of its fields.


def _decode_document(data: bytes) -> Any:
    """The document's value; a syntax error as its text after `line N: `. Nesting deeper
    than Go's limit and integers longer than Python's keep mirrorlab's texts, those of
    every reader of outside input (tests/test_malformed_files.py)."""
    try:
        return decode(data, digit_limit=sys.get_int_max_str_digits())
    except TooDeep:
        raise ConfigError("invalid JSON: nested too deeply") from None
    except NumberTooLong as error:
        raise ConfigError(f"invalid JSON: {error}") from None
    except JSONSyntaxError as error:
        line = data.count(b"\n", 0, error.offset) + 1
        raise ConfigError(f"line {line}: {error}") from None


class _Fields:
    """The values decoders set, by key; `got` is every key seen (upstream's gotX)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.got: set[str] = set()

    def into(self, key: str, decode: Callable[[Any], Any]) -> Handler:
        def handler(value: Any) -> None:
            self.got.add(key)
            self.values[key] = decode(value)
        return handler

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


def _go_named_string(go_type: str) -> Callable[[Any], str]:
    return lambda value: as_string(value, go_type=go_type)


def _go_strings(value: Any) -> list[str] | None:
    """Decoding into a Go `[]string`: `null` is nil, a `null` item is empty."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise type_error(value, "[]string")
    return [as_string(item) for item in value]


def _go_bytes(value: Any) -> str | None:
    """Decoding into a Go `[]byte` (base64); the string is kept as written, `null` is nil."""
    if as_bytes(value) is None:
        return None
    return str(value)


def _go_bytes_list(value: Any) -> list[str] | None:
    """Decoding into a Go `[][]byte`: `null` is nil, a `null` item is empty."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise type_error(value, "[][]uint8")
    return [_go_bytes(item) or "" for item in value]


def _raw(value: Any) -> Any:
    """A json.RawMessage: kept as it is (`null` too, which is not nil)."""
    return value


def _type_field(value: Any, struct: str, field_type: str) -> str:
    """`json.Unmarshal(data, &prCommon)` (or prmCommon), plain encoding/json: for an
    object the last `type` key matched case-insensitively (a `null` one ignored), a
    value of another kind is the first error; `null` sets nothing."""
    if value is None:
        return ""
    if not isinstance(value, Object):
        raise type_error(value, f"signature.{struct}")
    found = ""
    for key, item in value.pairs:
        if len(key) != 4 or not key.isascii() or key.lower() != "type" or item is None:
            continue
        if not isinstance(item, str):
            raise ConfigError(f"json: cannot unmarshal {kind(item)} into Go struct field "
                              f"{struct}.type of type {field_type}")
        found = item
    return found


# ---------------------------------------------------------------- policy.json


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
    raise ConfigError(f"prefix {go_quote(text)} is not valid")


_IDENTITY_FIELDS = {"matchExact": (), "matchRepoDigestOrExact": (), "matchRepository": (),
                    "exactReference": ("dockerReference",),
                    "exactRepository": ("dockerRepository",),
                    "remapIdentity": ("prefix", "signedPrefix")}


def _signed_identity(value: Any) -> dict[str, Any]:
    """newPolicyReferenceMatchFromJSON: the type (plain decoding), then the strict
    decoder of that type, then its constructor's checks."""
    kind = _type_field(value, "prmCommon", "signature.prmTypeIdentifier")
    if kind not in _IDENTITY_FIELDS:
        raise ConfigError(f"Unknown policy reference match type {go_quote(kind)}")
    fields = _Fields()
    handlers = {"type": fields.into("type", _go_named_string("signature.prmTypeIdentifier"))}
    for key in _IDENTITY_FIELDS[kind]:
        handlers[key] = fields.into(key, as_string)
    walk_exact(value, handlers)
    if kind == "exactReference":
        _identity_reference(fields["dockerReference"], "dockerReference", needs_identity=True)
    elif kind == "exactRepository":
        _identity_reference(fields["dockerRepository"], "dockerRepository",
                            needs_identity=False)
    elif kind == "remapIdentity":
        _remap_prefix(fields["prefix"])
        _remap_prefix(fields["signedPrefix"])
    return dict(fields.values)


def _identity_reference(text: str, key: str, *, needs_identity: bool) -> None:
    """newPRMExactReference / newPRMExactRepository."""
    try:
        ref = parse_normalized(text)
    except InvalidReference as error:
        raise ConfigError(f"Invalid format of {key} {go_quote(text)}: {error}") from None
    if needs_identity and ref.tag is None and ref.digest is None:
        raise ConfigError(f"{key} {go_quote(text)} contains neither a tag nor digest")


_KEY_TYPES = ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs")


def _key_type(value: Any) -> str:
    """sbKeyType.UnmarshalJSON: a string (`null` is empty) of the known values."""
    text = as_string(value)
    if text not in _KEY_TYPES:
        raise ConfigError(f"Unrecognized keyType value {go_quote(text)}")
    return text


def _signed_by(value: Any) -> list[tuple[str, Any]]:
    """prSignedBy.UnmarshalJSON, then newPRSignedBy."""
    fields = _Fields()
    handlers = {"type": fields.into("type", _go_named_string("signature.prTypeIdentifier")),
                "keyType": fields.into("keyType", _key_type),
                "keyPath": fields.into("keyPath", as_string),
                "keyPaths": fields.into("keyPaths", _go_strings),
                "keyData": fields.into("keyData", _go_bytes),
                "signedIdentity": fields.into("signedIdentity", _raw)}
    walk(value, handlers.get)
    identity = (_signed_identity(fields["signedIdentity"])
                if "signedIdentity" in fields.got else None)
    options = [key for key in ("keyPath", "keyPaths", "keyData") if key in fields.got]
    if not options:
        raise ConfigError("Exactly one of keyPath, keyPaths and keyData must be specified, "
                          "none of them present")
    if len(options) > 1:
        raise ConfigError("Exactly one of keyPath, keyPaths and keyData must be specified, "
                          "more than one present")
    key_type = fields["keyType"] or ""
    if key_type not in _KEY_TYPES:
        raise ConfigError(f"invalid keyType {go_quote(key_type)}")
    option = options[0]
    if not (fields[option] if option == "keyPath" else fields[option] is not None):
        raise ConfigError("exactly one of keyPath, keyPaths and keyData must be specified")
    result: list[tuple[str, Any]] = [("keyType", key_type), (option, fields[option])]
    if identity is not None:
        result.append(("signedIdentity", identity))
    return result


def _path_or_data(fields: _Fields, path: str, data: str, *, required: bool) -> None:
    """A file or inline bytes, never both (and one of them when `required`), in
    upstream's words (`policy_config_sigstore.go`)."""
    if fields[path] and fields[data] is not None:
        raise ConfigError(f"{path} and {data} cannot be used simultaneously")
    if required and not fields[path] and fields[data] is None:
        raise ConfigError(f"At least one of {path} and {data} must be specified")


def _fulcio(value: Any) -> dict[str, Any]:
    """prSigstoreSignedFulcio.UnmarshalJSON, then newPRSigstoreSignedFulcio."""
    fields = _Fields()
    walk(value, {"caPath": fields.into("caPath", as_string),
                  "caData": fields.into("caData", _go_bytes),
                  "oidcIssuer": fields.into("oidcIssuer", as_string),
                  "subjectEmail": fields.into("subjectEmail", as_string)}.get)
    _path_or_data(fields, "caPath", "caData", required=True)
    if not fields["oidcIssuer"]:
        raise ConfigError("oidcIssuer not specified")
    if not fields["subjectEmail"]:
        raise ConfigError("subjectEmail not specified")
    return {key: item for key, item in fields.values.items() if item is not None}


def _pki(value: Any) -> dict[str, Any]:
    """prSigstoreSignedPKI.UnmarshalJSON, then newPRSigstoreSignedPKI."""
    fields = _Fields()
    walk(value, {"caRootsPath": fields.into("caRootsPath", as_string),
                  "caRootsData": fields.into("caRootsData", _go_bytes),
                  "caIntermediatesPath": fields.into("caIntermediatesPath", as_string),
                  "caIntermediatesData": fields.into("caIntermediatesData", _go_bytes),
                  "subjectEmail": fields.into("subjectEmail", as_string),
                  "subjectHostname": fields.into("subjectHostname", as_string)}.get)
    _path_or_data(fields, "caRootsPath", "caRootsData", required=True)
    _path_or_data(fields, "caIntermediatesPath", "caIntermediatesData", required=False)
    if not fields["subjectEmail"] and not fields["subjectHostname"]:
        raise ConfigError("At least one of subjectEmail, subjectHostname must be specified")
    return {key: item for key, item in fields.values.items() if item is not None}


_SIGSTORE_KEYS = ("keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki")
_REKOR_KEYS = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
               "rekorPublicKeyDatas")
_NOT_EMPTY = {"keyPaths": "keyPaths", "keyDatas": "keyDatas",
              "rekorPublicKeyPaths": "rekorPublickeyPaths",
              "rekorPublicKeyDatas": "rekorPublickeyDatas"}
"""The list options that must have entries, in the order upstream applies them, and the
name its error gives each (`rekorPublickey…`, as upstream spells it)."""


def _sigstore_signed(value: Any) -> list[tuple[str, Any]]:
    """prSigstoreSigned.UnmarshalJSON: the walk (fulcio and pki checked where they
    stand), signedIdentity, the options in upstream's order, newPRSigstoreSigned."""
    fields = _Fields()
    decoders: dict[str, Callable[[Any], Any]] = {
        "type": _go_named_string("signature.prTypeIdentifier"),
        "keyPath": as_string, "keyPaths": _go_strings, "keyData": _go_bytes,
        "keyDatas": _go_bytes_list, "fulcio": _fulcio,
        "rekorPublicKeyPath": as_string, "rekorPublicKeyPaths": _go_strings,
        "rekorPublicKeyData": _go_bytes, "rekorPublicKeyDatas": _go_bytes_list,
        "pki": _pki, "signedIdentity": _raw}
    walk(value, {key: fields.into(key, decode) for key, decode in decoders.items()}.get)
    identity = (_signed_identity(fields["signedIdentity"])
                if "signedIdentity" in fields.got else None)
    for key, shown in _NOT_EMPTY.items():
        if key in fields.got and not fields[key]:
            raise ConfigError(f'"{shown}" contains no entries')

    def given(key: str) -> bool:
        if key in ("fulcio", "pki"):
            return key in fields.got
        return bool(fields[key]) if key.endswith("Path") else fields[key] is not None

    if sum(map(given, _SIGSTORE_KEYS)) != 1:
        raise ConfigError("exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, and pki "
                          "must be specified")
    rekor = sum(map(given, _REKOR_KEYS))
    if rekor > 1:
        raise ConfigError("at most one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas can be used simultaneously")
    if given("fulcio") and rekor == 0:
        raise ConfigError("At least one of rekorPublickeyPath, rekorPublicKeyPaths, "
                          "rekorPublickeyData and rekorPublicKeyDatas must be specified if "
                          "fulcio is used")
    if given("pki") and rekor > 0:
        raise ConfigError("rekorPublickeyPath, rekorPublicKeyPaths, rekorPublickeyData and "
                          "rekorPublicKeyDatas are not supported for pki")
    result = [(key, fields[key]) for key in (*_SIGSTORE_KEYS, *_REKOR_KEYS) if given(key)]
    if identity is not None:
        result.append(("signedIdentity", identity))
    return result


def _signed_base_layer(value: Any) -> list[tuple[str, Any]]:
    fields = _Fields()
    walk_exact(value, {
        "type": fields.into("type", _go_named_string("signature.prTypeIdentifier")),
        "baseLayerIdentity": fields.into("baseLayerIdentity", _raw)})
    return [("baseLayerIdentity", _signed_identity(fields["baseLayerIdentity"]))]


def _type_only(value: Any) -> list[tuple[str, Any]]:
    walk_exact(value, {"type": _go_named_string("signature.prTypeIdentifier")})
    return []


_REQUIREMENT_TYPES: dict[str, Callable[[Any], list[tuple[str, Any]]]] = {
    "insecureAcceptAnything": _type_only, "reject": _type_only, "signedBy": _signed_by,
    "signedBaseLayer": _signed_base_layer, "sigstoreSigned": _sigstore_signed}


def _requirement(value: Any) -> Requirement:
    """newPolicyRequirementFromJSON: the type (plain decoding), then that type's strict
    decoder."""
    kind = _type_field(value, "prCommon", "signature.prTypeIdentifier")
    parse = _REQUIREMENT_TYPES.get(kind)
    if parse is None:
        raise ConfigError(f"Unknown policy requirement type {go_quote(kind)}")
    return Requirement(kind, tuple(parse(value)))


def _requirements(value: Any) -> tuple[Requirement, ...]:
    """PolicyRequirements.UnmarshalJSON: an array (`null` is an empty one), not empty,
    each entry parsed in order."""
    if value is not None and not isinstance(value, list):
        raise type_error(value, "[]json.RawMessage")
    if not value:
        raise ConfigError("List of verification policy requirements must not be empty")
    return tuple(_requirement(item) for item in value)


_ATOMIC_SCOPE = re.compile(r"[^/]*(/[^:/]*(/[^:/]*(:[^:/]*)?)?)?")


def _is_digest(text: str) -> bool:
    try:
        validate_digest(text)
    except InvalidReference:
        return False
    return True


def _clean_absolute_path(scope: str) -> bool:
    """An absolute path, not `/`, in filepath.Clean's form (dir, oci, oci-archive, sif)."""
    if not scope.startswith("/") or scope == "/":
        return False
    parts: list[str] = []
    for part in scope.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return scope == "/" + "/".join(parts)


_SCOPE_CHECKS: dict[str, Callable[[str], bool]] = {
    # ValidatePolicyConfigurationScope of the transports podman and skopeo register
    # (transports/alltransports); `""` is never checked, a transport not here takes any
    # scope (docker and the stubbed ostree: every string; containers-storage: not modelled)
    "atomic": lambda scope: _ATOMIC_SCOPE.fullmatch(scope) is not None,
    "docker-daemon": lambda scope: not _is_digest(scope),
    "dir": _clean_absolute_path,
    "oci": _clean_absolute_path,
    "oci-archive": _clean_absolute_path,
    "sif": _clean_absolute_path,
    "docker-archive": lambda scope: False,
    "tarball": lambda scope: False,
}


def parse_policy(text: str | bytes, path: str = "") -> Policy:
    """Parse policy.json as containers/image does (NewPolicyFromBytes): the syntax of the
    whole document first, then the strict decoders in document order; the first problem
    is the error, in upstream's words."""
    data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    document = _decode_document(data)
    default: list[tuple[Requirement, ...]] = []
    transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}

    def default_list(value: Any) -> None:
        default.append(_requirements(value))

    def transport_map(value: Any) -> None:
        walk(value, lambda name: lambda scopes: transport_scopes(name, scopes))

    def transport_scopes(name: str, value: Any) -> None:
        check = _SCOPE_CHECKS.get(name)
        parsed = transports[name] = {}

        def scope_list(scope: str) -> Handler | None:
            if scope != "" and check is not None and not check(scope):
                return None

            def handler(requirements: Any) -> None:
                try:
                    parsed[scope] = _requirements(requirements)
                except (ConfigError, JSONError) as error:
                    raise ConfigError(
                        f"transports.{name}[{go_quote(scope)}]: {error}") from None
            return handler

        walk(value, scope_list)

    try:
        walk(document, {"default": default_list, "transports": transport_map}.get)
    except JSONError as error:
        raise ConfigError(str(error)) from None
    if not default:
        raise ConfigError("Default policy is missing")
    return Policy(default=default[0], transports=transports, path=path)


def load_policy(path: str) -> Policy:
    """Read and parse policy.json; the error names the file (NewPolicyFromFile)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no policy.json file found at {path}") from None
    except OSError as error:
        raise ConfigError(f'reading policy "{path}": {error}') from None
    try:
        return parse_policy(data, path)
    except ConfigError as error:
        raise ConfigError(f"invalid policy in {go_quote(path)}: {error}") from None


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
