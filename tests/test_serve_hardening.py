"""Regressions of the hostile-probing round (issue 11) that live in the server: the reload
watcher survives anything a file holds, and an open proxy is closed beyond loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mirrorlab.cli import _any_registry
from mirrorlab.proxy import explain as explain_module
from mirrorlab.proxy.explain import NodeConfig
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.resolve_table import ResolveTable
from mirrorlab.proxy.server import Proxy, ServeOptions
from mirrorlab.proxy.steps import Planner, Refusal, RequestName

ACCEPT = '{"default": [{"type": "insecureAcceptAnything"}]}'
REJECT = '{"default": [{"type": "reject"}]}'
CONF = ('[[registry]]\nlocation = "quay.io/ns"\n[[registry.mirror]]\n'
        'location = "mirror.example.com:5000/ns"\n[[registry]]\nprefix = "*.corp.example"\n'
        'location = "corp.example"\n')


def _files(tmp_path: Path, policy: str = ACCEPT) -> NodeFiles:
    (tmp_path / "registries.conf").write_text(CONF)
    (tmp_path / "policy.json").write_text(policy)
    return NodeFiles(registries_conf=str(tmp_path / "registries.conf"),
                     registries_conf_dir=str(tmp_path / "d"),
                     policy=str(tmp_path / "policy.json"), certs_dir=str(tmp_path),
                     auth_file=str(tmp_path / "auth.json"))


async def _watch(tmp_path: Path, breakage: str) -> tuple[int, int]:
    """Break policy.json (or its loader), then write a reject policy: the statuses of a
    manifest request after each."""
    files = _files(tmp_path)
    proxy = Proxy(ServeOptions(files=files, reload_interval=0.05,
                               resolve=ResolveTable(offline=True)))
    async with TestClient(TestServer(proxy.app())) as client:
        async def status() -> int:
            response = await client.get("/v2/quay.io/ns/app/manifests/v1")
            return response.status

        policy = tmp_path / "policy.json"
        policy.write_text("[" * 100_000 + "]" * 100_000 if breakage == "deep" else ACCEPT + " ")
        await asyncio.sleep(0.3)
        first = await status()  # the old (accepting) configuration is kept
        policy.write_text(REJECT)
        for _ in range(40):
            await asyncio.sleep(0.05)
            if proxy.config.policy.default[0].type == "reject":
                break
        return first, await status()


@pytest.mark.parametrize("breakage", ["deep", "loader-bug"])
def test_the_reload_watcher_survives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     breakage: str) -> None:
    """A 100,000-deep policy.json (RecursionError in the parser once) or a loader raising
    something unexpected is logged; the old configuration stays; the next good change, a
    reject policy, is still picked up (it was silently ignored until SIGHUP)."""
    if breakage == "loader-bug":
        real = NodeConfig.load
        calls = [0]

        def flaky(files: NodeFiles) -> NodeConfig:
            calls[0] += 1
            if calls[0] == 2:  # the first reload
                raise RuntimeError("a loader bug")
            return real(files)

        monkeypatch.setattr(explain_module.NodeConfig, "load", staticmethod(flaky))
    first, second = asyncio.run(_watch(tmp_path, breakage))
    assert first != 403  # not rejected: the accepting policy was kept
    assert second == 403  # the reject policy took effect


NAMED = [
    # request name, ns, refused?
    ("quay.io/ns/app", None, False),  # a [[registry]] location ...
    ("mirror.example.com_5000/ns/app", None, False),  # ... and its mirror, with the port
    ("build.corp.example/app", None, False),  # a wildcard prefix
    ("ns/app", "resolved.example", False),  # named by --resolve
    ("ns/app", "resolved.example:8443", False),  # --resolve without a port: any port
    ("library/busybox", None, False),  # the default registry
    ("ns/app", "127.0.0.1:15030", True),  # issue 11, item 4
    ("127.0.0.1_15033/ns/app", None, True),
    ("mirror.example.com/ns/app", None, True),  # named only with a port
    ("other.example/app", None, True),
]


@pytest.mark.parametrize(("name", "ns", "refused"), NAMED)
def test_beyond_loopback_only_named_registries(tmp_path: Path, name: str, ns: str | None,
                                               refused: bool) -> None:
    config = NodeConfig.load(_files(tmp_path))
    resolve = ResolveTable({"resolved.example": ("127.0.0.1", 1)})
    closed = Planner(config, resolve=resolve, any_registry=False)
    found = closed.plan(RequestName(name, ns), "v1")
    assert isinstance(found, Refusal) is refused, found
    if isinstance(found, Refusal):
        assert found.code == "DENIED" and "--any-registry" in found.message
    assert not isinstance(Planner(config, resolve=resolve).plan(RequestName(name, ns), "v1"),
                          Refusal)


@pytest.mark.parametrize(("listen", "flag", "any_registry"), [
    ("127.0.0.1", None, True), ("127.0.0.2", None, True), ("::1", None, True),
    ("localhost", None, True), ("0.0.0.0", None, False), ("::", None, False),
    ("192.0.2.1", None, False), ("0.0.0.0", True, True)])
def test_who_may_be_contacted_follows_the_listening_address(listen: str, flag: bool | None,
                                                            any_registry: bool) -> None:
    assert _any_registry(argparse.Namespace(any_registry=flag), listen) is any_registry


def test_malformed_requests_log_one_line_without_their_bytes(tmp_path: Path) -> None:
    """aiohttp's traceback for a bad request echoed its bytes, a client's Authorization
    header among them: now one JSON line naming the error class."""
    import socket
    import subprocess
    import sys
    import time

    from mirrorlab.harness.net import free_port

    files = _files(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mirrorlab", "serve", "--registries-conf",
             str(files.registries_conf), "--registries-conf-dir", str(tmp_path / "d"),
             "--policy", str(files.policy), "--listen", f"127.0.0.1:{port}",
             "--offline-names"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while b"listening" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        for raw in (b"G\x01T /v2/ HTTP/1.1\r\nAuthorization: Basic c2VjcmV0LXRva2Vu\r\n\r\n",
                    b"GET /v2/ HTTP/1.1\r\nAuthorization: Basic c2VjcmV0LXRva2Vu\r\n"
                    b"Bad Header Line\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(raw)
                client.recv(4096)
        time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = log.read_text()
    assert "c2VjcmV0" not in text and "Traceback" not in text, text
    bad = [json.loads(line) for line in text.splitlines() if '"bad_request"' in line]
    assert bad, text  # the bad header line at least (aiohttp may answer a bad method quietly)
    assert all(set(event) == {"event", "status", "error"} for event in bad), bad


def test_an_unmapped_exception_is_a_500_not_a_failover(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A programming error while trying a source is no reason to try the next one: the
    request answers 500 with one `bug` log line, and no second source is asked."""
    from mirrorlab.proxy.upstream import Upstreams

    asked: list[str] = []

    async def broken(self: Upstreams, source: object, accept: list[str]) -> object:
        asked.append(str(source))
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Upstreams, "manifest", broken)

    async def run() -> tuple[int, dict[str, object]]:
        proxy = Proxy(ServeOptions(files=_files(tmp_path), reload_interval=0,
                                   resolve=ResolveTable(offline=True)))
        async with TestClient(TestServer(proxy.app())) as client:
            response = await client.get("/v2/quay.io/ns/app/manifests/v1")
            return response.status, await response.json()

    status, body = asyncio.run(run())
    assert status == 500
    assert "mirrorlab bug: ZeroDivisionError" in json.dumps(body)
    assert len(asked) == 1  # the mirror only; quay.io was never tried


def test_the_wheel_installs_one_mirrorlab_namespace(tmp_path: Path) -> None:
    """`pip install .` puts `mirrorlab` (and its dist-info) in site-packages, nothing else:
    no top-level `proxy`, `harness` or `certs` to clash with other distributions."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy: setuptools builds in the tree it is given
    shutil.copytree(root, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "lab", "bench", "fuzz", "__pycache__", "*.egg-info",
        ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, capture_output=True,
                   cwd=tmp_path)
    (wheel,) = tmp_path.glob("mirrorlab-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mirrorlab"}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "mirrorlab/proxy/server.py" in names and "mirrorlab/harness/lab.py" in names
    assert "mirrorlab/harness/scenarios/seed-failover.yaml" in names
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert {"mirrorlab/proxy/openshift", "mirrorlab/proxy/signatures"} <= packages
