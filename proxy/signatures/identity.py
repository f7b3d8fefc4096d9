"""`signedIdentity`: which identity in a signature is accepted for the logical reference.

Follows signature/policy_reference_match.go. The image's identity is the logical
reference the user pulled (a docker transport reference: a tag or a digest, never both),
never the mirror that served it. The signature's `docker-reference` is parsed with
ParseNormalizedNamed; a value that does not parse matches nothing.

- `matchExact`: both carry a tag or digest and read the same.
- `matchRepoDigestOrExact` (the default): a tag pull needs the same text; a digest pull
  needs the same repository (the digest itself is checked against the manifest).
- `matchRepository`: the same repository.
- `exactReference` / `exactRepository`: the configured reference or repository instead of
  the image's.
- `remapIdentity`: when the image's repository is `prefix` or lies under `prefix/`, the
  first occurrence of `prefix` in its full text is replaced by `signedPrefix` (the result
  must be canonical), then `matchRepoDigestOrExact` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..reference import ImageReference, InvalidReference, parse_canonical, parse_normalized

DEFAULT_IDENTITY: Mapping[str, Any] = {"type": "matchRepoDigestOrExact"}


def _name_only(ref: ImageReference) -> bool:
    return ref.tag is None and ref.digest is None


def _parse(text: str) -> ImageReference | None:
    try:
        return parse_normalized(text)
    except InvalidReference:
        return None


def _repo_digest_or_exact(intended: ImageReference, signed: ImageReference) -> bool:
    if _name_only(signed):
        return False
    if intended.tag is not None:  # NamedTagged, with or without a digest
        return str(signed) == str(intended)
    if intended.digest is not None:
        return signed.name == intended.name
    return False


def _remap(prefix: str, signed_prefix: str, ref: ImageReference) -> ImageReference | None:
    """`remapReferencePrefix`; None when the rewritten reference is not valid."""
    name = ref.name
    if len(name) < len(prefix):
        return ref
    if len(name) == len(prefix):
        if name != prefix:
            return ref
    elif not (name.startswith(prefix) and name[len(prefix)] == "/"):
        return ref
    try:
        return parse_canonical(str(ref).replace(prefix, signed_prefix, 1))
    except InvalidReference:
        return None


def identity_matches(identity: Mapping[str, Any], image: ImageReference, signed: str) -> bool:
    """Does `signedIdentity` (as written in policy.json) accept the signature's
    `docker-reference` `signed` for the logical reference `image`?"""
    kind = identity.get("type")
    signature = _parse(signed)
    if signature is None:
        return False
    if kind == "matchExact":
        if _name_only(image) or _name_only(signature):
            return False
        return str(signature) == str(image)
    if kind == "matchRepoDigestOrExact":
        return _repo_digest_or_exact(image, signature)
    if kind == "matchRepository":
        return signature.name == image.name
    if kind == "exactReference":
        intended = _parse(str(identity.get("dockerReference", "")))
        if intended is None or _name_only(intended) or _name_only(signature):
            return False
        return str(signature) == str(intended)
    if kind == "exactRepository":
        intended = _parse(str(identity.get("dockerRepository", "")))
        return intended is not None and signature.name == intended.name
    if kind == "remapIdentity":
        remapped = _remap(str(identity.get("prefix", "")), str(identity.get("signedPrefix", "")),
                          image)
        return remapped is not None and _repo_digest_or_exact(remapped, signature)
    return False
