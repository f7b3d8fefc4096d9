"""Signature verification as containers/image performs it for `signedBy` and
`sigstoreSigned` (go.podman.io/image/v5 signature/): pure functions of bytes.

- `evaluate_requirements(requirements, image, manifest, signatures)` is
  IsRunningImageAllowed for one requirement list: a `Verdict` with upstream's reason;
- `SimpleSigning` (a lookaside blob, verified with gnupg) and `SigstoreSignature` (an
  attachment layer: payload, annotations, media type) are the signatures a source yields;
  `signature_from_blob` reads a stored blob;
- the parts: `payload` (the signed JSON), `identity` (signedIdentity), `sigstore` (keys,
  Fulcio, PKI, Rekor SET), `gpg` (OpenPGP through gnupg), `x509chain` (Go's chain rules).
"""

from .evaluate import (
    NO_SIGNATURE,
    RequirementResult,
    Signature,
    SigstoreSignature,
    SimpleSigning,
    Verdict,
    evaluate_requirements,
    read_config_file,
    requirement_reason,
    signature_from_blob,
)
from .identity import identity_matches
from .payload import InvalidSignature, manifest_digest, parse_payload

__all__ = [
    "NO_SIGNATURE",
    "InvalidSignature",
    "RequirementResult",
    "Signature",
    "SigstoreSignature",
    "SimpleSigning",
    "Verdict",
    "evaluate_requirements",
    "identity_matches",
    "manifest_digest",
    "parse_payload",
    "read_config_file",
    "requirement_reason",
    "signature_from_blob",
]
