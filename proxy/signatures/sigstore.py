"""Sigstore signatures: public keys, Fulcio certificates, PKI certificates, Rekor SETs.

Follows signature/policy_eval_sigstore.go (prepareTrustRoot, isSignatureAccepted),
signature/internal/sigstore_payload.go (the blob signature over the payload),
signature/internal/rekor_set.go (VerifyRekorSET, offline: the SET's signature by a
trusted Rekor key, and the hashedrekord entry naming this key or certificate, this
signature and this payload), signature/fulcio_cert.go (the certificate chain at the SET's
integrated time, the OIDC issuer and the e-mail) and signature/pki_cert.go (the chain now,
e-mail and host name), with `cryptography` for every check. Error texts are upstream's.

Everything here is pure: inputs are bytes (PEM keys and certificates, the payload, the
annotations), outputs are public keys or an `InvalidSignature` / `TrustRootError`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtensionOID

from ..gojson import (
    Number,
    Object,
    as_bytes,
    as_int64,
    as_string,
    decode,
    go_base64,
    go_float,
    go_quote,
    go_quote_bytes,
    go_string_list,
    kind,
    walk_exact,
)
from .payload import InvalidSignature
from .x509chain import X509Error, email_addresses, verify_code_signing, verify_hostname

SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | object
"""What a PEM key file may hold; only the first three can verify a signature."""


class TrustRootError(ValueError):
    """The policy's keys, CA or Rekor key cannot be used (upstream's plain errors from
    prepareTrustRoot): every signature is rejected with this text."""


# ---------------------------------------------------------------- PEM, as encoding/pem


_PEM_BEGIN = re.compile(rb"(?:^|\n)-----BEGIN ([^\r\n]*?)-----[ \t]*\r?\n")


@dataclass(frozen=True)
class PemBlock:
    type: str
    der: bytes


def pem_decode(data: bytes) -> tuple[PemBlock | None, bytes]:
    """`pem.Decode`: the first well-formed block and what follows it, or None and the
    input. Headers are skipped; a block whose body is not base64 is passed over."""
    position = 0
    while True:
        begin = _PEM_BEGIN.search(data, position)
        if begin is None:
            return None, data
        kind = begin.group(1)
        end_marker = b"\n-----END " + kind + b"-----"
        body_start = begin.end()
        end = data.find(end_marker, body_start - 1)
        if end == -1:
            return None, data
        body = data[body_start:end]
        if b":" in body.split(b"\n\n", 1)[0] and b"\n\n" in body:
            body = body.split(b"\n\n", 1)[1]
        after = end + len(end_marker)
        line_end = data.find(b"\n", after)
        tail = data[after: line_end if line_end != -1 else len(data)].strip(b" \t\r")
        if tail:
            position = begin.end()
            continue
        rest = b"" if line_end == -1 else data[line_end + 1:]
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            position = begin.end()
            continue
        return PemBlock(kind.decode("latin-1"), der), rest


# ---------------------------------------------------------------- public keys


def load_public_key(pem: bytes) -> PublicKey:
    """`cryptoutils.UnmarshalPEMToPublicKey`: a `PUBLIC KEY` (PKIX) or `RSA PUBLIC KEY`
    (PKCS #1) block; raises ValueError with upstream's text."""
    block, _ = pem_decode(pem)
    if block is None:
        raise ValueError("PEM decoding failed")
    if block.type == "PUBLIC KEY":
        try:
            return serialization.load_der_public_key(block.der)
        except UnsupportedAlgorithm:
            raise ValueError("x509: unknown public key algorithm") from None
        except ValueError:
            try:
                serialization.load_der_public_key(_pkcs1_as_pkix(block.der))
            except (ValueError, UnsupportedAlgorithm):
                raise ValueError("x509: malformed public key") from None
            raise ValueError("x509: failed to parse public key (use ParsePKCS1PublicKey "
                             "instead for this key format)") from None
    if block.type == "RSA PUBLIC KEY":
        try:
            return serialization.load_der_public_key(_pkcs1_as_pkix(block.der))
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("x509: malformed PKCS#1 public key") from None
    raise ValueError(f"unknown Public key PEM file type: {block.type}. Are you passing the "
                     "correct public key?")


def _pkcs1_as_pkix(der: bytes) -> bytes:
    """Wrap a PKCS #1 RSAPublicKey in a SubjectPublicKeyInfo."""
    algorithm = bytes.fromhex("300d06092a864886f70d0101010500")
    bit_string = b"\x03" + _der_length(len(der) + 1) + b"\x00" + der
    body = algorithm + bit_string
    return b"\x30" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def public_key_der(key: PublicKey) -> bytes:
    """`x509.MarshalPKIXPublicKey`."""
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey |
                      ed25519.Ed25519PublicKey):
        raise ValueError("x509: unsupported public key type")
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_pem(key: PublicKey) -> bytes:
    body = base64.b64encode(public_key_der(key))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"


