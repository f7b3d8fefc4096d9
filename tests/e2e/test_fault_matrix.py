"""Every fault of the fault proxy at every position of the chain, for digest and tag pulls.

A position is made the one that answers by refusing connections at every position before
it. Each case checks which source served the manifest and the large blob, verifies every
byte the client received against its digest, and, when nothing can serve, the error that
names every attempt. Faults that begin mid-stream (reset, truncate, corrupt) are included.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirrorlab.harness.faults import Fault, FaultControl
from mirrorlab.harness.lab import Lab, LabState
from mirrorlab.harness.scenario import parse_scenario

CHAIN = ["mirror-a.example.com", "mirror-b.example.com", "source.example.com"]
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}

SCENARIO = """
name: fault-matrix
cas: {lab: {trust: additionalTrustedCA}}
images: {app: {layers: [4096, 6291456]}}
registries:
  source.example.com: {tls: lab, content: [{repo: ns/app, image: app, tag: v1}]}
  mirror-a.example.com: {tls: lab, content: [{repo: ns/app, image: app, tag: v1}]}
  mirror-b.example.com: {tls: lab, content: [{repo: ns/app, image: app, tag: v1}]}
config:
  crs: |
    apiVersion: config.openshift.io/v1
    kind: Image
    metadata: {name: cluster}
    spec: {additionalTrustedCA: {name: registry-config}}
    ---
    apiVersion: config.openshift.io/v1
    kind: ImageDigestMirrorSet
    metadata: {name: digests}
    spec:
      imageDigestMirrors:
      - source: source.example.com/ns
        mirrors: [mirror-a.example.com/ns, mirror-b.example.com/ns]
    ---
    apiVersion: config.openshift.io/v1
    kind: ImageTagMirrorSet
    metadata: {name: tags}
    spec:
      imageTagMirrors:
      - source: source.example.com/ns
        mirrors: [mirror-a.example.com/ns, mirror-b.example.com/ns]
