"""`mirrorlab check --release-image`: one file out of the release payload image's layers.

The payload is pulled through the same plan as every image (so a disconnected payload is
read from its mirror): its walk says which source served it; its layers are downloaded
from there under the same fallback rules, digest checked, newest layer first, until one
holds `release-manifests/image-references` (a later layer's copy wins, a whiteout ends
the search). Layers are tar, tar+gzip (or bzip2, xz); zstd cannot be read here.
"""

from __future__ import annotations

import tarfile
import tempfile

from .attempts import PullWalk
from .check_walk import ImageWalk, PlatformCheck, Walker
from .errors import MirrorlabError
from .fallback import FallbackMode
from .outcomes import aggregate_error
from .steps import Step

FILE_LIMIT = 16 * 1024 * 1024


def _platform(walker: Walker, walk: ImageWalk) -> PlatformCheck | None:
    """The platform whose layers are read: `--platform`, else linux/amd64, else the first."""
    readable = [c for c in walk.platforms if c.descriptors and c.error is None
                and (c.manifest is None or c.manifest.ok)]
    for check in readable:
        if check.platform is None or walker.platform is not None:
            return check
        if (check.platform.os, check.platform.architecture) == ("linux", "amd64"):
            return check
    return readable[0] if readable else None


def _member(tar: tarfile.TarFile, wanted: str) -> tuple[bool, bytes | None]:
    """(whether this layer decides, the file's bytes): a file, or a whiteout of it."""
    directory, _, base = wanted.rpartition("/")
    for info in tar:
        name = info.name.lstrip("/").removeprefix("./")
        if name == f"{directory}/.wh.{base}" or name == f"{directory}/.wh..wh..opq":
            return True, None
        if name != wanted or not info.isfile():
            continue
        if info.size > FILE_LIMIT:
            raise MirrorlabError(f"{wanted} is larger than {FILE_LIMIT // (1024 * 1024)} MiB")
        handle = tar.extractfile(info)
        return True, handle.read() if handle is not None else b""
    return False, None


async def read_payload_file(walker: Walker, walk: ImageWalk, wanted: str) -> bytes:
    """The bytes of `wanted` in the payload image; `MirrorlabError` naming the image and
    why when the payload does not pull or holds no such file."""
    what = f"--release-image {walk.reference}"
    check = _platform(walker, walk)
    top = walk.top
    if check is None or top is None or top.served_by is None or walk.plan is None:
        raise MirrorlabError(f"{what}: its image does not pull, so {wanted} cannot be read "
                             "(its verdict says why)")
    home = check.served_by or top.served_by
    plan = [Step(walk.reference, source) for source in walk.plan.sources]
    blob_walk = (PullWalk([s.source_name for s in walker.fallback.candidates(
        plan, home, "blob")[1:]]) if walker.fallback.mode is FallbackMode.BLOB else None)
    layers = [d for d in check.descriptors if d.what == "layer"]
    for layer in reversed(layers):
        with tempfile.TemporaryFile() as sink:
            fetch = await walker.blob(plan, home, layer, blob_walk, sink)
            if not fetch.ok:
                raise MirrorlabError(f"{what}: layer {layer.digest}: "
                                     f"{aggregate_error(fetch.attempts)}")
            sink.seek(0)
            try:
                with tarfile.open(fileobj=sink, mode="r:*") as tar:
                    decided, data = _member(tar, wanted)
            except (tarfile.TarError, EOFError, OSError, ValueError) as error:
                kind = layer.media_type or "no media type"
                raise MirrorlabError(f"{what}: layer {layer.digest} ({kind}) is not a tar "
                                     f"archive mirrorlab reads: {error}") from None
        if decided:
            if data is None:
                break
            return data
    raise MirrorlabError(f"{what}: no {wanted} in its layers (is it a release payload?)")