def load_public_keys(pems: Sequence[bytes]) -> list[PublicKey]:
    """prepareTrustRoot's public keys: `parsing public key N: ...`."""
    keys = []
    for index, pem in enumerate(pems, 1):
        try:
            keys.append(load_public_key(pem))
        except ValueError as error:
            raise TrustRootError(f"parsing public key {index}: {error}") from None
    return keys


def load_rekor_keys(pems: Sequence[bytes]) -> list[ec.EllipticCurvePublicKey]:
    keys = []
    for index, pem in enumerate(pems, 1):
        try:
            key = load_public_key(pem)
        except ValueError as error:
            raise TrustRootError(f"parsing Rekor public key {index}: {error}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TrustRootError(f"Rekor public key {index} is not using ECDSA")
        keys.append(key)
    return keys


# ---------------------------------------------------------------- the blob signature


def _asn1_two_integers(data: bytes) -> bool:
    """Does `data` start with a DER SEQUENCE of two INTEGERs (asn1.Unmarshal into
    struct{R, S *big.Int}, which allows trailing bytes)?"""
    def read(buffer: bytes, offset: int) -> tuple[int, int, int] | None:
        if offset + 2 > len(buffer):
            return None
        tag, first = buffer[offset], buffer[offset + 1]
        offset += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or offset + count > len(buffer):
                return None
            length = int.from_bytes(buffer[offset:offset + count], "big")
            if length < 0x80 or buffer[offset] == 0:
                return None
            offset += count
        if offset + length > len(buffer):
            return None
        return tag, offset, length

    outer = read(data, 0)
    if outer is None or outer[0] != 0x30:
        return False
    inner = data[outer[1]:outer[1] + outer[2]]
    offset = 0
    for _ in range(2):
        item = read(inner, offset)
        if item is None or item[0] != 0x02 or item[2] == 0:
            return False
        value = inner[item[1]:item[1] + item[2]]
        if len(value) > 1 and ((value[0] == 0 and value[1] < 0x80) or
                               (value[0] == 0xFF and value[1] >= 0x80)):
            return False
        offset = item[1] + item[2]
    return True


def _verify_one(key: PublicKey, payload: bytes, signature: bytes) -> str | None:
    """sigstore's verifier for the key type with SHA-256; None when valid, else its
    error text."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if _asn1_two_integers(signature):
            try:
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
                return None
            except CryptoInvalidSignature:
                return "invalid signature when validating ASN.1 encoded signature"
        if not signature or len(signature) > 132 or len(signature) % 2:
            return "ecdsa: Invalid IEEE_P1363 encoded bytes"
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                   int.from_bytes(signature[half:], "big"))
        try:
            key.verify(der, payload, ec.ECDSA(hashes.SHA256()))
            return None
        except CryptoInvalidSignature:
            return "invalid signature when validating IEEE_P1363 encoded signature"
    if isinstance(key, rsa.RSAPublicKey):
        try:
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            return None
        except CryptoInvalidSignature:
            return "crypto/rsa: verification error"
    if isinstance(key, ed25519.Ed25519PublicKey):
        try:
            key.verify(signature, payload)
            return None
        except CryptoInvalidSignature:
            return "failed to verify signature"
    return "unsupported public key type"


def verify_payload_signature(keys: Sequence[PublicKey], payload: bytes, base64_signature: str
                             ) -> None:
    """VerifySigstorePayload's cryptographic part: some key verifies the signature."""
    try:
        signature = go_base64(base64_signature)
    except ValueError as error:
        raise InvalidSignature(f"base64 decoding: {error}") from None
    if not keys:
        raise ValueError("Need at least one public key to verify the sigstore payload, but got 0")
    for key in keys:
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey |
                          ed25519.Ed25519PublicKey):
            # LoadVerifier fails before any key is tried.
            raise ValueError("unsupported public key type")
    failures = []
    for key in keys:
        failure = _verify_one(key, payload, signature)
        if failure is None:
            return
        failures.append(failure)
    raise InvalidSignature("cryptographic signature verification failed: " + ", ".join(failures))


