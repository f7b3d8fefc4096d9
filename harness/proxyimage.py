"""The proxy's container image, built without any base image (for offline machines).

The rootfs holds the host's Python interpreter and standard library, the shared libraries
they link, and mirrorlab installed with `pip install --target`: enough to run
`python3 -m proxy.cli`, and what the top-level `Containerfile` produces elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from .backends import Podman, _libraries

PROXY_IMAGE = "localhost/mirrorlab/proxy:latest"
_SKIP = {"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
         "__pycache__", "pydoc_data"}


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
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
                    "--target", str(root / "app"), str(source)], check=True,
                   capture_output=True)
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
        'ENTRYPOINT ["/usr/bin/python3", "-m", "proxy.cli"]\n'
        'CMD ["serve", "--root", "/node", "--listen", "0.0.0.0:5000"]\n')
    podman.run("build", "-t", PROXY_IMAGE, str(context), timeout=900)
    return PROXY_IMAGE
