"""Real CNCF distribution registries (`docker-registry`), run as local processes.

A `RegistryProcess` owns one registry: its config file, data directory and log, on a
loopback address. It is a context manager, so every test stops what it starts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from .net import free_port, tls_context, wait_for_http, wait_for_port

REGISTRY_BINARY = "docker-registry"


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str
    """The CA that signed `cert`: what a client must trust."""
    client_ca: str | None = None
    """When set, clients must present a certificate signed by this CA."""


class RegistryProcess:
    """One `docker-registry serve` on `host:port`, plain HTTP or TLS."""

    def __init__(self, workdir: Path, name: str, *, host: str = "127.0.0.1",
                 port: int | None = None, tls: TlsFiles | None = None,
                 proxy_remote: str | None = None, auth: dict[str, object] | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.dir = workdir / name
        self.data = self.dir / "data"
        self.log_path = self.dir / "registry.log"
        self.proxy_remote = proxy_remote
        self.auth = auth
        """distribution's `auth:` section (e.g. `TokenServer.registry_auth()`), or None."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def config(self) -> dict[str, object]:
        http: dict[str, object] = {"addr": self.address, "secret": "mirrorlab-lab"}
        if self.tls:
            tls: dict[str, object] = {"certificate": self.tls.cert, "key": self.tls.key}
            if self.tls.client_ca:
                tls["clientcas"] = [self.tls.client_ca]
            http["tls"] = tls
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.data)},
                        "delete": {"enabled": True}},
            "http": http,
        }
        if self.proxy_remote:
            config["proxy"] = {"remoteurl": self.proxy_remote}
        if self.auth:
            config["auth"] = self.auth
        return config

    def start(self) -> RegistryProcess:
        if shutil.which(REGISTRY_BINARY) is None:
            raise RuntimeError(f"{REGISTRY_BINARY} is not installed (run `make setup`)")
        self.data.mkdir(parents=True, exist_ok=True)
        config_path = self.dir / "config.yml"
        config_path.write_text(yaml.safe_dump(self.config()))
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wait_ready(self, timeout: float = 15.0) -> None:
        assert self._process is not None
        self.wait_until_up(timeout)

    def wait_until_up(self, timeout: float = 15.0) -> None:
        """Poll until the registry answers (it may run in a container, not as our child)."""
        what = f"registry {self.name}"
        try:
            if self.tls and self.tls.client_ca:
                wait_for_port(self.host, self.port, self._process, what=what, timeout=timeout)
            else:
                wait_for_http(f"{self.url}/v2/", self._process, what=what, timeout=timeout,
                              context=tls_context(self.tls.ca) if self.tls else None)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}\n{self.log_tail()}") from None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def requests_seen(self) -> list[str]:
        """Request lines from the access log (`GET /v2/... `), in order."""
        seen = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            marker = line.find('"', line.find(" - - ["))
            if " - - [" in line and marker != -1:
                seen.append(line[marker + 1 : line.find('"', marker + 1)])
        return seen

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