# ---------------------------------------------------------------- Rekor SET


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS), as webpki.org/jsoncanonicalizer writes it, of a `gojson` value
    (written without recursion: the scanner takes 10,000 levels)."""
    out: list[str] = []
    pending: list[Any] = [value]  # values still to write, and `_Text` to write as it is
    while pending:
        item = pending.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif isinstance(item, Object):
            seen: dict[str, Any] = {}
            for key, member in item.pairs:
                if key in seen:
                    raise ValueError(f"Duplicate key: {key}")
                seen[key] = member
            ordered = sorted(seen.items(), key=lambda pair: pair[0].encode("utf-16-be"))
            pending.append(_Text("}"))
            for index, (key, member) in reversed(list(enumerate(ordered))):
                pending.append(member)
                pending.append(_Text(("," if index else "") + _canonical_string(key) + ":"))
            pending.append(_Text("{"))
        elif isinstance(item, list):
            pending.append(_Text("]"))
            for index, member in reversed(list(enumerate(item))):
                pending.append(member)
                if index:
                    pending.append(_Text(","))
            pending.append(_Text("["))
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif item is None:
            out.append("null")
        elif isinstance(item, Number):
            out.append(_es6_number(float(item.text)))
        else:
            out.append(_canonical_string(str(item)))
    return "".join(out).encode("utf-8")


class _Text(str):
    """Output of `canonical_json` already written (a bracket, a comma, a key)."""


def _canonical_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _es6_number(number: float) -> str:
    if not math.isfinite(number):
        raise ValueError("NaN/Infinity not allowed in JSON")
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    text = repr(number)
    if "e" not in text and 1e-6 <= abs(number) < 1e21:
        return text
    return go_float(number).replace("e-0", "e-").replace("e+0", "e+")


def _field(obj: Any, name: str) -> Any:
    """encoding/json's key lookup for a struct field: the exact key, else a
    case-insensitive one; the last occurrence wins."""
    if not isinstance(obj, Object):
        return None
    found = None
    exact = [v for k, v in obj.pairs if k == name]
    if exact:
        return exact[-1]
    for key, value in obj.pairs:
        if key.lower() == name.lower():
            found = value
    return found


def _struct(value: Any, what: str) -> Object | None:
    """A JSON value decoded into a Go struct pointer: null is nil; anything but an
    object is a type error."""
    if value is None:
        return None
    if not isinstance(value, Object):
        raise ValueError(f"json: cannot unmarshal {kind(value)} into Go value of type {what}")
    return value


def _string_field(value: Any, what: str, go_type: str) -> str | None:
    """A JSON string for a Go struct field (null: absent); anything else is Go's type
    error naming the field and its Go type."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"json: cannot unmarshal {kind(value)} into Go struct field {what} "
                         f"of type {go_type}")
    return value


def _pointer_string(value: Any, what: str) -> str | None:
    return _string_field(value, what, "string")


def _bytes_field(value: Any, what: str) -> bytes | None:
    text = _string_field(value, what, "[]uint8")
    return None if text is None else go_base64(text)


