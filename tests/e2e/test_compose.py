"""compose.yaml brought up with podman-compose: registries and the proxy as containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from mirrorlab.harness.backends import RUNTIME_FLAGS, Podman, build_registry_image
from mirrorlab.harness.clients import PodmanClient
from mirrorlab.harness.images import RegistryClient, make_image
from mirrorlab.harness.net import free_port, wait_for_http
from mirrorlab.harness.proxyimage import build_proxy_image
from mirrorlab.proxy.openshift.crs import load_crs
from mirrorlab.proxy.openshift.render import render

REPO = Path(__file__).resolve().parents[2]


def test_compose_node_files_are_a_fresh_render() -> None:
    node = render(load_crs([str(REPO / "compose/crs.yaml")]))
    for path, data in node.files.items():
        assert (REPO / "compose/node" / path).read_bytes() == data, path


def test_compose_up_pull_down(tmp_path: Path) -> None:
    podman = Podman(tmp_path)
    build_registry_image(podman, tmp_path)
    build_proxy_image(podman, tmp_path, REPO)
    ports = {name: free_port() for name in ("PROXY_PORT", "SOURCE_PORT", "MIRROR_A_PORT",
                                             "MIRROR_B_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    compose = [sys.executable, "-m", "podman_compose", "--podman-args",
               " ".join(podman.base[1:]), "--podman-run-args", " ".join(RUNTIME_FLAGS),
               "-f", str(REPO / "compose.yaml"), "-p", f"mlab{ports['PROXY_PORT']}"]
    if shutil.which("podman-compose"):
        compose[:3] = ["podman-compose"]
    client = PodmanClient(tmp_path / "client")
    try:
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, env=env,
                            timeout=240, check=False)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        for name in ("SOURCE_PORT", "MIRROR_A_PORT", "MIRROR_B_PORT", "PROXY_PORT"):
            path = "/healthz" if name == "PROXY_PORT" else "/v2/"
            wait_for_http(f"http://127.0.0.1:{ports[name]}{path}", None, what=name,
                          timeout=60)
        image = make_image("compose")
        for name in ("SOURCE_PORT", "MIRROR_A_PORT", "MIRROR_B_PORT"):
            repo = "ubi9/ubi-minimal" if name == "SOURCE_PORT" else "example/ubi-minimal"
            RegistryClient(f"http://127.0.0.1:{ports[name]}").push_image(repo, image, "latest")
        proxy = f"127.0.0.1:{ports['PROXY_PORT']}"
        ref = f"{proxy}/registry.access.redhat.com/ubi9/ubi-minimal@{image.digest}"
        pulled = client.pull(ref)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        assert client.digest(ref) == image.digest
        request = urllib.request.Request(
            f"http://{proxy}/v2/registry.access.redhat.com/ubi9/ubi-minimal/manifests/"
            f"{image.digest}", headers={"Accept": image.manifest.media_type})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Mirrorlab-Source"].startswith("example.io/")
        with urllib.request.urlopen(f"http://{proxy}/mirrorlab/explain?ref="
                                    f"registry.access.redhat.com/ubi9/ubi-minimal@{image.digest}",
                                    timeout=10) as response:
            sources = [s["reference"] for s in json.loads(response.read())["sources"]]
        assert [s.split("/")[0] for s in sources] == ["example.io", "example.com",
                                                      "registry.access.redhat.com"]
    finally:
        down = subprocess.run([*compose, "down", "-t", "2"], capture_output=True, text=True,
                              env=env, timeout=300, check=False)
        client.close()
    assert down.returncode == 0, down.stderr[-2000:]
    left = podman.run("ps", "-a", "-q", check=False).stdout.split()
    assert left == [], "compose down left containers behind"
