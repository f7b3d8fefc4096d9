"""Simple-signing payloads: parsed and validated as containers/image does.

Both signature formats sign the same JSON document (docs/containers-signature.5.md):

    {"critical": {"type": T, "image": {"docker-manifest-digest": D},
                  "identity": {"docker-reference": R}},
     "optional": {"creator": ..., "timestamp": ...}}

with T `atomic container signature` for GPG simple signing (signature/simple.go,
untrustedSignature.strictUnmarshalJSON) and `cosign container image signature` for
sigstore (signature/internal/sigstore_payload.go). Parsing is paranoid: the exact keys,
no duplicates, a `timestamp` that is an integer, a digest go-digest accepts. Only after
the cryptographic check succeeds is the payload parsed, then its digest compared with the
manifest, then its identity matched (VerifySigstorePayload, verifyAndExtractSignature).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..gojson import (
    Handler,
    JSONError,
    as_any,
    as_float,
    as_string,
    decode,
    go_quote,
    walk,
    walk_exact,
)
from ..reference import InvalidReference, validate_digest

SIMPLE_SIGNING_TYPE = "atomic container signature"
SIGSTORE_TYPE = "cosign container image signature"


class InvalidSignature(ValueError):
    """upstream's InvalidSignatureError: the signature or its payload is malformed or does
    not verify. The text is containers/image's."""


@dataclass(frozen=True)
class UntrustedPayload:
    """The principal contents of a payload, not yet matched against anything."""

    manifest_digest: str
    docker_reference: str
    creator: str | None = None
    timestamp: int | None = None


def parse_payload(data: bytes, signature_type: str) -> UntrustedPayload:
    """Parse a payload whose `critical.type` must be `signature_type`; raises
    `InvalidSignature` with upstream's text."""
    try:
        return _parse(data, signature_type)
    except JSONError as error:
        raise InvalidSignature(str(error)) from None


def _parse(data: bytes, signature_type: str) -> UntrustedPayload:
    critical: list[Any] = []
    optional: list[Any] = []
    walk_exact(decode(data), {"critical": critical.append, "optional": optional.append})
    creator: str | None = None
    timestamp: int | None = None
    # cosign writes "optional": null when there are no annotations; sigstore accepts it,
    # simple signing does not (it asks for an object).
    if not (signature_type == SIGSTORE_TYPE and optional[0] is None):
        # creator into a string, timestamp into a float64, any other key into an `any`
        decoders: dict[str, Handler] = {"creator": as_string, "timestamp": as_float}
        found: dict[str, Any] = {}

        def optional_field(key: str) -> Handler:
            def store(value: Any) -> None:
                decoder: Handler = decoders.get(key, as_any)
                found[key] = decoder(value)
            return store

        walk(optional[0], optional_field)
        if "creator" in found:
            creator = found["creator"]
        if "timestamp" in found:
            if not found["timestamp"].is_integer():
                raise InvalidSignature("Field optional.timestamp is not an integer")
            timestamp = int(found["timestamp"])

    fields: dict[str, Any] = {"type": "", "image": None, "identity": None}

    def setter(key: str, convert: bool) -> Any:
        def put(value: Any) -> None:
            fields[key] = as_string(value, fields[key]) if convert else value
        return put

    walk_exact(critical[0], {"type": setter("type", True), "image": setter("image", False),
                             "identity": setter("identity", False)})
    if fields["type"] != signature_type:
        raise InvalidSignature(f"Unrecognized signature type {fields['type']}")

    digest = [""]
    walk_exact(fields["image"], {
        "docker-manifest-digest": lambda value: digest.__setitem__(0, as_string(value, digest[0]))})
    try:
        validate_digest(digest[0])
    except InvalidReference as error:
        raise InvalidSignature(
            f"invalid docker-manifest-digest value {go_quote(digest[0])}: {error}") from None

    reference = [""]
    walk_exact(fields["identity"], {
        "docker-reference": lambda value: reference.__setitem__(
            0, as_string(value, reference[0]))})
    return UntrustedPayload(digest[0], reference[0], creator, timestamp)


def manifest_digest(manifest: bytes) -> str:
    """`manifest.Digest`: SHA-256 of the manifest bytes (schema 1 signed manifests, whose
    digest strips the JWS signatures, are not supported; see `manifest_matches`)."""
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def manifest_matches(manifest: bytes, expected: str) -> bool:
    """`manifest.MatchesDigest`: the canonical (SHA-256) digest compared as text, so a
    SHA-512 digest in a signature never matches."""
    return manifest_digest(manifest) == expected