def verify_rekor_set(rekor_keys: Sequence[ec.EllipticCurvePublicKey], rekor_set: bytes,
                     key_or_cert_pem: bytes, base64_signature: str, payload: bytes
                     ) -> datetime.datetime:
    """`VerifyRekorSET`: the SET's integrated time when it verifies; raises
    `InvalidSignature` with upstream's text."""
    signed_entry: list[bytes | None] = [None]
    set_payload: list[Any] = [None]
    try:
        walk_exact(decode(rekor_set), {
            "SignedEntryTimestamp": lambda v: signed_entry.__setitem__(0, as_bytes(v)),
            "Payload": lambda v: set_payload.__setitem__(0, v),
        })
    except ValueError as error:
        raise InvalidSignature(str(error)) from None
    try:
        canonical = canonical_json(set_payload[0])
    except ValueError as error:
        raise InvalidSignature(f"canonicalizing Rekor SET JSON: {error}") from None
    digest = hashlib.sha256(canonical).digest()
    if not any(_ecdsa_verify_prehashed(key, digest, signed_entry[0] or b"")
               for key in rekor_keys):
        raise InvalidSignature("cryptographic signature verification of Rekor SET failed")

    fields: dict[str, Any] = {"body": None, "integratedTime": 0, "logIndex": 0, "logID": ""}
    try:
        walk_exact(decode(canonical), {
            "body": lambda v: fields.__setitem__("body", as_bytes(v)),
            "integratedTime": lambda v: fields.__setitem__(
                "integratedTime", as_int64(v, current=fields["integratedTime"])),
            "logIndex": lambda v: fields.__setitem__(
                "logIndex", as_int64(v, current=fields["logIndex"])),
            "logID": lambda v: fields.__setitem__("logID", as_string(v, fields["logID"])),
        })
    except ValueError as error:
        raise InvalidSignature(f"parsing Rekor SET payload: {error}") from None

    try:
        body = decode(fields["body"] or b"null")
        record = _struct(body, "internal.RekorHashedrekord")
        entry_kind = _field(record, "kind")
        if entry_kind is not None and not isinstance(entry_kind, str):
            raise ValueError(f"json: cannot unmarshal {kind(entry_kind)} into Go struct field "
                             ".kind of type string")
        if entry_kind != "hashedrekord":
            raise ValueError(f"invalid kind value: {go_quote(entry_kind or '')}")
        api_version = _pointer_string(_field(record, "apiVersion"), ".apiVersion")
        spec = _field(record, "spec")
    except ValueError as error:
        raise InvalidSignature(f"decoding the body of a Rekor SET payload: {error}") from None
    if api_version is None:
        raise InvalidSignature("missing Rekor SET Payload API version")
    if api_version != "0.0.1":
        raise InvalidSignature("unsupported Rekor SET Payload hashedrekord version "
                               f"{go_quote(api_version)}")
    try:
        schema = _struct(spec, "internal.RekorHashedrekordV001Schema")
        signature = _struct(_field(schema, "signature"),
                            "internal.RekorHashedrekordV001SchemaSignature")
        data = _struct(_field(schema, "data"), "internal.RekorHashedrekordV001SchemaData")
        public_key = _struct(_field(signature, "publicKey"),
                             "internal.RekorHashedrekordV001SchemaSignaturePublicKey")
        signature_content = _bytes_field(_field(signature, "content"),
                                         "RekorHashedrekordV001SchemaSignature.content")
        key_content = _bytes_field(_field(public_key, "content"),
                                   "RekorHashedrekordV001SchemaSignaturePublicKey.content")
        hash_obj = _struct(_field(data, "hash"), "internal.RekorHashedrekordV001SchemaDataHash")
        algorithm = _pointer_string(_field(hash_obj, "algorithm"),
                                    "RekorHashedrekordV001SchemaDataHash.algorithm")
        value = _pointer_string(_field(hash_obj, "value"),
                                "RekorHashedrekordV001SchemaDataHash.value")
    except ValueError as error:
        raise InvalidSignature(f"decoding hashedrekod spec: {error}") from None

    if signature is None:
        raise InvalidSignature('Missing "signature" field in hashedrekord')
    if public_key is None:
        raise InvalidSignature('Missing "signature.publicKey" field in hashedrekord')
    rekor_block, rest = pem_decode(key_content or b"")
    if rekor_block is None:
        raise InvalidSignature("publicKey in Rekor SET is not in PEM format")
    if rest:
        raise InvalidSignature("publicKey in Rekor SET has trailing data")
    ours, rest = pem_decode(key_or_cert_pem)
    if ours is None:
        raise InvalidSignature("public key or cert to be matched against publicKey in Rekor SET "
                               "is not in PEM format")
    if rest:
        raise InvalidSignature("public key or cert to be matched against publicKey in Rekor SET "
                               "has trailing data")
    if rekor_block.der != ours.der:
        raise InvalidSignature("publicKey in Rekor SET does not match")
    try:
        signature_bytes = go_base64(base64_signature)
    except ValueError as error:
        raise InvalidSignature(f"decoding signature base64: {error}") from None
    if (signature_content or b"") != signature_bytes:
        raise InvalidSignature(
            "signature in Rekor SET does not match: "
            f"{go_quote_bytes(signature_content or b'')} vs. {go_quote_bytes(signature_bytes)}")
    if data is None:
        raise InvalidSignature('Missing "data" field in hashedrekord')
    if hash_obj is None:
        raise InvalidSignature('Missing "data.hash" field in hashedrekord')
    if algorithm is None:
        raise InvalidSignature('Missing "data.hash.algorithm" field in hashedrekord')
    if algorithm != "sha256":
        raise InvalidSignature(
            f'Unexpected "data.hash.algorithm" value {go_quote_bytes(algorithm.encode())}')
    if value is None:
        raise InvalidSignature('Missing "data.hash.value" field in hashedrekord')
    try:
        expected = _go_hex_decode(value)
    except ValueError as error:
        raise InvalidSignature(f'Invalid "data.hash.value" field in hashedrekord: {error}') \
            from None
    if expected != hashlib.sha256(payload).digest():
        raise InvalidSignature("payload in Rekor SET does not match")
    return datetime.datetime.fromtimestamp(fields["integratedTime"], datetime.UTC)


