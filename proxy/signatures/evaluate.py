"""A requirement list evaluated against an image's manifest and signatures.

This is `PolicyContext.IsRunningImageAllowed` (signature/policy_eval.go) for the docker
transport, without any I/O of its own but reading the key files the policy names:

- every requirement of the list must allow the image, in order; the first that does not
  decides the verdict and its reason;
- `signedBy` (policy_eval_signedby.go) looks at the simple-signing signatures only,
  `sigstoreSigned` (policy_eval_sigstore.go) at the sigstore attachments whose media type
  is the cosign signature type; for either, one accepted signature is enough; with none at
  all the reason is `A signature was required, but no signature exists`, with one rejected
  signature its reason, with several `None of the signatures were accepted, reasons: a;
  b`;
- a signature is accepted when it verifies against the policy's root of trust, its
  payload parses, its digest is the manifest's and `signedIdentity` accepts its identity
  for the *logical* reference (the one the user pulled, not the mirror's).

The signatures are given as the physical source yielded them: first the lookaside's
(`SimpleSigning`), then the attachments' layers (`SigstoreSignature`), as
docker_image_src.go's GetSignaturesWithFormat orders them. `signature_from_blob` reads a
lookaside or `dir:` signature file as `internal/signature.FromBlob` does.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from ..gojson import go_base64, go_quote
from ..policy import Requirement
from ..reference import ImageReference
from . import gpg, sigstore
from .identity import DEFAULT_IDENTITY, identity_matches
from .payload import (
    SIGSTORE_TYPE,
    SIMPLE_SIGNING_TYPE,
    InvalidSignature,
    manifest_matches,
    parse_payload,
)
from .sigstore import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIGNATURE_MEDIA_TYPE,
    FulcioRoot,
    PKIRoot,
    PublicKey,
    TrustRootError,
)

NO_SIGNATURE = "A signature was required, but no signature exists"


@dataclass(frozen=True)
class SimpleSigning:
    """A simple-signing (GPG) signature: the OpenPGP message as stored in the lookaside."""

    blob: bytes


@dataclass(frozen=True)
class SigstoreSignature:
    """One layer of a `sha256-<hex>.sig` attachment: its payload and annotations
    (`dev.cosignproject.cosign/signature`, and for Fulcio `dev.sigstore.cosign/certificate`,
    `.../chain`, `.../bundle`)."""

    payload: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)
    media_type: str = SIGNATURE_MEDIA_TYPE


Signature = SimpleSigning | SigstoreSignature


@dataclass(frozen=True)
class RequirementResult:
    """How one requirement of the list answered: `reason` is empty when it allowed."""

    type: str
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    """IsRunningImageAllowed: allowed, or refused with upstream's reason. `results` has one
    entry per requirement evaluated, in order (evaluation stops at the first refusal)."""

    allowed: bool
    reason: str
    results: tuple[RequirementResult, ...] = ()


ReadFile = Callable[[str], bytes]


def read_config_file(path: str) -> bytes:
    """`os.ReadFile`, failing with Go's text (`open PATH: no such file or directory`)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise OSError(f"read {path}: is a directory") from None
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise OSError(f"open {path}: {reason[:1].lower()}{reason[1:]}") from None


class _Rejected(Exception):
    """A signature not accepted; `str()` is the reason."""


# ---------------------------------------------------------------- shared rules


def _fields(requirement: Requirement) -> dict[str, Any]:
    return dict(requirement.fields)


