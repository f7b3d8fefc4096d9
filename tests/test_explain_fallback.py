"""`explain` names the fallback mode and, per source, what each mode does with a blob that
fails there; its text fits a terminal's 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorlab.cli import main
from mirrorlab.proxy.fallback import FallbackMode, on_blob_failure

NAMES = ["m1/a", "m2/a", "q/a"]
STORIES = [
    # mode, index of the source that served the manifest, what a failed blob does
    ("sticky", 0, "the pull fails"),
    ("blob", 0, "5xx, timeout, BLOB_UNKNOWN or TOOMANYREQUESTS: tries m2/a, q/a; anything "
                "else fails the pull"),
    ("blob", 1, "5xx, timeout, BLOB_UNKNOWN or TOOMANYREQUESTS: tries q/a; anything else "
                "fails the pull"),
    ("blob", 2, "the pull fails (no later source)"),
    ("resilient", 1, "any failure: tries m1/a, q/a (beyond every node)"),
]


@pytest.mark.parametrize(("mode", "index", "story"), STORIES)
def test_what_a_failed_blob_does(mode: str, index: int, story: str) -> None:
    assert on_blob_failure(FallbackMode(mode), NAMES, index) == story


CONF = """[[registry]]
location = "quay.io/ns"
blocked = true
[[registry.mirror]]
location = "mirror-one.example.com/ns"
[[registry.mirror]]
location = "mirror-two.example.com/ns"
"""


@pytest.mark.parametrize("mode", ["sticky", "blob", "resilient"])
def test_explain_shows_the_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                mode: str) -> None:
    (tmp_path / "registries.conf").write_text(CONF)
    (tmp_path / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    files = ["--registries-conf", str(tmp_path / "registries.conf"),
             "--policy", str(tmp_path / "policy.json"), "--fallback", mode]
    assert main(["explain", *files, "quay.io/ns/app:1"]) == 0
    text = capsys.readouterr().out
    assert f"{mode} (selected):" in text
    # Only a single word longer than a line (a long path) may overflow.
    long = [line for line in text.splitlines() if len(line) > 80]
    assert all(" " not in line.strip() for line in long), long
    assert main(["explain", "--json", *files, "quay.io/ns/app:1"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["fallback"] == mode
    first, second, blocked = (s["on_blob_failure"] for s in found["sources"])
    assert first["sticky"] == "the pull fails"
    assert "tries mirror-two.example.com/ns/app:1;" in first["blob"]
    assert second["blob"] == "the pull fails (no later source)"
    assert blocked == {}  # a blocked source serves nothing
