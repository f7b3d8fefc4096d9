"""containerd pulling through `mirrorlab serve`: `ctr images pull --hosts-dir`, in each mode.

containerd is the other runtime that pulls through mirrors, and it does not pull as
containers/image does: it resolves a reference (tag or digest) with `HEAD`, then GETs the
manifest by digest, and a mirror named in hosts.toml gets `?ns=<registry>` on every
request; a blob the mirror fails, containerd asks of hosts.toml's `server` itself (see
`hosts_dir`). Each test starts its own containerd (its own root, state, sockets and a
minimal configuration: no CRI, no `/opt` plugin), which never touches `/var/lib/containerd`
or `/run/containerd`, and a fresh proxy on the lab's chain (quay.io/ns -> mirror1 behind
the fault proxy -> mirror2 -> quay.io); both are stopped at the end of the test.

Each pull is checked twice: which physical source served it (the proxy's JSON attempt
log) and what containerd stored (`ctr images ls`, `ctr content ls`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirrorlab.harness.faults import Fault
from mirrorlab.harness.images import Image
from mirrorlab.harness.net import free_port
from mirrorlab.harness.registry import RegistryProcess

from .lab import Lab, ProxyProcess
from .test_proxy_pulls import chain


@pytest.fixture(autouse=True)
def _containerd_installed() -> None:
    """`make setup` installs containerd; without it these tests fail, never skip."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("containerd is not installed: run `make setup`", pytrace=False)

MODES = ("sticky", "blob", "resilient")
NAMESPACE = "mirrorlab"

# Plugins a pull does not need, or that would reach outside the daemon's own directories
# (`opt` creates /opt/containerd; the CRI plugin wants CNI and a sandbox image).
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


class Containerd:
    """One `containerd` daemon with everything of its own, and `ctr` to talk to it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "root"
        self.state = work / "state"
        # A unix socket path has at most 107 bytes; pytest's tmp_path can be longer.
        self.sockets = Path(tempfile.mkdtemp(prefix="mirrorlab-ctrd-"))
        self.address = str(self.sockets / "containerd.sock")
        self.log_path = work / "containerd.log"
        self.config_path = work / "config.toml"
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "HOME": str(work), "TMPDIR": str(work / "tmp")}
        """No proxy variables, no user configuration: only what the test gives."""
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        disabled = ", ".join(f'"{plugin}"' for plugin in DISABLED_PLUGINS)
        return "\n".join([
            "version = 2",
            f'root = "{self.root}"',
            f'state = "{self.state}"',
            f'temp = "{self.work / "tmp"}"',
            f"disabled_plugins = [{disabled}]",
            "[grpc]",
            f'  address = "{self.address}"',
            "[ttrpc]",
            f'  address = "{self.address}.ttrpc"',
            "[debug]",
            '  address = ""',
            '  level = "debug"',
            "[metrics]",
            '  address = ""',
            "",
        ])

    def start(self) -> Containerd:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["containerd", "--config", str(self.config_path)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited with status {self.process.returncode}:"
                                   f"\n{self.log_path.read_text(errors='replace')}")
            if os.path.exists(self.address) and self.ctr("version").returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("containerd did not answer in 20s:\n"
                                   + self.log_path.read_text(errors="replace"))
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.address, "--namespace", NAMESPACE,
                               *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)

    def pull(self, ref: str, hosts: Hosts, *,
             dump: bool = False) -> subprocess.CompletedProcess[str]:
        """`ctr images pull`; with `dump`, ctr logs every request and response it makes
        (bodies too: a healthy pull logs some 17 MB, so only where the wire is checked)."""
        return self.ctr("images", "pull", *(["--http-dump"] if dump else []),
                        "--hosts-dir", str(hosts.dir), ref)

    def images(self) -> dict[str, str]:
        """Reference -> the digest containerd stored for it (`ctr images ls`)."""
        result = self.ctr("images", "ls")
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
        return {row[0]: row[2] for row in rows}

    def content(self) -> set[str]:
        """Digests of every blob in containerd's content store (`ctr content ls`)."""
        result = self.ctr("content", "ls", "--quiet")
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    daemon = Containerd(tmp_path / "containerd").start()
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass(frozen=True)
class Hosts:
    """A `--hosts-dir` for quay.io: `dir/quay.io/hosts.toml`."""

    dir: Path
    server: str
    """`host:port` of `server`, where nothing listens."""


