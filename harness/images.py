"""Test images generated on the fly and pushed over the distribution API.

Content is a deterministic function of a seed, so the same image pushed to a source and
its mirrors has identical digests everywhere, and a different seed gives divergent
content. Layers are real gzip'd tars (podman unpacks them); their payload is random, so
they do not compress and sizes mean what they say.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import ssl
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data),
                **extra}


@dataclass(frozen=True)
class Image:
    """A single-platform image: manifest, config and layers."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: tuple[str, str] = ("linux", "amd64")

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


@dataclass(frozen=True)
class ImageIndex:
    """A multi-architecture image: an OCI index over single-platform images."""

    manifest: Blob
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest


def _layer(rng: random.Random, size: int, number: int) -> Blob:
    payload = rng.randbytes(size)
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{number}/data.bin")
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    return Blob(OCI_LAYER, gzip.compress(tar_buffer.getvalue(), compresslevel=1, mtime=0))


def make_image(seed: str, layer_sizes: tuple[int, ...] = (4096, 16384),
               platform: tuple[str, str] = ("linux", "amd64")) -> Image:
    """A deterministic image: same seed and sizes, same digests."""
    rng = random.Random(f"{seed}/{platform}")
    layers = tuple(_layer(rng, size, n) for n, size in enumerate(layer_sizes))
    config = Blob(OCI_CONFIG, json.dumps({
        "architecture": platform[1], "os": platform[0],
        "config": {"Cmd": ["/bin/true"], "Labels": {"mirrorlab.seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [
            sha256(gzip.decompress(layer.data)) for layer in layers]},
        "history": [{"created_by": f"mirrorlab layer {n}"} for n in range(len(layers))],
    }, sort_keys=True).encode())
    manifest = Blob(OCI_MANIFEST, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }, sort_keys=True).encode())
    return Image(manifest, config, layers, platform)


def make_index(seed: str, platforms: tuple[tuple[str, str], ...] = (
        ("linux", "amd64"), ("linux", "arm64")),
        layer_sizes: tuple[int, ...] = (4096,)) -> ImageIndex:
    images = tuple(make_image(seed, layer_sizes, platform) for platform in platforms)
    manifest = Blob(OCI_INDEX, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor(
            platform={"os": image.platform[0], "architecture": image.platform[1]})
            for image in images],
    }, sort_keys=True).encode())
    return ImageIndex(manifest, images)


class RegistryClient:
    """Just enough of the push API to seed a registry (monolithic uploads)."""

    def __init__(self, base_url: str, ca_file: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _request(self, method: str, url: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def blob_exists(self, repo: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}")
        return status == 200

    def push_blob(self, repo: str, blob: Blob) -> None:
        if self.blob_exists(repo, blob.digest):
            return
        status, headers, body = self._request("POST", f"{self.base}/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise RuntimeError(f"starting upload to {repo}: {status} {body[:200]!r}")
        location = headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT", f"{location}{separator}digest={blob.digest}", blob.data,
            {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise RuntimeError(f"uploading {blob.digest} to {repo}: {status} {body[:200]!r}")

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        status, _, body = self._request(
            "PUT", f"{self.base}/v2/{repo}/manifests/{reference}", manifest.data,
            {"Content-Type": manifest.media_type})
        if status != 201:
            raise RuntimeError(f"pushing manifest {repo}:{reference}: {status} {body[:200]!r}")

    def push_image(self, repo: str, image: Image | ImageIndex, tag: str | None = None) -> None:
        """Push every blob and manifest; tag the top-level manifest when `tag` is given."""
        images = image.images if isinstance(image, ImageIndex) else (image,)
        for single in images:
            for blob in single.blobs:
                self.push_blob(repo, blob)
            self.push_manifest(repo, single.digest, single.manifest)
        self.push_manifest(repo, tag or image.digest, image.manifest)
