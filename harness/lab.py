"""A running lab: registries by the names the configuration uses, each behind a fault proxy,
seeded with generated images, the configuration rendered as a node's files, and
`mirrorlab serve` pulling through it all.

Names never reach DNS: the proxy's resolve table sends each registry name to its fault
proxy on loopback. Everything started is recorded in `state.json`, so `lab down` can stop
it from another command, by PID or container id.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mirrorlab.certs import LabCA
from mirrorlab.proxy.openshift.commands import write_tree
from mirrorlab.proxy.openshift.crs import ConfigMap, Origin, load_crs
from mirrorlab.proxy.openshift.render import RenderOptions, render

from .backends import (
    ContainerBackend,
    Handle,
    Podman,
    ProcessBackend,
    build_registry_image,
    containers_work,
    stop_handle,
    stop_handles,
)
from .faults import Fault, FaultControl
from .images import Image, ImageIndex, RegistryClient, make_image, make_index
from .net import free_port, wait_for_http, wait_for_port
from .registry import RegistryProcess, TlsFiles
from .scenario import Scenario
from .tokenauth import ISSUER

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class RegistryState:
    name: str
    registry_port: int
    front_port: int
    control_port: int
    handle: Handle
    front_pid: int
    tls: bool
    stopped: bool = False
    token_pid: int = 0
    token_port: int = 0


@dataclass
class LabState:
    scenario: str
    backend: str
    backend_reason: str
    workdir: str
    proxy_port: int
    proxy_pid: int
    registries: list[RegistryState] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        Path(self.workdir, "state.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, workdir: Path) -> LabState:
        data = json.loads((workdir / "state.json").read_text())
        registries = [RegistryState(**{**r, "handle": Handle(**r["handle"])})
                      for r in data.pop("registries")]
        return cls(**data, registries=registries)

    def registry(self, name: str) -> RegistryState:
        return next(r for r in self.registries if r.name == name)

    @property
    def backend_plural(self) -> str:
        """`processes` or `containers`, for messages."""
        return {"process": "processes", "container": "containers"}[self.backend]


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def choose_backend(requested: str, workdir: Path) -> tuple[str, str, Podman | None, str]:
    """`container` when podman can run containers here, else `process`; and why."""
    if requested == "process":
        return "process", "asked for", None, ""
    podman = Podman(workdir)
    try:
        image = build_registry_image(podman, workdir)
        works, why = containers_work(podman, image)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        works, why, image = False, str(error), ""
    if works:
        return "container", "podman can run containers here", podman, image
    if requested == "container":
        raise RuntimeError(f"the container backend cannot run here: {why}")
    return "process", f"podman cannot run containers here ({why})", None, ""


class Lab:
    """`Lab(scenario, workdir).up()`; later `Lab.down(workdir)` from any process."""

    def __init__(self, scenario: Scenario, workdir: Path, backend: str = "auto",
                 proxy_args: tuple[str, ...] = ()) -> None:
        self.scenario = scenario
        self.proxy_args = proxy_args
        """More `mirrorlab serve` arguments (a test turns the cool-down off with them)."""
        self.workdir = workdir.resolve()
        self.requested_backend = backend

    # ------------------------------------------------------------ bring up

    def up(self) -> LabState:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if (self.workdir / "state.json").exists():
            raise RuntimeError(f"a lab is already up in {self.workdir} (mirrorlab lab down)")
        backend_name, reason, podman, image = choose_backend(self.requested_backend,
                                                             self.workdir)
        backend = (ContainerBackend(podman, image, self.scenario.name) if podman
                   else ProcessBackend())
        state = LabState(self.scenario.name, backend_name, reason, str(self.workdir), 0, 0)
        try:
            self._up(state, backend)
        except BaseException:
            state.save()
            Lab.down(self.workdir)
            raise
        state.save()
        return state

    def _up(self, state: LabState, backend: ContainerBackend | ProcessBackend) -> None:
        certs = self.workdir / "certs"
        cas = {ca.name: (LabCA(ca.name, certs / ca.name), ca.trust) for ca in self.scenario.cas}
        # The proxy's own serving certificate, and a client cert dir that trusts it:
        # `mirrorlab serve --tls-cert certs/proxy/proxy.crt --tls-key certs/proxy/proxy.key`,
        # `podman pull --cert-dir certs/proxy-trust 127.0.0.1:PORT/...`.
        proxy_ca = LabCA("proxy", certs / "proxy")
        proxy_ca.issue("proxy", "localhost")
        proxy_trust = certs / "proxy-trust"
        proxy_trust.mkdir(parents=True, exist_ok=True)
        (proxy_trust / "ca.crt").write_bytes(proxy_ca.pem)
        bundle = certs / "system-bundle.pem"
        system_pems = [Path(SYSTEM_BUNDLE).read_bytes()] if Path(SYSTEM_BUNDLE).exists() else []
        bundle.write_bytes(b"".join(system_pems + [ca.pem for ca, trust in cas.values()
                                                  if trust == "system"]))
        images = self._images()
        state.digests = {name: image.digest for name, image in images.items()}
        config_map: dict[str, str] = {}
        auths: dict[str, dict[str, str]] = {}
        for spec in self.scenario.registries:
            tls = None
            if spec.tls:
                ca, trust = cas[spec.tls]
                issued = ca.issue(spec.name, spec.name)
                tls = TlsFiles(str(issued.cert), str(issued.key), str(ca.ca_path))
                if trust == "additionalTrustedCA":
                    config_map[spec.name] = ca.pem.decode()
            registry = RegistryProcess(self.workdir / "registries", spec.name, tls=tls)
            handle = backend.start(registry)
            client = RegistryClient(registry.url, tls.ca if tls else None)
            for content in spec.content:
                client.push_image(content.repo, images[content.image], content.tag)
            token_pid = token_port = 0
            if spec.users:  # seeded openly; from now on it wants tokens
                token_pid, token_port = self._start_token_server(spec.name, spec.users)
                stop_handle(handle, backend.podman if isinstance(backend, ContainerBackend)
                            else None)
                registry.auth = {"token": {
                    "realm": f"http://auth.{spec.name}/token", "service": "mirrorlab-lab",
                    "issuer": ISSUER, "rootcertbundle": str(
                        self.workdir / "tokens" / spec.name / "token-ca.pem")}}
                handle = backend.start(registry)
                user, password = spec.users[0]
                secret = base64.b64encode(f"{user}:{password}".encode()).decode()
                auths[spec.name] = {"auth": secret}
            front_port, control_port = free_port(), free_port()
            command = [sys.executable, "-m", "mirrorlab.harness.faults", "--listen",
                       f"127.0.0.1:{front_port}", "--control", str(control_port),
                       "--upstream", registry.url]
            if tls:
                command += ["--upstream-ca", tls.ca, "--tls", tls.cert, tls.key]
            front = _spawn(command, self.workdir / "logs" / f"front-{spec.name}.log")
            state.registries.append(RegistryState(spec.name, registry.port, front_port,
                                                  control_port, handle, front.pid, bool(tls),
                                                  token_pid=token_pid, token_port=token_port))
            wait_for_port("127.0.0.1", control_port, front, what=f"fault proxy of {spec.name}")
        (self.workdir / "auth.json").write_text(json.dumps({"auths": auths}))
        self._render(config_map)
        self._start_proxy(state, bundle)

    def _start_token_server(self, name: str, users: tuple[tuple[str, str], ...]
                            ) -> tuple[int, int]:
        """A token server process for one registry; its signing CA goes in tokens/NAME."""
        port = free_port()
        command = [sys.executable, "-m", "mirrorlab.harness.tokenauth",
                   "--listen", f"127.0.0.1:{port}",
                   "--workdir", str(self.workdir / "tokens" / name),
                   *(arg for user, password in users for arg in ("--user", f"{user}:{password}"))]
        process = _spawn(command, self.workdir / "logs" / f"tokens-{name}.log")
        wait_for_port("127.0.0.1", port, process, what=f"token server of {name}")
        return process.pid, port

    def _images(self) -> dict[str, Image | ImageIndex]:
        images: dict[str, Image | ImageIndex] = {}
        for spec in self.scenario.images:
            if spec.platforms:
                platforms = tuple(tuple(p.split("/", 1)) for p in spec.platforms)
                images[spec.name] = make_index(spec.seed, platforms,  # type: ignore[arg-type]
                                               spec.layers)
            else:
                images[spec.name] = make_image(spec.seed, spec.layers)
        return images

    def _render(self, config_map: dict[str, str]) -> None:
        config = self.workdir / "config"
        config.mkdir(exist_ok=True)
        (config / "crs.yaml").write_text(self.scenario.crs)
        crs = load_crs([str(config / "crs.yaml")])
        name = (crs.image.additional_trusted_ca if crs.image else None) or "registry-config"
        extra: tuple[ConfigMap, ...] = ()
        if config_map:
            document = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "openshift-config"},
                        "data": config_map}
            (config / "ca-configmap.yaml").write_text(yaml.safe_dump(document))
            extra = (ConfigMap(name, "openshift-config", config_map, {},
                               Origin(str(config / "ca-configmap.yaml"), "ConfigMap", name)),)
        node = render(crs, RenderOptions(extra_config_maps=extra))
        write_tree(str(self.workdir / "node"), node)
        (config / "render-report.txt").write_text("\n".join(node.report) + "\n")

    def _start_proxy(self, state: LabState, bundle: Path) -> None:
        state.proxy_port = free_port()
        command = [sys.executable, "-m", "mirrorlab.cli", "serve", "--root",
                   str(self.workdir / "node"), "--listen", f"127.0.0.1:{state.proxy_port}",
                   "--offline-names", "--fallback", self.scenario.fallback,
                   "--connect-timeout", "2",
                   "--read-timeout", "5", "--auth-file", str(self.workdir / "auth.json"),
                   *self.proxy_args]
        for registry in state.registries:
            command += ["--resolve", f"{registry.name}=127.0.0.1:{registry.front_port}"]
            if registry.token_port:
                command += ["--resolve", f"auth.{registry.name}=127.0.0.1:{registry.token_port}"]
        env = {**os.environ, "SSL_CERT_FILE": str(bundle)}
        proxy = _spawn(command, self.workdir / "logs" / "proxy.log", env)
        state.proxy_pid = proxy.pid
        wait_for_http(f"http://127.0.0.1:{state.proxy_port}/healthz", proxy,
                      what="mirrorlab serve", log=str(self.workdir / "logs" / "proxy.log"))

    # ------------------------------------------------------------ run time

    @staticmethod
    def stop_registry(state: LabState, name: str) -> None:
        """Stop the registry outright; its name then refuses connections."""
        registry = state.registry(name)
        FaultControl(registry.control_port).set(Fault("refuse"))
        podman = Podman(Path(state.workdir)) if registry.handle.kind == "container" else None
        stop_handle(registry.handle, podman)
        registry.stopped = True
        state.save()

    @staticmethod
    def down(workdir: Path) -> list[str]:
        """Stop everything recorded in `workdir/state.json`; what was stopped."""
        path = workdir / "state.json"
        if not path.exists():
            return []
        state = LabState.load(workdir)
        stopped = []
        pids = [state.proxy_pid] if state.proxy_pid else []
        if state.proxy_pid:
            stopped.append(f"mirrorlab serve (pid {state.proxy_pid})")
        podman = Podman(workdir) if state.backend == "container" else None
        for registry in state.registries:
            pids += [pid for pid in (registry.front_pid, registry.token_pid) if pid]
            stopped.append(f"{registry.name}: {registry.handle.kind} {registry.handle.ident[:12]}"
                           f", fault proxy pid {registry.front_pid}")
        stop_handles([r.handle for r in state.registries if not r.stopped], podman, pids)
        path.unlink()
        return stopped


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