def hosts_dir(work: Path, proxy: ProxyProcess) -> Hosts:
    """quay.io's pulls go to the proxy, then, as containerd always appends `server`, to a
    loopback port that refuses connections: it stands for https://quay.io, which is a lab
    name only the proxy resolves, and keeps containerd inside the lab wherever the test
    runs.

    containerd's own chain matters for blobs: its fetcher walks every host, `server` last,
    whatever their `capabilities` (`remotes/docker/fetcher.go: Fetch` loops over `r.hosts`,
    not the pull-capable ones it filtered; resolving does filter). So a blob that the proxy
    fails is asked of `server` next, by containerd itself, even with `capabilities =
    ["push"]` there; a node whose `server` is reachable may get it there."""
    directory = work / "certs.d"
    server = f"127.0.0.1:{free_port()}"
    (directory / "quay.io").mkdir(parents=True, exist_ok=True)
    (directory / "quay.io" / "hosts.toml").write_text("\n".join([
        f'server = "https://{server}"',
        "",
        f'[host."http://{proxy.address}"]',
        '  capabilities = ["pull", "resolve"]',
        "",
    ]))
    return Hosts(directory, server)


# `--http-dump` logs a request as a line `METHOD PATH HTTP/1.1` (after a dumped body when
# one precedes it in the same log message) and then its `Host:` line.
REQUEST_LINE = re.compile(r'(HEAD|GET) (/v2/[^ "]*) HTTP/1\.1"$')
HOST_LINE = re.compile(r'msg="Host: ([^"]+)"$')


def sent(dump: str) -> list[tuple[str, str, str]]:
    """(method, path with query, host) of each request ctr made, in order."""
    requests: list[tuple[str, str, str]] = []
    pending: tuple[str, str] | None = None
    for line in dump.splitlines():
        if (request := REQUEST_LINE.search(line)) is not None:
            pending = (request[1], request[2])
        elif pending is not None and (host := HOST_LINE.search(line)) is not None:
            requests.append((*pending, host[1]))
            pending = None
    return requests


def _app(lab: Lab) -> Image:
    image = lab.images["app"]
    assert isinstance(image, Image)
    return image


def _ref(app: Image, by: str) -> str:
    return f"quay.io/ns/app@{app.digest}" if by == "digest" else "quay.io/ns/app:v1"


def _attempts(proxy: ProxyProcess, digest: str) -> list[dict[str, object]]:
    return [e for e in proxy.events() if str(e["logical"]).endswith(digest)]


ProxyFactory = Callable[..., ProxyProcess]


