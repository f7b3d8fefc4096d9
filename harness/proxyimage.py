"""The proxy's container image, built without any base image (for offline machines).

The rootfs holds the host's Python interpreter and standard library, the shared libraries
they link, mirrorlab's packages and the installed files of its runtime dependencies (copied,
so the build needs no network): enough to run `python3 -m mirrorlab.cli`, as the top-level
`Containerfile` produces elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from .backends import Podman, _libraries

PROXY_IMAGE = "localhost/mirrorlab/proxy:latest"
_SKIP = {"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
         "__pycache__", "pydoc_data"}


def runtime_distributions(name: str) -> list[metadata.Distribution]:
    """The installed distributions `name` needs at run time (no extras), `name` excluded."""
    seen: dict[str, metadata.Distribution] = {}
    pending = [name]
    while pending:
        current = metadata.distribution(pending.pop())
        for text in current.requires or ():
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(
                    {"extra": ""}):
                continue  # an extra, or not for this Python
            key = requirement.name.lower().replace("_", "-")
            if key not in seen:
                seen[key] = metadata.distribution(requirement.name)
                pending.append(requirement.name)
    return list(seen.values())


def build_proxy_image(podman: Podman, workdir: Path, source: Path) -> str:
    if podman.run("image", "exists", PROXY_IMAGE, check=False).returncode == 0:
        return PROXY_IMAGE
    context = workdir / "proxy-image"
    root = context / "rootfs"
    shutil.rmtree(context, ignore_errors=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, root / "usr/lib/python3", ignore=lambda _, names: [
        n for n in names if n in _SKIP])
    binary = Path(sys.executable).resolve()
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(binary, root / "usr/bin/python3")
    # The `mirrorlab` package: its own files, and the top-level folders it links to.
    shutil.copytree(source / "mirrorlab", root / "app/mirrorlab", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dist in runtime_distributions("mirrorlab"):
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file)))
            if path.is_file() and ".." not in file.parts:
                target = root / "app" / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    objects = [str(binary), *map(str, (root / "usr/lib/python3/lib-dynload").glob("*.so")),
               *map(str, (root / "app").rglob("*.so"))]
    for library in {lib for obj in objects for lib in _libraries(obj)}:
        target = root / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy(os.path.realpath(library), target)
    certs = Path("/etc/ssl/certs/ca-certificates.crt")
    if certs.exists():
        (root / "etc/ssl/certs").mkdir(parents=True)
        shutil.copy(certs, root / "etc/ssl/certs/")
    (root / "tmp").mkdir()
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\n"
        "ENV PYTHONHOME=/usr PYTHONPATH=/app:/usr/lib/python3:/usr/lib/python3/lib-dynload\n"
        'ENTRYPOINT ["/usr/bin/python3", "-m", "mirrorlab.cli"]\n'
        'CMD ["serve", "--root", "/node", "--listen", "0.0.0.0:5000"]\n')
    podman.run("build", "-t", PROXY_IMAGE, str(context), timeout=900)
    return PROXY_IMAGE
