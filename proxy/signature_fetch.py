"""Reading an image's signatures from the source that served its manifest.

As containers/image's docker source does (`docker/docker_image_src.go`:
`GetSignaturesWithFormat`, `getSignaturesFromLookaside`, `getSignaturesFromSigstoreAttachments`):
first the simple-signing blobs of the lookaside that registries.d gives for the source's
own name (`signature-1`, `-2`, ... until the first one missing), then, when registries.d
enables `use-sigstore-attachments` for that name, the layers of the `sha256-<hex>.sig`
manifest in the source's repository (a missing one means no signatures). Any other error
fails the pull; no other source is asked for signatures.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict

from .errors import MirrorlabError
from .failures import describe, outcome_of_error, redacted
from .outcomes import Outcome, SourceFailure
from .plan import PullSource
from .registries_d import SignatureStorage
from .signatures import Signature, SigstoreSignature, signature_from_blob
from .upstream import Upstreams, read_limited, status_message

MAX_SIGNATURES = 128
"""containers/image stops reading a lookaside past this many (`maxLookasideSignatures`)."""
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class SignatureReadError(MirrorlabError):
    """Signatures could not be read: containers/image fails the pull."""


async def _lookaside(upstreams: Upstreams, storage: SignatureStorage, digest: str
                     ) -> list[Signature]:
    found: list[Signature] = []
    for index in range(MAX_SIGNATURES):
        address = storage.lookaside_url(digest, index)
        parts = urlsplit(address)
        url = redacted(address)  # what messages name
        if parts.scheme == "file":
            try:
                with open(unquote(parts.path), "rb") as handle:
                    blob = handle.read(MAX_SIGNATURE_SIZE + 1)
            except FileNotFoundError:
                return found
            except OSError as error:
                raise SignatureReadError(f"reading signature from {url}: "
                                         f"{os.strerror(error.errno or 0)}") from None
        elif parts.scheme in ("http", "https"):
            try:
                status, blob = await upstreams.get_url(address, MAX_SIGNATURE_SIZE)
            except (SourceFailure, MirrorlabError) as error:  # `Get "URL": dial tcp ...`
                raise SignatureReadError(str(error)) from None
            if status == 404:
                return found
            if status != 200:
                raise SignatureReadError(f"reading signature from {url}: status {status}")
        else:
            raise SignatureReadError(f"unsupported lookaside scheme in {url}")
        if len(blob) > MAX_SIGNATURE_SIZE:
            raise SignatureReadError(f"signature {url} is larger than 4 MiB")
        try:
            found.append(signature_from_blob(blob))
        except ValueError as error:
            raise SignatureReadError(f"parsing signature {url}: {error}") from None
    return found


async def _attachments(upstreams: Upstreams, source: PullSource, storage: SignatureStorage,
                       digest: str) -> list[Signature]:
    tag = storage.attachment_tag(digest)
    base = source.reference
    sig_source = replace(source, reference=replace(base, tag=tag, digest=None))
    try:
        manifest = await upstreams.manifest(sig_source, [OCI_MANIFEST])
    except MirrorlabError as error:
        raise SignatureReadError(f"reading signatures from {sig_source.reference}: "
                                 f"{error}") from None
    except SourceFailure as failure:
        if failure.outcome == Outcome.NOT_FOUND:
            return []
        raise SignatureReadError(f"reading signatures from {sig_source.reference}: "
                                 f"{failure}") from None
    try:
        layers = json.loads(manifest.body).get("layers") or []
    except (ValueError, AttributeError, RecursionError):
        raise SignatureReadError(f"{sig_source.reference}: the attachment manifest is not "
                                 "an OCI manifest") from None
    found: list[Signature] = []
    for layer in layers[:MAX_SIGNATURES]:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise SignatureReadError(f"{sig_source.reference}: a layer without a digest")
        blob_digest = layer["digest"]
        path = f"/v2/{base.path}/blobs/{blob_digest}"
        try:
            async with await upstreams.request(source, "GET", path, CIMultiDict()) as response:
                body = await read_limited(response, MAX_SIGNATURE_SIZE)
                status = response.status
        except Exception as error:
            if outcome_of_error(error) is None:
                raise
            raise SignatureReadError(f"reading signature {blob_digest} from {base.name}: "
                                     f"{describe(error)}") from None
        if status != 200:
            _, message = status_message(status, body)
            raise SignatureReadError(f"reading signature {blob_digest} from {base.name}: "
                                     f"{message}")
        algorithm, _, hexdigest = blob_digest.partition(":")
        if algorithm != "sha256" or hashlib.sha256(body).hexdigest() != hexdigest:
            raise SignatureReadError(f"signature {blob_digest} from {base.name} does not "
                                     "match its digest")
        annotations = layer.get("annotations") or {}
        found.append(SigstoreSignature(
            body, {str(k): str(v) for k, v in annotations.items()} if isinstance(
                annotations, dict) else {},
            str(layer.get("mediaType") or "")))
    return found


async def fetch_signatures(upstreams: Upstreams, source: PullSource,
                           storage: SignatureStorage, digest: str) -> list[Signature]:
    """Every signature of the manifest `digest` as the source that served it holds them:
    the lookaside's first, then the sigstore attachments'."""
    found = await _lookaside(upstreams, storage, digest)
    if storage.use_sigstore_attachments:
        found += await _attachments(upstreams, source, storage, digest)
    return found