@pytest.mark.parametrize("by", ["tag", "digest"])
@pytest.mark.parametrize("mode", MODES)
def test_containerd_pulls_through_the_proxy(clean_lab: Lab, proxy_factory: ProxyFactory,
                                            containerd: Containerd, tmp_path: Path, mode: str,
                                            by: str) -> None:
    """A healthy chain: the first mirror serves the manifest and every blob, in any mode."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))
    app = _app(lab)
    ref = _ref(app, by)
    source_requests = len(lab.source.requests_seen())
    result = containerd.pull(ref, hosts_dir(tmp_path, proxy))
    assert result.returncode == 0, result.stdout + result.stderr + proxy.log_path.read_text()
    assert containerd.images() == {ref: app.digest}
    stored = containerd.content()
    assert {app.digest, *(blob.digest for blob in app.blobs)} <= stored, stored

    manifests = proxy.served("manifest", "quay.io/ns/app")
    assert manifests and all(s.startswith(f"{lab.faults.address}/ns/app") for s in manifests), \
        proxy.events()
    for blob in app.blobs:
        served = [e for e in _attempts(proxy, blob.digest) if e["outcome"] == "served"]
        assert [str(e["source"]) for e in served] \
            == [f"{lab.faults.address}/ns/app@{blob.digest}"], proxy.events()
        assert served[0]["fallback"] is False
    assert {e["mode"] for e in proxy.events()} == {mode}
    assert all(e["outcome"] == "served" for e in proxy.events()), proxy.events()
    assert len(lab.source.requests_seen()) == source_requests, "the source was contacted"


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_containerd_resolves_with_head_and_ns(clean_lab: Lab, proxy_factory: ProxyFactory,
                                              containerd: Containerd, tmp_path: Path,
                                              by: str) -> None:
    """What containerd sends, from ctr's own dump: the reference is resolved with `HEAD`
    first, the manifest then fetched by digest, and every request carries `?ns=quay.io`
    and goes to the proxy only. No `--fallback`: the default mode is sticky."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab))
    app = _app(lab)
    ref = _ref(app, by)
    result = containerd.pull(ref, hosts_dir(tmp_path, proxy), dump=True)
    assert result.returncode == 0, result.stderr[-3000:]
    requests = sent(result.stderr)
    identity = app.digest if by == "digest" else "v1"
    assert requests[:2] == [
        ("HEAD", f"/v2/ns/app/manifests/{identity}?ns=quay.io", proxy.address),
        ("GET", f"/v2/ns/app/manifests/{app.digest}?ns=quay.io", proxy.address)], requests
    assert {host for _, _, host in requests} == {proxy.address}, requests
    assert sorted(path for _, path, _ in requests[2:]) \
        == sorted(f"/v2/ns/app/blobs/{blob.digest}?ns=quay.io" for blob in app.blobs)
    assert containerd.images() == {ref: app.digest}
    assert {e["mode"] for e in proxy.events()} == {"sticky"}
    # The proxy answers the HEAD from a whole, verified GET upstream.
    assert f"GET /v2/ns/app/manifests/{identity}" in lab.faults.requests, lab.faults.requests


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A real distribution registry holding nothing: its 404s say `BLOB_UNKNOWN`."""
    with RegistryProcess(tmp_path, "empty") as registry:
        yield registry


# The first mirror lost the large layer (6 MiB, streamed) but still has the manifest, so the
# pull starts there and only that blob fails, in one of two ways:
# - "404": the fault proxy answers 404 itself. Its body is an OCI error coded `UNKNOWN`
#   (`{"errors":[{"code":"UNKNOWN","message":"injected 404"}]}`, harness/faults.py), not
#   `BLOB_UNKNOWN`. PR #845 falls back only on a 5xx, a timeout, or an error body coded
#   `BLOB_UNKNOWN` or `TOOMANYREQUESTS`; any other 404 is fatal, so `blob` fails this pull
#   as `sticky` does.
# - "BLOB_UNKNOWN": the fault proxy redirects the layer to a registry that does not hold it,
#   so the 404 is distribution's own, coded `BLOB_UNKNOWN`: `blob` goes on to mirror2.
LOST_LAYER = {
    # (how it is lost, mode): (code logged, pull succeeds, node modes the rescue is marked
    # as beyond; None when the pull fails)
    ("404", "sticky"): ("UNKNOWN", False, None),
    ("404", "blob"): ("UNKNOWN", False, None),
    ("404", "resilient"): ("UNKNOWN", True, ["sticky", "blob"]),
    ("BLOB_UNKNOWN", "sticky"): ("BLOB_UNKNOWN", False, None),
    ("BLOB_UNKNOWN", "blob"): ("BLOB_UNKNOWN", True, []),
    ("BLOB_UNKNOWN", "resilient"): ("BLOB_UNKNOWN", True, ["sticky"]),
}


@pytest.mark.parametrize(("lost", "mode"), list(LOST_LAYER),
                         ids=[f"{lost}-{mode}" for lost, mode in LOST_LAYER])
def test_containerd_first_mirror_lost_the_large_layer(
        clean_lab: Lab, proxy_factory: ProxyFactory, containerd: Containerd, tmp_path: Path,
        request: pytest.FixtureRequest, lost: str, mode: str) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))
    app = _app(lab)
    layer = app.layers[-1]
    if lost == "404":
        lab.faults.set(Fault("status", path=f"/blobs/{layer.digest}", status=404))
    else:
        empty: RegistryProcess = request.getfixturevalue("empty_registry")
        lab.faults.set(Fault("redirect", path=f"/blobs/{layer.digest}", location=empty.url))
    ref = _ref(app, "tag" if lost == "404" else "digest")
    code, succeeds, rescued = LOST_LAYER[(lost, mode)]
    hosts = hosts_dir(tmp_path, proxy)
    # A failing pull never moves the large layer, so its dump is small.
    result = containerd.pull(ref, hosts, dump=not succeeds)

    manifests = proxy.served("manifest", "quay.io/ns/app")
    assert manifests and all(s.startswith(f"{lab.faults.address}/") for s in manifests)
    attempts = _attempts(proxy, layer.digest)
    first = f"{lab.faults.address}/ns/app@{layer.digest}"
    assert attempts and attempts[0]["source"] == first, attempts
    assert attempts[0]["outcome"] == "not_found" and attempts[0]["code"] == code, attempts
    if not succeeds:
        assert result.returncode != 0, result.stdout
        assert f"could not fetch content descriptor {layer.digest}" in result.stderr
        assert result.stderr.rstrip().endswith("from remote: not found"), result.stderr[-500:]
        # containerd resolved at the proxy and, when the proxy failed the layer, asked its
        # `server` for it too (refused here; see hosts_dir). The proxy asked only the
        # source of the manifest for the layer, however often containerd asked.
        requests = sent(result.stderr)
        assert {host for _, _, host in requests} <= {proxy.address, hosts.server}, requests
        assert all(host == proxy.address for _, path, host in requests
                   if "/manifests/" in path), requests
        assert ("GET", f"/v2/ns/app/blobs/{layer.digest}?ns=quay.io", hosts.server) \
            in requests, requests
        assert {e["source"] for e in attempts} == {first}, attempts
        assert all(e["outcome"] == "not_found" for e in attempts), attempts
        assert ref not in containerd.images()
        assert layer.digest not in containerd.content()
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert containerd.images() == {ref: app.digest}
    assert layer.digest in containerd.content()
    assert [e["outcome"] for e in attempts] == ["not_found", "served"], attempts
    served = attempts[1]
    assert served["source"] == f"mirror2.example.net/ns/app@{layer.digest}", attempts
    assert served["fallback"] is True
    assert served.get("rescued", []) == rescued, served
