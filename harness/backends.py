"""Where lab registries run: as `docker-registry` processes, or as podman containers.

No public image can be pulled here, so the container backend builds a small image from the
`docker-registry` binary (it needs only libc); elsewhere `REGISTRY_IMAGE` (default the
official `registry:2`) is used as is. Containers run with runc, host networking and lowered
ulimits, which is what podman needs on these machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .registry import REGISTRY_BINARY, RegistryProcess

LOCAL_IMAGE = "localhost/mirrorlab/registry:2.8.2"
RUNTIME_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=20000:20000",
                 "--ulimit", "nproc=4096:4096"]
"""What `podman run` needs on these machines (crun fails on their hybrid cgroups)."""
RUN_FLAGS = [*RUNTIME_FLAGS, "--network", "host"]


@dataclass(frozen=True)
class Handle:
    """A running registry, as recorded in the lab's state file."""

    kind: str
    ident: str
    """The PID of a process, or the container id."""


class Podman:
    """podman with the lab's own store, so nothing touches the machine's default one."""

    def __init__(self, workdir: Path) -> None:
        digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:10]
        self.runroot = f"/tmp/mirrorlab-{digest}"  # podman wants a short runroot
        self.base = ["podman", "--root", str(workdir / "podman-store"), "--runroot",
                     self.runroot, "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]

    def run(self, *args: str, timeout: float = 300, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])}: {result.stderr.strip()[-500:]}")
        return result


def build_registry_image(podman: Podman, workdir: Path) -> str:
    """`localhost/mirrorlab/registry:2.8.2` from the installed binary (about 25 MB)."""
    if os.environ.get("REGISTRY_IMAGE"):
        return os.environ["REGISTRY_IMAGE"]
    if podman.run("image", "exists", LOCAL_IMAGE, check=False).returncode == 0:
        return LOCAL_IMAGE
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (run `make setup`)")
    context = workdir / "registry-image"
    root = context / "rootfs"
    for directory in ("bin", "etc/docker/registry", "etc/ssl/certs", "var/lib/registry", "tmp"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, root / "bin/registry")
    for library in _libraries(binary):
        target = root / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(library), target)
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/")
    (root / "etc/nsswitch.conf").write_text("hosts: files dns\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/registry\n")
    (root / "etc/docker/registry/config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}},
        "http": {"addr": ":5000"}}))
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nVOLUME [\"/var/lib/registry\"]\nEXPOSE 5000\n"
        'ENTRYPOINT ["/bin/registry"]\nCMD ["serve", "/etc/docker/registry/config.yml"]\n')
    podman.run("build", "-t", LOCAL_IMAGE, str(context))
    return LOCAL_IMAGE


def _libraries(binary: str) -> list[str]:
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    found = []
    for line in output.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                found.append(part)
                break
    return found


def containers_work(podman: Podman, image: str) -> tuple[bool, str]:
    """Can podman run a container here? (and if not, why)"""
    if shutil.which("podman") is None:
        return False, "podman is not installed"
    result = podman.run("run", "--rm", *RUN_FLAGS, image, "--version", timeout=120,
                        check=False)
    if result.returncode != 0:
        return False, result.stderr.strip().splitlines()[-1] if result.stderr else "failed"
    return True, ""


class ProcessBackend:
    name = "process"

    def start(self, registry: RegistryProcess) -> Handle:
        registry.start()
        assert registry.pid is not None
        return Handle("process", str(registry.pid))


class ContainerBackend:
    name = "container"

    def __init__(self, podman: Podman, image: str, lab_name: str) -> None:
        self.podman, self.image, self.lab_name = podman, image, lab_name

    def start(self, registry: RegistryProcess) -> Handle:
        registry.data.mkdir(parents=True, exist_ok=True)
        config = registry.dir / "config.yml"
        config.write_text(yaml.safe_dump(registry.config()))
        mounts = {str(registry.dir.resolve())}
        if registry.tls:
            mounts.add(str(Path(registry.tls.cert).resolve().parent))
        token = (registry.auth or {}).get("token")
        if isinstance(token, dict) and token.get("rootcertbundle"):
            mounts.add(str(Path(str(token["rootcertbundle"])).resolve().parent))
        volumes = [arg for path in sorted(mounts) for arg in ("-v", f"{path}:{path}:z")]
        name = f"mirrorlab-{self.lab_name}-{registry.name}"
        self.podman.run("rm", "-f", name, check=False)
        result = self.podman.run("run", "-d", "--name", name, *RUN_FLAGS, *volumes,
                                 self.image, "serve", str(config.resolve()))
        handle = Handle("container", result.stdout.strip())
        try:
            registry.wait_until_up(timeout=30)
        except RuntimeError:
            logs = self.podman.run("logs", handle.ident, check=False).stderr[-500:]
            stop_handle(handle, self.podman)
            raise RuntimeError(f"registry container {name} did not start: {logs}") from None
        return handle


def kill_groups(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM process groups (each lab process leads its own) all at once, then wait for
    them together; SIGKILL what is left after `grace`."""
    living = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            living.append(pid)
    deadline = time.monotonic() + grace
    while living and time.monotonic() < deadline:
        time.sleep(0.05)
        living = [pid for pid in living if _exists(pid)]
    for pid in living:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(pid: int, grace: float = 10.0) -> None:
    kill_groups([pid], grace)


def stop_handle(handle: Handle, podman: Podman | None) -> None:
    """Stop a registry process or container recorded in a state file."""
    stop_handles([handle], podman)


def stop_handles(handles: list[Handle], podman: Podman | None, also: Sequence[int] = ()
                 ) -> None:
    """Stop registries (and the processes `also`) together, not one after another."""
    containers = [h.ident for h in handles if h.kind == "container"]
    if containers and podman is not None:
        podman.run("rm", "-f", "-t", "2", *containers, check=False, timeout=120)
    kill_groups([int(h.ident) for h in handles if h.kind == "process"] + list(also))