steps: []
"""


MODES = ["sticky", "blob", "resilient"]


@pytest.fixture(scope="module", params=MODES)
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """One lab per fallback mode (the proxy's mode is the scenario's)."""
    workdir = tmp_path_factory.mktemp(f"matrix-{request.param}")
    scenario = parse_scenario(SCENARIO + f"fallback: {request.param}\n", "matrix.yaml")
    # The matrix refuses the positions before the one under test in every case: resilient
    # mode's cool-down would skip them across cases, so it is off here (tested elsewhere).
    state = Lab(scenario, workdir, "process", proxy_args=("--cooldown", "0")).up()
    try:
        yield state
    finally:
        Lab.down(workdir)


@dataclass(frozen=True)
class Case:
    fault: Fault
    manifest_moves: bool
    """True when the fault makes the manifest come from the next position."""
    blob_moves: bool
    """True when the large blob comes from the next position (mid-stream faults)."""
    retry: bool = False
    """The first blob request is cut (a corrupt large blob); the retry must succeed."""


CASES = {
    "refuse": Case(Fault("refuse"), True, True),
    "hang": Case(Fault("hang", path="/manifests/"), True, True),
    "500": Case(Fault("status", path="/manifests/", status=500), True, True),
    "404": Case(Fault("status", path="/manifests/", status=404), True, True),
    "429": Case(Fault("status", path="/manifests/", status=429), True, True),
    "reset": Case(Fault("reset", path="/blobs/", after=1_000_000), False, True),
    "truncate": Case(Fault("truncate", path="/blobs/", after=1_000_000), False, True),
    "slow": Case(Fault("slow", path="/blobs/", rate=8 * 1024 * 1024), False, False),
    # Last: the proxy remembers which source served wrong bytes for a blob and tries it
    # last from then on, which later cases on the same lab would otherwise see.
    "corrupt": Case(Fault("corrupt", path="/blobs/", after=3_000_000), False, True,
                    retry=True),
    "corrupt-last-byte": Case(Fault("corrupt", path="/blobs/", after=6291455), False, True,
                              retry=True),
}


def _get(proxy: str, path: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://{proxy}{path}", headers=ACCEPT)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _blob(lab: LabState, path: str, digest: str) -> tuple[bool, str]:
    """Fetch a blob; True when every byte matched the digest, and the source that completed
    it (from the proxy's log: a resumed stream's headers name the source it began with)."""
    log = Path(lab.workdir, "logs/proxy.log")
    offset = log.stat().st_size
    try:
        status, _, body = _get(f"127.0.0.1:{lab.proxy_port}", path)
    except (http.client.IncompleteRead, ConnectionError, urllib.error.URLError):
        return False, ""  # cut before completion: the client never gets a wrong blob
    ok = status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest
    with open(log, "rb") as handle:
        handle.seek(offset)
        served = [event["source"] for event in map(json.loads, handle.read().splitlines())
                  if event.get("event") == "attempt" and event["outcome"] == "served"
                  and event["logical"].endswith(digest)]
    return ok, served[-1] if served else ""


@pytest.mark.parametrize("by", ["digest", "tag"])
@pytest.mark.parametrize("position", range(3), ids=["first-mirror", "later-mirror", "source"])
@pytest.mark.parametrize("name", list(CASES))
def test_fault_matrix(lab: LabState, name: str, position: int, by: str) -> None:
    """In the node modes a blob fault after the manifest was served fails the pull (the
    cuts come before 1 MiB, so not even the same source resumes); resilient moves on."""
    case = CASES[name]
    mode = _mode(lab)
    controls = {r.name: FaultControl(r.control_port) for r in lab.registries}
    for earlier in CHAIN[:position]:
        controls[earlier].set(Fault("refuse"))
    controls[CHAIN[position]].set(case.fault)
    proxy = f"127.0.0.1:{lab.proxy_port}"
    digest = lab.digests["app"]
    try:
        identity = digest if by == "digest" else "v1"
        status, headers, body = _get(proxy, f"/v2/source.example.com/ns/app/manifests/{identity}")
        manifest_from = position + 1 if case.manifest_moves else position
        if manifest_from == len(CHAIN):  # nothing left to serve
            error = json.loads(body)["errors"][0]
            assert status >= 400, status
            assert error["message"].startswith("(Mirrors also failed: [")
            assert [d["source"].split("/")[0] for d in error["detail"]] == CHAIN
            return
        assert status == 200, body[:300]
        assert headers["X-Mirrorlab-Source"].startswith(CHAIN[manifest_from] + "/")
        assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
        layers = [layer["digest"] for layer in json.loads(body)["layers"]]
        large = f"/v2/source.example.com/ns/app/blobs/{layers[-1]}"
        ok, source = _blob(lab, large, layers[-1])
        if case.retry and not ok:
            ok, source = _blob(lab, large, layers[-1])
        blob_from = position + 1 if case.blob_moves else position
        if mode != "resilient" and blob_from > manifest_from:
            assert not ok, f"{name} at {CHAIN[position]}: a node fails this pull ({mode})"
            return
        if blob_from == len(CHAIN):
            assert not ok, "a wrong or partial blob must never complete"
            return
        assert ok, f"{name} at {CHAIN[position]}: blob not served intact"
        assert source.startswith(CHAIN[max(blob_from, manifest_from)] + "/"), source
    finally:
        for control in controls.values():
            control.set(Fault())


def _mode(lab: LabState) -> str:
    text = Path(lab.workdir, "logs/proxy.log").read_text()
    listening = next(json.loads(line) for line in text.splitlines()
                     if '"listening"' in line)
    return str(listening["fallback"])


def test_client_abort_blames_no_source(lab: LabState) -> None:
    """A client that goes away mid-blob: no attempt is recorded against the source, no
    other source is asked, and the abort has a metric of its own."""
    import socket

    digest = lab.digests["app"]
    _, _, body = _get(f"127.0.0.1:{lab.proxy_port}",
                      f"/v2/source.example.com/ns/app/manifests/{digest}")
    large = json.loads(body)["layers"][-1]["digest"]
    log = Path(lab.workdir, "logs/proxy.log")
    offset = log.stat().st_size
    controls = {r.name: FaultControl(r.control_port) for r in lab.registries}
    controls[CHAIN[0]].set(Fault("slow", path="/blobs/", rate=2 * 1024 * 1024))
    try:
        with socket.create_connection(("127.0.0.1", lab.proxy_port), timeout=10) as client:
            client.sendall(f"GET /v2/source.example.com/ns/app/blobs/{large} HTTP/1.1\r\n"
                           f"Host: x\r\n\r\n".encode())
            client.recv(65536)
        deadline = time.monotonic() + 15
        events: list[dict[str, object]] = []
        while not any(e.get("event") == "client_gone" for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
            with open(log, "rb") as handle:
                handle.seek(offset)
                events = [json.loads(line) for line in handle.read().splitlines()]
    finally:
        controls[CHAIN[0]].set(Fault())
    attempts = [e for e in events if e.get("event") == "attempt"]
    assert attempts == [], attempts
    _, _, metrics = _get(f"127.0.0.1:{lab.proxy_port}", "/metrics")
    assert 'mirrorlab_client_aborts_total{kind="blob"} 1.0' in metrics.decode()


def test_matrix_lab_is_clean(lab: LabState) -> None:
    """The module's lab is up with three chained registries (guards the setup itself)."""
    assert [r.name for r in lab.registries] == [
        "source.example.com", "mirror-a.example.com", "mirror-b.example.com"]
    assert Path(lab.workdir, "node/etc/containers/registries.conf").exists()
