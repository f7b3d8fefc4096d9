"""The demo's reports mark every response that only resilient mode could serve."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mirrorlab.harness.demo import AttemptRecord, StepResult
from mirrorlab.harness.report import _html, _markdown
from mirrorlab.harness.scenario import load_scenario

RESCUE = AttemptRecord("blob", "q.io/a@sha256:ab", "m2/a", "served", "", 1.0, True,
                       ("sticky", "blob"))
PLAIN = AttemptRecord("manifest", "q.io/a:1", "m1/a", "served", "", 1.0, False)


@pytest.mark.parametrize(("attempts", "marked"), [([PLAIN, RESCUE], True), ([PLAIN], False)])
def test_rescues_are_marked(attempts: list[AttemptRecord], marked: bool) -> None:
    scenario = load_scenario(None)
    state: Any = SimpleNamespace(backend_plural="processes", backend_reason="test")
    result = StepResult(1, "pull", "pull", ref="q.io/a:1", served_by="m1/a", attempts=attempts)
    note = "a node in sticky or blob mode fails here"
    assert (note in _markdown(scenario, state, [result])) is marked
    assert (note in _html(scenario, state, [result])) is marked


def test_the_html_report_renders_in_a_browser(tmp_path: Path) -> None:
    """Debian's chromium, headless, loads the report: the DOM it built holds every step
    and the rescue note, and a screenshot of the page is drawn."""
    import subprocess

    scenario = load_scenario(None)
    state: Any = SimpleNamespace(backend_plural="processes", backend_reason="test")
    steps = [StepResult(1, "pull while mirror1 is down", "pull", ref="q.io/a:1",
                        served_by="m2/a", attempts=[PLAIN, RESCUE]),
             StepResult(2, "stop mirror2", "action")]
    page = tmp_path / "report.html"
    page.write_text(_html(scenario, state, steps))
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,700"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "pull while mirror1 is down" in dom and "stop mirror2" in dom
    assert "a node in sticky or blob mode fails here" in dom
    subprocess.run([*browser, f"--screenshot={tmp_path / 'shot.png'}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert (tmp_path / "shot.png").stat().st_size > 10_000