def _identity(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    identity = fields.get("signedIdentity")
    return identity if isinstance(identity, Mapping) else DEFAULT_IDENTITY


def _check_contents(payload: bytes, signature_type: str, manifest: bytes, image: ImageReference,
                    identity: Mapping[str, Any]) -> None:
    """Parse a verified payload, then the digest, then the identity."""
    try:
        contents = parse_payload(payload, signature_type)
    except InvalidSignature as error:
        raise _Rejected(str(error)) from None
    if not manifest_matches(manifest, contents.manifest_digest):
        raise _Rejected(f"Signature for digest {contents.manifest_digest} does not match")
    if not identity_matches(identity, image, contents.docker_reference):
        raise _Rejected(
            f"Signature for identity {go_quote(contents.docker_reference)} is not accepted")


def _summary(rejections: list[str], no_signature: str = NO_SIGNATURE) -> str:
    if not rejections:
        return no_signature
    if len(rejections) == 1:
        return rejections[0]
    return "None of the signatures were accepted, reasons: " + "; ".join(rejections)


def _load_sources(read_file: ReadFile, *, path: str | None = None,
                  paths: Sequence[str] | None = None, data: bytes | None = None,
                  datas: Sequence[bytes] | None = None) -> list[bytes] | None:
    """`loadBytesFromConfigSources` for a parsed policy (exactly one source is set)."""
    try:
        if path:
            return [read_file(path)]
        if paths is not None:
            return [read_file(p) for p in paths]
    except OSError as error:
        raise _Rejected(str(error)) from None
    if data is not None:
        return [data]
    if datas is not None:
        return list(datas)
    return None


def _b64(value: Any) -> bytes | None:
    if value is None:
        return None
    return go_base64(str(value))


# ---------------------------------------------------------------- signedBy


def _signed_by_accepts(fields: Mapping[str, Any], image: ImageReference, manifest: bytes,
                       blob: bytes, read_file: ReadFile) -> None:
    key_type = fields.get("keyType")
    if key_type != "GPGKeys":
        raise _Rejected(f'Unimplemented "keyType" value {go_quote(str(key_type))}')
    keys = _load_sources(read_file, path=fields.get("keyPath"), paths=fields.get("keyPaths"),
                         data=_b64(fields.get("keyData")))
    if keys is None:
        raise _Rejected('Internal inconsistency: not exactly one of "keyPath", "keyPaths" and '
                        '"keyData" specified')
    try:
        verified = gpg.verify_simple_signing(keys, blob)
    except (InvalidSignature, ValueError) as error:
        raise _Rejected(str(error)) from None
    except (gpg.GPGUnavailable, OSError, subprocess.SubprocessError) as error:
        raise _Rejected(f"verifying with gnupg: {error}") from None
    _check_contents(verified.content, SIMPLE_SIGNING_TYPE, manifest, image, _identity(fields))


def _signed_by(fields: Mapping[str, Any], image: ImageReference, manifest: bytes,
               signatures: Sequence[Signature], read_file: ReadFile) -> str | None:
    rejections = []
    for signature in signatures:
        if not isinstance(signature, SimpleSigning):
            continue
        try:
            _signed_by_accepts(fields, image, manifest, signature.blob, read_file)
            return None
        except _Rejected as rejection:
            rejections.append(str(rejection))
    return _summary(rejections)


# ---------------------------------------------------------------- sigstoreSigned


@dataclass(frozen=True)
class _TrustRoot:
    public_keys: tuple[PublicKey, ...] | None
    fulcio: FulcioRoot | None
    rekor_keys: tuple[Any, ...] | None
    pki: PKIRoot | None


def _trust_root(fields: Mapping[str, Any], read_file: ReadFile) -> _TrustRoot:
    """prepareTrustRoot; raises `_Rejected` with its text."""
    def datas(key: str) -> list[bytes] | None:
        value = fields.get(key)
        return None if value is None else [go_base64(str(v)) for v in value]

    try:
        keys = _load_sources(read_file, path=fields.get("keyPath"), paths=fields.get("keyPaths"),
                             data=_b64(fields.get("keyData")), datas=datas("keyDatas"))
        public_keys = None
        if keys is not None:
            public_keys = tuple(sigstore.load_public_keys(keys))
            if not public_keys:
                raise _Rejected('Internal inconsistency: "keyPath", "keyPaths", "keyData" and '
                                '"keyDatas" produced no public keys')
        fulcio = None
        if isinstance(fields.get("fulcio"), Mapping):
            spec = fields["fulcio"]
            ca = _load_sources(read_file, path=spec.get("caPath"), data=_b64(spec.get("caData")))
            assert ca is not None  # parse_policy requires one of them
            fulcio = FulcioRoot(tuple(sigstore.load_ca_pool(ca[0], "Fulcio CA")),
                                str(spec.get("oidcIssuer", "")), str(spec.get("subjectEmail", "")))
        rekor = _load_sources(read_file, path=fields.get("rekorPublicKeyPath"),
                              paths=fields.get("rekorPublicKeyPaths"),
                              data=_b64(fields.get("rekorPublicKeyData")),
                              datas=datas("rekorPublicKeyDatas"))
        rekor_keys = None
        if rekor is not None:
            rekor_keys = tuple(sigstore.load_rekor_keys(rekor))
            if not rekor_keys:
                raise _Rejected('Internal inconsistency: "rekorPublicKeyPath", '
                                '"rekorPublicKeyPaths", "rekorPublicKeyData" and '
                                '"rekorPublicKeyDatas" produced no public keys')
        pki = None
        if isinstance(fields.get("pki"), Mapping):
            pki = _pki_root(fields["pki"], read_file)
    except TrustRootError as error:
        raise _Rejected(str(error)) from None
    return _TrustRoot(public_keys, fulcio, rekor_keys, pki)


def _pki_root(spec: Mapping[str, Any], read_file: ReadFile) -> PKIRoot:
    roots = _load_sources(read_file, path=spec.get("caRootsPath"),
                          data=_b64(spec.get("caRootsData")))
    assert roots is not None  # parse_policy requires one of them
    try:
        root_certs = sigstore.load_ca_pool(roots[0], "PKI CA Roots")
    except TrustRootError:
        raise _Rejected("error loading PKI CA Roots certificates") from None
    intermediates = _load_sources(read_file, path=spec.get("caIntermediatesPath"),
                                  data=_b64(spec.get("caIntermediatesData")))
    intermediate_certs: list[Any] = []
    if intermediates is not None:
        try:
            intermediate_certs = sigstore.parse_certificates(intermediates[0])
        except ValueError as error:
            raise _Rejected(f"loading trusted intermediate certificates: {error}") from None
    return PKIRoot(tuple(root_certs), tuple(intermediate_certs),
                   str(spec.get("subjectEmail", "")), str(spec.get("subjectHostname", "")))


def _sigstore_accepts(fields: Mapping[str, Any], image: ImageReference, manifest: bytes,
                      signature: SigstoreSignature, read_file: ReadFile,
                      now: datetime.datetime | None) -> None:
    root = _trust_root(fields, read_file)
    annotations = signature.annotations
    if SIGNATURE_ANNOTATION not in annotations:
        raise _Rejected(f"missing {SIGNATURE_ANNOTATION} annotation")
    base64_signature = annotations[SIGNATURE_ANNOTATION]
    payload = signature.payload
    keys: list[PublicKey] = []
    try:
        if root.public_keys is not None:
            if root.rekor_keys is not None:
                if BUNDLE_ANNOTATION not in annotations:
                    raise _Rejected(f"missing {BUNDLE_ANNOTATION} annotation")
                failures = []
                for candidate in root.public_keys:
                    try:
                        sigstore.verify_rekor_set(
                            list(root.rekor_keys), annotations[BUNDLE_ANNOTATION].encode(),
                            sigstore.public_key_pem(candidate), base64_signature, payload)
                    except InvalidSignature as error:
                        failures.append(str(error))
                        continue
                    keys.append(candidate)
                    break
                if not keys:
                    raise _Rejected("No public key verified against the RekorSET: "
                                    + ", ".join(failures))
            else:
                keys = list(root.public_keys)
        elif root.fulcio is not None:
            if BUNDLE_ANNOTATION not in annotations:
                raise _Rejected(f"missing {BUNDLE_ANNOTATION} annotation")
            if CERTIFICATE_ANNOTATION not in annotations:
                raise _Rejected(f"missing {CERTIFICATE_ANNOTATION} annotation")
            certificate = annotations[CERTIFICATE_ANNOTATION].encode()
            chain = annotations.get(CHAIN_ANNOTATION, "").encode()
            integrated = sigstore.verify_rekor_set(
                list(root.rekor_keys or ()), annotations[BUNDLE_ANNOTATION].encode(), certificate,
                base64_signature, payload)
            keys = [sigstore.verify_fulcio(root.fulcio, integrated, certificate, chain)]
        elif root.pki is not None:
            if CERTIFICATE_ANNOTATION not in annotations:
                raise _Rejected(f"missing {CERTIFICATE_ANNOTATION} annotation")
            keys = [sigstore.verify_pki(root.pki, annotations[CERTIFICATE_ANNOTATION].encode(),
                                        annotations.get(CHAIN_ANNOTATION, "").encode(), now)]
        sigstore.verify_payload_signature(keys, payload, base64_signature)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as error:
        # TypeError, UnsupportedAlgorithm: a certificate whose key cryptography cannot use
        raise _Rejected(str(error) or type(error).__name__) from None
    _check_contents(payload, SIGSTORE_TYPE, manifest, image, _identity(fields))


def _sigstore_signed(fields: Mapping[str, Any], image: ImageReference, manifest: bytes,
                     signatures: Sequence[Signature], read_file: ReadFile,
                     now: datetime.datetime | None) -> str | None:
    rejections = []
    non_sigstore = non_attachments = 0
    for signature in signatures:
        if not isinstance(signature, SigstoreSignature):
            non_sigstore += 1
            continue
        if signature.media_type != SIGNATURE_MEDIA_TYPE:
            non_attachments += 1
            continue
        try:
            _sigstore_accepts(fields, image, manifest, signature, read_file, now)
            return None
        except _Rejected as rejection:
            rejections.append(str(rejection))
    none = NO_SIGNATURE
    if non_sigstore or non_attachments:
        none = (f"{NO_SIGNATURE} ({non_sigstore} non-sigstore signatures, {non_attachments} "
                "sigstore non-signature attachments)")
    return _summary(rejections, none)


# ---------------------------------------------------------------- the list


def requirement_reason(requirement: Requirement, image: ImageReference, manifest: bytes,
                       signatures: Sequence[Signature], *, read_file: ReadFile = read_config_file,
                       now: datetime.datetime | None = None) -> str | None:
    """One requirement's `isRunningImageAllowed`: None when it allows the image, else
    upstream's reason."""
    fields = _fields(requirement)
    if requirement.type == "insecureAcceptAnything":
        return None
    if requirement.type == "reject":
        return f"Running image docker://{image.familiar} is rejected by policy."
    if requirement.type == "signedBy":
        return _signed_by(fields, image, manifest, signatures, read_file)
    if requirement.type == "sigstoreSigned":
        return _sigstore_signed(fields, image, manifest, signatures, read_file, now)
    if requirement.type == "signedBaseLayer":
        return "signedBaseLayer not implemented yet!"
    return f"Unknown policy requirement type {go_quote(requirement.type)}"


def evaluate_requirements(requirements: Sequence[Requirement], image: ImageReference,
                          manifest: bytes, signatures: Sequence[Signature], *,
                          read_file: ReadFile = read_config_file,
                          now: datetime.datetime | None = None) -> Verdict:
    """IsRunningImageAllowed for the logical reference `image` whose source served
    `manifest` (the exact bytes) and `signatures`. `read_file` reads the key, CA and Rekor
    files the policy names; `now` is the time PKI certificates are checked at (Fulcio
    certificates are checked at the Rekor SET's integrated time)."""
    if not requirements:
        return Verdict(False, "List of verification policy requirements must not be empty")
    results = []
    for requirement in requirements:
        reason = requirement_reason(requirement, image, manifest, signatures,
                                    read_file=read_file, now=now)
        results.append(RequirementResult(requirement.type, reason is None, reason or ""))
        if reason is not None:
            return Verdict(False, reason, tuple(results))
    return Verdict(True, "", tuple(results))


# ---------------------------------------------------------------- stored signatures


def signature_from_blob(blob: bytes) -> Signature:
    """`signature.FromBlob`: an OpenPGP message (simple signing, the lookaside format), or
    `\\x00<format>\\n<data>` (`dir:` and other storage). Raises ValueError with upstream's
    text for anything else."""
    if not blob:
        raise ValueError("empty signature blob")
    first = blob[0]
    if first in (0xA0, 0xA1, 0xA2, 0xA3, 0xC8, 0x90, 0x91, 0x92, 0x3D, 0xC4, 0x88, 0x89, 0x8A,
                 0x8B, 0xC2):
        return SimpleSigning(blob)
    if first == 0:
        format_bytes, newline, chunk = blob[1:].partition(b"\n")
        if not newline:
            raise ValueError("invalid signature format, missing newline")
        for byte in format_bytes:
            if byte < 32 or byte >= 0x7F:
                raise ValueError(f"invalid signature format, non-ASCII byte {byte:#x}")
        name = format_bytes.decode("ascii")
        if name == "simple-signing":
            return SimpleSigning(chunk)
        if name == "sigstore-json":
            return _sigstore_from_chunk(chunk)
        raise ValueError(f"unrecognized signature format {go_quote(name)}")
    raise ValueError(f"unrecognized signature format, starting with binary {first:#x}")


def _sigstore_from_chunk(chunk: bytes) -> SigstoreSignature:
    try:
        value = json.loads(chunk)
    except (ValueError, RecursionError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(value, dict):
        raise ValueError("json: cannot unmarshal into a sigstore signature")
    media_type = value.get("mimeType") or ""
    payload = go_base64(value.get("payload") or "")
    annotations = value.get("annotations") or {}
    return SigstoreSignature(payload, {str(k): str(v) for k, v in annotations.items()},
                             str(media_type))
