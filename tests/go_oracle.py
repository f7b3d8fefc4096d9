"""Client of the Go test oracle (`tests/oracle`, built by `make setup`).

The oracle links the real containers/image (`go.podman.io/image/v5`) and the operator's
runtime-utils; it reads one JSON request per line and answers one JSON object per line.
`verify` serves an image and its signatures from a loopback registry of the oracle's own
and answers IsRunningImageAllowed's verdict and reason.
`GoOracle` starts it once and keeps it open; the session fixture `go_oracle` fails (never
skips) when the binary is missing or older than its sources, and prints the pinned module
versions in the test output.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "oracle"
BINARY = Path(os.environ.get("MIRRORLAB_ORACLE", ROOT / ".venv" / "bin" / "mirrorlab-oracle"))
UPSTREAM = ("go.podman.io/image/v5", "github.com/openshift/runtime-utils")
"""The modules the differential tests ask; their versions are printed with the results."""


class OracleError(RuntimeError):
    """The oracle could not run a request (a bad request, or the process died)."""


class GoOracle:
    """One long-running oracle process; `request` sends a line and reads the answer."""

    def __init__(self, binary: Path) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close)
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env={"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir()},
        )
        self.versions: dict[str, Any] = self.request("version")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request; raises `OracleError` when the oracle failed to answer it."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            stdin.flush()
            line = stdout.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            raise OracleError(f"the oracle exited: {self._stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise OracleError(f"{op}: {answer.get('error')}")
        return answer

    def sources(self, refs: Sequence[str], *, conf: str | None = None,
                conf_path: str | None = None,
                drop_in_dirs: Sequence[str] = ()) -> dict[str, Any]:
        """`sysregistriesv2` pull sources: `config_error`, or `results` per reference."""
        fields: dict[str, Any] = {"refs": list(refs), "drop_in_dirs": list(drop_in_dirs)}
        if conf is not None:
            fields["conf"] = conf
        if conf_path is not None:
            fields["conf_path"] = conf_path
        return self.request("sources", **fields)

    def policy(self, policy: str, refs: Sequence[str], *, evaluate: bool = True
               ) -> dict[str, Any]:
        """`signature.NewPolicyFromBytes`: `parse_error`, or per reference the scope,
        the requirement types and (`evaluate`) `IsRunningImageAllowed` for an unsigned image."""
        return self.request("policy", policy=policy, refs=list(refs), evaluate=evaluate)

    def render(self, template: str, *, insecure: Sequence[str] = (),
               blocked: Sequence[str] = (), idms: Sequence[dict[str, Any]] = (),
               itms: Sequence[dict[str, Any]] = (), icsp: Sequence[dict[str, Any]] = ()
               ) -> dict[str, Any]:
        """runtime-utils `EditRegistriesConfig` between the operator's TOML decode and encode:
        `edit_error`, or `toml`."""
        return self.request("render", template=template, insecure=list(insecure),
                            blocked=list(blocked), idms=list(idms), itms=list(itms),
                            icsp=list(icsp))

    def copy(self, source: str, dest_dir: str, *, registries_conf: str, policy: str,
             certs_dir: str = "", auth_file: str = "", timeout: int = 60) -> dict[str, Any]:
        """`copy.Image` from `docker://source` into `dir:dest_dir`: `copied`, `copy_error`,
        `log` (the library's lines about sources tried)."""
        return self.request("copy", source=source, dest_dir=dest_dir,
                            registries_conf_path=registries_conf, policy_path=policy,
                            certs_dir=certs_dir, auth_file=auth_file, timeout_seconds=timeout)

    def verify(self, policy: str, reference: str, manifest: bytes, *,
               media_type: str = "application/vnd.oci.image.manifest.v1+json",
               simple: Sequence[bytes] = (),
               sigstore: Sequence[dict[str, Any]] | None = None,
               attachments: bool = True) -> dict[str, Any]:
        """`IsRunningImageAllowed` on `docker://reference` served by the oracle's own
        loopback registry: the manifest, the simple-signing blobs in its lookaside store,
        the sigstore layers (`media_type`, `payload` bytes, `annotations`) as the
        `sha256-<hex>.sig` attachment (None: no attachment). Answers `parse_error`,
        `reference_error`, `source_error`, or `allowed`, `reason`, `policy_error` (the
        reason is a PolicyRequirementError) and `requests` (what the library fetched)."""
        layers = None if sigstore is None else [
            {"media_type": layer.get("media_type",
                                     "application/vnd.dev.cosign.simplesigning.v1+json"),
             "payload_b64": base64.b64encode(layer["payload"]).decode(),
             "annotations": dict(layer.get("annotations", {}))}
            for layer in sigstore]
        fields: dict[str, Any] = {
            "verify_policy": policy, "verify_reference": reference,
            "verify_manifest_b64": base64.b64encode(manifest).decode(),
            "verify_media_type": media_type,
            "verify_simple_b64": [base64.b64encode(blob).decode() for blob in simple],
            "verify_no_attachments": not attachments,
        }
        if layers is not None:
            fields["verify_sigstore"] = layers
        return self.request("verify", **fields)

    def pinned(self) -> str:
        modules = self.versions.get("modules", {})
        return ", ".join(f"{name} {modules.get(name, '?')}" for name in UPSTREAM)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode(errors="replace") or "(no stderr)"


def missing_reason(binary: Path = BINARY) -> str | None:
    """Why the oracle cannot be used as built, or None."""
    if not binary.exists():
        return f"the Go oracle {binary} is missing: run `make setup` (it builds tests/oracle)"
    built = binary.stat().st_mtime
    stale = [p.name for p in sorted(SOURCES.iterdir())
             if p.suffix in (".go", ".mod", ".sum") and p.stat().st_mtime > built]
    if stale and "MIRRORLAB_ORACLE" not in os.environ:
        return (f"the Go oracle {binary} is older than tests/oracle/{', '.join(stale)}: "
                "run `make setup`")
    return None


@pytest.fixture(scope="session")
def go_oracle(pytestconfig: pytest.Config) -> Iterator[GoOracle]:
    """The running oracle, shared by the session; fails the test when it is not built."""
    reason = missing_reason()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    oracle = GoOracle(BINARY)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nGo oracle: {oracle.pinned()} ({oracle.versions.get('go')})")
    try:
        yield oracle
    finally:
        oracle.close()
