"""The lab and the demo, for real: the built-in scenario under both registry backends, and
`mirrorlab lab up|status|down` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirrorlab.harness.demo import run_demo
from mirrorlab.harness.lab import LabState, alive
from mirrorlab.harness.scenario import load_scenario


@pytest.mark.parametrize("backend", ["process", "container"])
def test_builtin_scenario_plays_as_expected(tmp_path: Path, backend: str) -> None:
    """Every step checks its serving source, the pulled digest and who was contacted."""
    results, report = run_demo(load_scenario(None), tmp_path / "lab", backend=backend)
    failures = {r.title: r.failures for r in results if r.failures}
    assert not failures, failures
    assert not (tmp_path / "lab" / "state.json").exists(), "the lab went down"
    html = report.with_suffix(".html").read_text()
    assert html.count('class="bar"') > 10 and "registry.access.redhat.com" in html
    plural = {"process": "processes", "container": "containers"}[backend]
    assert f"Registries ran as {plural}" in report.with_suffix(".md").read_text()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def test_lab_up_status_down(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    up = run("lab", "up", "--workdir", str(workdir), "--backend", "process")
    try:
        assert up.returncode == 0, up.stderr
        assert "registries run as processes (asked for)" in up.stdout
        assert "podman pull --tls-verify=false 127.0.0.1:" in up.stdout
        state = LabState.load(workdir)
        assert alive(state.proxy_pid) and all(alive(r.front_pid) for r in state.registries)
        again = run("lab", "up", "--workdir", str(workdir), "--backend", "process")
        assert again.returncode == 2 and "already up" in again.stderr
        status = run("lab", "status", "--workdir", str(workdir))
        assert status.returncode == 0 and status.stdout.count("registry running") == 6
    finally:
        down = run("lab", "down", "--workdir", str(workdir))
    assert down.returncode == 0 and down.stdout.count("stopped") == 7
    assert not alive(state.proxy_pid)
    assert not any(alive(r.front_pid) or alive(int(r.handle.ident)) for r in state.registries)
    assert "no lab is up" in run("lab", "down", "--workdir", str(workdir)).stdout


def test_scenario_with_a_token_auth_registry(tmp_path: Path) -> None:
    scenario = load_scenario(str(Path(__file__).parent / "scenarios" / "token-auth.yaml"))
    results, _ = run_demo(scenario, tmp_path / "lab", backend="process", keep=True)
    try:
        assert {r.title: r.failures for r in results if r.failures} == {}
        first = [a for a in results[0].attempts if a.kind == "manifest"]
        assert [(a.source.split("/")[0], a.outcome) for a in first] == [
            ("mirror.example.com", "not_found"), ("private.example.com", "served")]
        tokens = (tmp_path / "lab" / "logs").glob("tokens-*.log")
        assert [p.name for p in tokens] == ["tokens-private.example.com.log"]
    finally:
        run("lab", "down", "--workdir", str(tmp_path / "lab"))
