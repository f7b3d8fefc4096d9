"""The demo's reports mark every response that only resilient mode could serve."""

from __future__ import annotations

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
