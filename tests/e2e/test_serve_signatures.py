"""`mirrorlab serve` with a sigstoreSigned policy: signatures are read from the source that
served the manifest, as registries.d says for that source's own name, and verified as the
current containers/image does (the Go oracle's `IsRunningImageAllowed` gives the same
verdict and text for the same signatures).

Two real registries hold the image; only mirror1 holds its `sha256-<hex>.sig` attachment.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirrorlab.harness.images import OCI_CONFIG, Blob, Image, RegistryClient, make_image
from mirrorlab.harness.registry import RegistryProcess

from ..go_oracle import GoOracle, go_oracle
from .lab import ProxyProcess

__all__ = ["go_oracle"]

SIGNATURE = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Signed:
    mirror1: RegistryProcess
    mirror2: RegistryProcess
    image: Image
    key: Path
    other_key: Path
    layer: dict[str, object]
    certs_d: Path
    work: Path

    @property
    def resolve_args(self) -> list[str]:
        return ["--resolve", "quay.io=127.0.0.1:9"]

    def conf(self, first: RegistryProcess, second: RegistryProcess) -> str:
        return "".join(['[[registry]]\nlocation = "quay.io/ns"\n', *(
            f'[[registry.mirror]]\nlocation = "{r.address}/ns"\ninsecure = true\n'
            for r in (first, second))])

    def policy(self, key: Path, identity: str) -> str:
        requirement: dict[str, object] = {"type": "sigstoreSigned", "keyPath": str(key)}
        if identity:
            requirement["signedIdentity"] = {"type": identity}
        return json.dumps({"default": [{"type": "insecureAcceptAnything"}], "transports": {
            "docker": {"quay.io/ns": [requirement]}}})


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    work = tmp_path_factory.mktemp("signed")
    mirrors = [RegistryProcess(work, "mirror1"), RegistryProcess(work, "mirror2")]
    started: list[RegistryProcess] = []
    try:
        for registry in mirrors:
            started.append(registry.start())
        image = make_image("signed")
        for registry in mirrors:
            RegistryClient(registry.url, None).push_image("ns/app", image, "v1")
        key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
            ec.SECP256R1())
        (work / "key.pub").write_bytes(_pem(key))
        (work / "other.pub").write_bytes(_pem(other))
        payload = json.dumps({"critical": {
            "identity": {"docker-reference": "quay.io/ns/app"},
            "image": {"docker-manifest-digest": image.digest},
            "type": "cosign container image signature"}, "optional": None}).encode()
        signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
        layer_blob, config = Blob(SIMPLE_SIGNING, payload), Blob(OCI_CONFIG, b"{}")
        layer = {**layer_blob.descriptor(), "annotations": {SIGNATURE: signature}}
        attachment = Blob(OCI_MANIFEST, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
            "layers": [layer]}).encode())
        client = RegistryClient(mirrors[0].url, None)
        client.push_blob("ns/app", layer_blob)
        client.push_blob("ns/app", config)
        client.push_manifest("ns/app", "sha256-" + image.digest.split(":")[1] + ".sig",
                             attachment)
        (work / "certs.d").mkdir()
        yield Signed(mirrors[0], mirrors[1], image, work / "key.pub", work / "other.pub",
                     {"payload": payload, "annotations": {SIGNATURE: signature}},
                     work / "certs.d", work)
    finally:
        for registry in started:
            registry.stop()


def _registries_d(tmp_path: Path, *hosts: str) -> Path:
    directory = tmp_path / "registries.d"
    directory.mkdir(exist_ok=True)
    (directory / "mirrors.yaml").write_text("docker:\n" + "".join(
        f"  {host}:\n    use-sigstore-attachments: true\n" for host in hosts))
    return directory


BOTH = ("mirror1", "mirror2")
CASES = [
    # id, first mirror, key, signedIdentity, registries.d hosts, the verdict (None: served)
    ("signed-mirror", "mirror1", "key", "matchRepository", BOTH, None),
    ("mirror-without-signature", "mirror2", "key", "matchRepository", BOTH,
     "A signature was required, but no signature exists"),
    ("wrong-key", "mirror1", "other", "matchRepository", BOTH, "cryptographic signature"),
    ("attachments-off", "mirror1", "key", "matchRepository", ("mirror2",),
     "A signature was required, but no signature exists"),
    # A cosign signature names the repository only: the default identity rule wants the
    # tag or digest pulled.
    ("repository-only-identity", "mirror1", "key", "", BOTH,
     'Signature for identity "quay.io/ns/app" is not accepted'),
]


@pytest.mark.parametrize(("first", "key", "identity", "hosts", "verdict"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_signatures_are_read_from_the_serving_source(
        signed: Signed, tmp_path: Path, go_oracle: GoOracle, first: str, key: str,
        identity: str, hosts: tuple[str, ...], verdict: str | None) -> None:
    by_name = {"mirror1": signed.mirror1, "mirror2": signed.mirror2}
    serving = by_name[first]
    other = signed.mirror2 if first == "mirror1" else signed.mirror1
    policy = signed.policy(signed.key if key == "key" else signed.other_key, identity)
    registries_d = _registries_d(tmp_path, *(by_name[h].address for h in hosts))
    proxy = ProxyProcess(tmp_path / "proxy", signed.conf(serving, other), signed,
                         policy=policy, extra=("--registries-d", str(registries_d)))
    try:
        before = len(other.requests_seen())
        status, _, body = proxy.get("/v2/quay.io/ns/app/manifests/v1", {"Accept": OCI_MANIFEST})
        events = [e for e in proxy.events("signatures")]
    finally:
        proxy.stop()
    assert len(events) == 1 and str(events[0]["source"]).startswith(serving.address), (
        status, body[:900])
    # The other mirror is never asked for the signature (nor for anything).
    assert len(other.requests_seen()) == before
    if verdict is None:
        assert status == 200, body[:300]
        assert events[0]["ok"] is True and events[0]["signatures"] == 1
    else:
        assert status == 403, body[:300]
        message = json.loads(body)["errors"][0]["message"]
        assert verdict in message, message
    # The current library, asked about the same signatures, agrees word for word.
    attached = first == "mirror1" and "mirror1" in hosts
    theirs = go_oracle.verify(policy, "quay.io/ns/app:v1", signed.image.manifest.data,
                              sigstore=[signed.layer] if attached else None)
    assert theirs.get("allowed") is (verdict is None), theirs
    if verdict is not None:
        assert message == f"Source image rejected: {theirs['reason']}", (message, theirs)


@pytest.mark.parametrize(("first", "ok"), [("mirror1", True), ("mirror2", False)])
def test_check_verifies_signatures_like_serve(signed: Signed, tmp_path: Path, first: str,
                                              ok: bool) -> None:
    """`mirrorlab check` reads and verifies the same signatures: ok where the serving
    mirror holds them, fails (with the fix) where it does not."""
    import subprocess
    import sys

    serving = signed.mirror1 if first == "mirror1" else signed.mirror2
    other = signed.mirror2 if first == "mirror1" else signed.mirror1
    (tmp_path / "registries.conf").write_text(signed.conf(serving, other))
    (tmp_path / "policy.json").write_text(signed.policy(signed.key, "matchRepository"))
    registries_d = _registries_d(tmp_path, signed.mirror1.address, signed.mirror2.address)
    result = subprocess.run(
        [sys.executable, "-m", "mirrorlab", "check", "--json", "quay.io/ns/app:v1",
         "--registries-conf", str(tmp_path / "registries.conf"), "--registries-conf-dir",
         str(tmp_path / "d"), "--policy", str(tmp_path / "policy.json"), "--registries-d",
         str(registries_d), "--certs-dir", str(signed.certs_d), "--offline-names",
         "--resolve", "quay.io=127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    verdict = json.loads(result.stdout.splitlines()[0])
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert verdict["verdict"] == ("ok" if ok else "fails"), verdict
    if not ok:
        assert "A signature was required, but no signature exists" in verdict["cause"]
        assert any("copy the signatures with the image" in fix for fix in verdict["fixes"])
