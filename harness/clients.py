"""The real clients of a lab: podman with a private store and no machine configuration."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path


class PodmanClient:
    """`podman pull` through the proxy; nothing touches the machine's default store."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "registries.conf").write_text("")
        self.env = {**os.environ, "HOME": str(workdir),
                    "CONTAINERS_REGISTRIES_CONF": str(workdir / "registries.conf")}
        digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:10]
        self.runroot = f"/tmp/mirrorlab-client-{digest}"  # podman: under 50 characters
        self.base = ["podman", "--root", str(workdir / "store"), "--runroot", self.runroot,
                     "--storage-driver", "vfs"]

    def pull(self, ref: str, on_line: Callable[[str], None] | None = None, *,
             cert_dir: str | None = None) -> subprocess.CompletedProcess[str]:
        """Pull from the proxy: over HTTPS verified with the CA in `cert_dir`, or over plain
        HTTP; `on_line` sees podman's output as it comes."""
        tls = ["--cert-dir", cert_dir] if cert_dir else ["--tls-verify=false"]
        command = [*self.base, "pull", *tls, ref]
        if on_line is None:
            return subprocess.run(command, capture_output=True, text=True, env=self.env,
                                  timeout=600, check=False)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=self.env) as process:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                on_line(line.rstrip("\n"))
            process.wait(timeout=600)
        return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")

    def digest(self, ref: str) -> str | None:
        result = subprocess.run([*self.base, "image", "inspect", "--format", "{{.Digest}}", ref],
                                capture_output=True, text=True, env=self.env, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def images(self) -> list[str]:
        result = subprocess.run([*self.base, "images", "-q"], capture_output=True, text=True,
                                env=self.env, check=True)
        return result.stdout.split()

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)
