"""The end-to-end lab: real registries, a fault proxy, `mirrorlab serve`, podman and skopeo."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mirrorlab.certs import LabCA
from mirrorlab.harness.faults import FaultProxy
from mirrorlab.harness.images import Image, ImageIndex, RegistryClient, make_image, make_index
from mirrorlab.harness.net import free_port, wait_for_http
from mirrorlab.harness.registry import RegistryProcess, TlsFiles
from mirrorlab.harness.tokenauth import TokenServer

ACCEPT_ALL = '{"default": [{"type": "insecureAcceptAnything"}]}'


@dataclass
class Lab:
    """Registries by the names the configuration uses, and what each holds."""

    work: Path
    source: RegistryProcess
    """`quay.io`: TLS, certificate from the lab CA (trusted through certs.d)."""
    mirror1: RegistryProcess
    """Plain HTTP, always behind `faults`."""
    faults: FaultProxy
    mirror2: RegistryProcess
    """`mirror2.example.net`: TLS from a CA that only certs.d trusts."""
    certs_d: Path
    images: dict[str, Image | ImageIndex] = field(default_factory=dict)

    @property
    def resolve_args(self) -> list[str]:
        return ["--resolve", f"quay.io={self.source.address}",
                "--resolve", f"mirror2.example.net={self.mirror2.address}"]

    def stop(self) -> None:
        self.faults.stop()
        for registry in (self.source, self.mirror1, self.mirror2):
            registry.stop()


def start_lab(work: Path) -> Lab:
    ca = LabCA("lab", work / "ca")
    private = LabCA("private", work / "private-ca")
    certs_d = work / "certs.d"
    source_cert = ca.issue("quay", "quay.io")
    mirror2_cert = private.issue("mirror2", "mirror2.example.net")
    ca.trust_in(certs_d, "quay.io")
    private.trust_in(certs_d, "mirror2.example.net")
    source = RegistryProcess(work, "source", tls=TlsFiles(
        str(source_cert.cert), str(source_cert.key), str(ca.ca_path)))
    mirror1 = RegistryProcess(work, "mirror1")
    mirror2 = RegistryProcess(work, "mirror2", tls=TlsFiles(
        str(mirror2_cert.cert), str(mirror2_cert.key), str(private.ca_path)))
    started: list[RegistryProcess] = []
    try:
        for registry in (source, mirror1, mirror2):
            started.append(registry.start())
        faults = FaultProxy(mirror1.url).start()
    except BaseException:
        for registry in started:
            registry.stop()
        raise
    lab = Lab(work, source, mirror1, faults, mirror2, certs_d)
    app = make_image("app", (4096, 6 * 1024 * 1024))  # one layer above the 4 MiB buffer
    multi = make_index("multi")
    only_source = make_image("only-source")
    lab.images = {"app": app, "multi": multi, "only-source": only_source}
    for registry, ca_file in ((source, str(ca.ca_path)), (mirror1, None),
                              (mirror2, str(private.ca_path))):
        client = RegistryClient(registry.url, ca_file)
        client.push_image("ns/app", app, "v1")
        client.push_image("ns/multi", multi, "v1")
    RegistryClient(source.url, str(ca.ca_path)).push_image("ns/only-source", only_source, "v1")
    return lab


class Upstreams(Protocol):
    """What a proxy needs to know of a lab: where names go and which CAs certs.d holds."""

    @property
    def certs_d(self) -> Path: ...

    @property
    def resolve_args(self) -> list[str]: ...


class ProxyProcess:
    """`mirrorlab serve` as a real process, with its JSON log captured."""

    def __init__(self, work: Path, conf: str, lab: Upstreams, *, policy: str = ACCEPT_ALL,
                 auth: dict[str, object] | None = None, extra: tuple[str, ...] = ()) -> None:
        self.scheme = "https" if "--tls-cert" in extra else "http"
        work.mkdir(parents=True, exist_ok=True)
        if auth is not None:
            (work / "auth.json").write_text(json.dumps(auth))
        self.conf_path = work / "registries.conf"
        self.conf_path.write_text(conf)
        (work / "policy.json").write_text(policy)
        (work / "registries.conf.d").mkdir(exist_ok=True)
        self.port = free_port()
        self.log_path = work / "proxy.log"
        command = [
            sys.executable, "-m", "mirrorlab.cli", "serve",
            "--registries-conf", str(self.conf_path),
            "--registries-conf-dir", str(work / "registries.conf.d"),
            "--policy", str(work / "policy.json"), "--certs-dir", str(lab.certs_d),
            "--auth-file", str(work / "auth.json"),
            "--listen", f"127.0.0.1:{self.port}", "--offline-names",
            "--connect-timeout", "2", "--read-timeout", "2", *lab.resolve_args, *extra,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        try:
            wait_for_http(f"{self.url}/healthz", self.process, what="mirrorlab serve",
                          context=unverified if self.scheme == "https" else None)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}\n{self.log_path.read_text()}") from None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def events(self, event: str = "attempt") -> list[dict[str, object]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                data = json.loads(line)
                if data.get("event") == event:
                    found.append(data)
        return found

    def served(self, kind: str, logical_prefix: str) -> list[str]:
        """Physical sources that served `kind` requests for logical refs with this prefix."""
        return [str(e["source"]) for e in self.events()
                if e["kind"] == kind and e["outcome"] == "served"
                and str(e["logical"]).startswith(logical_prefix)]

    def get(self, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@dataclass
class AuthLab:
    """`registry.example.com`: TLS, and token auth from `auth.example.com`."""

    registry: RegistryProcess
    tokens: TokenServer
    image: Image
    resolve_args: list[str]
    certs_d: Path

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()


def start_auth_lab(work: Path) -> AuthLab:
    """Seed the registry openly, then restart it requiring tokens (same storage)."""
    ca = LabCA("auth", work / "ca")
    cert = ca.issue("registry", "registry.example.com")
    certs_d = work / "certs.d"
    ca.trust_in(certs_d, "registry.example.com")
    tokens = TokenServer(work / "tokens", users={"puller": "s3cret-pw"}).start()
    registry = RegistryProcess(work, "private", tls=TlsFiles(str(cert.cert), str(cert.key),
                                                             str(ca.ca_path)))
    image = make_image("private")
    try:
        with registry:
            RegistryClient(registry.url, str(ca.ca_path)).push_image("ns/private", image, "v1")
        registry.auth = tokens.registry_auth("http://auth.example.com/token")
        registry.start()
    except BaseException:
        tokens.stop()
        raise
    resolve = ["--resolve", f"registry.example.com={registry.address}",
               "--resolve", f"auth.example.com={tokens.host}:{tokens.port}"]
    return AuthLab(registry, tokens, image, resolve, certs_d)