def _go_hex_decode(text: str) -> bytes:
    """`hex.DecodeString` with its error texts."""
    out = bytearray()
    for index in range(0, len(text) - 1, 2):
        pair = text[index:index + 2]
        for char in pair:
            if char not in "0123456789abcdefABCDEF":
                raise ValueError(f"encoding/hex: invalid byte: U+{ord(char):04X} {_go_rune(char)}")
        out.append(int(pair, 16))
    if len(text) % 2:
        if text[-1] not in "0123456789abcdefABCDEF":
            raise ValueError(f"encoding/hex: invalid byte: U+{ord(text[-1]):04X} "
                             f"{_go_rune(text[-1])}")
        raise ValueError("encoding/hex: odd length hex string")
    return bytes(out)


def _go_rune(char: str) -> str:
    """`%q` of a rune."""
    if char == "'":
        return "'\\''"
    quoted = go_quote(char)[1:-1]
    return f"'{quoted}'"


def _ecdsa_verify_prehashed(key: ec.EllipticCurvePublicKey, digest: bytes, signature: bytes
                            ) -> bool:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    try:
        key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return True
    except (CryptoInvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------- certificates


def parse_certificates(pem: bytes) -> list[x509.Certificate]:
    """`cryptoutils.UnmarshalCertificatesFromPEM`."""
    result = []
    remaining = pem.strip()
    while remaining:
        block, remaining = pem_decode(remaining)
        if block is None:
            raise ValueError("error during PEM decoding")
        try:
            result.append(x509.load_der_x509_certificate(block.der))
        except ValueError as error:
            raise ValueError(f"x509: malformed certificate: {error}") from None
    return result


def _leaf(pem: bytes) -> x509.Certificate:
    try:
        certs = parse_certificates(pem)
    except ValueError as error:
        raise InvalidSignature(f"parsing leaf certificate: {error}") from None
    if not certs:
        raise InvalidSignature("no certificate found in signature certificate data")
    if len(certs) > 1:
        raise InvalidSignature("unexpected multiple certificates present in signature "
                               "certificate data")
    return certs[0]


def _untrusted_intermediates(chain_pem: bytes) -> list[x509.Certificate]:
    """Every certificate of the chain annotation but the last (taken to be the root, which
    only the policy may supply)."""
    if not chain_pem:
        return []
    try:
        chain = parse_certificates(chain_pem)
    except ValueError as error:
        raise InvalidSignature(f"loading certificate chain: {error}") from None
    return chain[:-1] if len(chain) > 1 else []


def load_ca_pool(pem: bytes, what: str) -> list[x509.Certificate]:
    """`CertPool.AppendCertsFromPEM`: every certificate block that parses; none is an
    error (`error loading Fulcio CA certificates`)."""
    certs = []
    remaining = pem
    while True:
        block, remaining = pem_decode(remaining)
        if block is None:
            break
        if block.type != "CERTIFICATE":
            continue
        try:
            certs.append(x509.load_der_x509_certificate(block.der))
        except ValueError:
            continue
    if not certs:
        raise TrustRootError(f"error loading {what} certificates")
    return certs


@dataclass(frozen=True)
class FulcioRoot:
    ca: tuple[x509.Certificate, ...]
    oidc_issuer: str
    subject_email: str


@dataclass(frozen=True)
class PKIRoot:
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    subject_email: str
    subject_hostname: str


def fulcio_issuer(cert: x509.Certificate) -> str:
    """`fulcioIssuerInCertificate`: the v1 (raw) or v2 (UTF8String) issuer extension."""
    v1 = v2 = None
    for ext in cert.extensions:
        if ext.oid == OID_ISSUER_V1:
            v1 = _unrecognized(ext).decode("utf-8", errors="replace")
        elif ext.oid == OID_ISSUER_V2:
            raw = _unrecognized(ext)
            v2 = _der_utf8_string(raw)
    if v1 is not None and v2 is not None:
        if v1 != v2:
            raise InvalidSignature("inconsistent OIDC issuer extension values: "
                                   f"v1 {go_quote_bytes(v1.encode())}, "
                                   f"v2 {go_quote_bytes(v2.encode())}")
        return v1
    if v1 is not None:
        return v1
    if v2 is not None:
        return v2
    raise InvalidSignature("Fulcio certificate is missing the issuer extension")


def _unrecognized(ext: x509.Extension[x509.ExtensionType]) -> bytes:
    value = ext.value
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    return value.public_bytes()


def _der_utf8_string(raw: bytes) -> str:
    """asn1.Unmarshal into a Go string (UTF8String, PrintableString, IA5String...)."""
    if len(raw) < 2 or raw[0] not in (0x0C, 0x13, 0x16, 0x14, 0x1A):
        raise InvalidSignature("invalid ASN.1 in OIDC issuer v2 extension: asn1: structure error: "
                               "tags don't match")
    length = raw[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(raw[2:2 + count], "big")
        offset = 2 + count
    if offset + length > len(raw):
        raise InvalidSignature("invalid ASN.1 in OIDC issuer v2 extension: asn1: syntax error: "
                               "data truncated")
    if offset + length < len(raw):
        raise InvalidSignature("invalid ASN.1 in OIDC issuer v2 extension, trailing data")
    return raw[offset:offset + length].decode("utf-8", errors="replace")


def verify_fulcio(root: FulcioRoot, at: datetime.datetime, cert_pem: bytes, chain_pem: bytes
                  ) -> PublicKey:
    """`verifyFulcioCertificateAtTime`: the certificate's public key."""
    intermediates = _untrusted_intermediates(chain_pem)
    leaf = _leaf(cert_pem)
    try:
        verify_code_signing(leaf, root.ca, intermediates, at,
                            frozenset({ExtensionOID.SUBJECT_ALTERNATIVE_NAME}))
    except X509Error as error:
        raise InvalidSignature(f"veryfing leaf certificate failed: {error}") from None
    issuer = fulcio_issuer(leaf)
    if issuer != root.oidc_issuer:
        raise InvalidSignature(f"Unexpected Fulcio OIDC issuer {go_quote(issuer)}")
    emails = email_addresses(leaf)
    if root.subject_email not in emails:
        raise InvalidSignature(f"Required email {go_quote(root.subject_email)} not found "
                               f"(got {go_string_list(emails)})")
    return leaf.public_key()


def verify_pki(root: PKIRoot, cert_pem: bytes, chain_pem: bytes,
               now: datetime.datetime | None = None) -> PublicKey:
    """`verifyPKI`: the chain to the policy's roots now (intermediates from the policy
    and the chain annotation), then e-mail and host name."""
    intermediates = [*root.intermediates, *_untrusted_intermediates(chain_pem)]
    leaf = _leaf(cert_pem)
    try:
        verify_code_signing(leaf, root.roots, intermediates,
                            now or datetime.datetime.now(datetime.UTC))
    except X509Error as error:
        raise InvalidSignature(f"veryfing leaf certificate failed: {error}") from None
    if root.subject_email:
        emails = email_addresses(leaf)
        if root.subject_email not in emails:
            raise InvalidSignature(f"Required email {go_quote(root.subject_email)} not found "
                                   f"(got {go_string_list(emails)})")
    if root.subject_hostname:
        try:
            verify_hostname(leaf, root.subject_hostname)
        except X509Error as error:
            raise InvalidSignature(f"Unexpected subject hostname: {error}") from None
    return leaf.public_key()

