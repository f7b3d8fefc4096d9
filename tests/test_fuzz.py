"""A short coverage-guided fuzz run of every reader of outside input (`make fuzz` runs
longer): each target must end without a crash, from the golden seeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fuzz import TARGETS

ROOT = Path(__file__).parents[1]
SECONDS = 6


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_run_finds_no_crash(tmp_path: Path, target: str) -> None:
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", target, str(corpus),
         f"-max_total_time={SECONDS}", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS * 10,
        env={**os.environ, "MIRRORLAB_FUZZ_WORK": str(tmp_path / "work")})
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*"))
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
    runs = [line for line in result.stderr.splitlines() if "number_of_executed_units" in line]
    assert runs and int(runs[0].split(":")[-1]) > 100, result.stderr[-1000:]
