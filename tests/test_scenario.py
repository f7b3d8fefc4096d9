"""Scenario files: the built-in one parses; bad ones get one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorlab.harness.scenario import load_scenario, parse_scenario
from mirrorlab.proxy.errors import ConfigError

BASE = """
cas: {lab: {trust: system}}
images: {app: {layers: [1024]}}
registries:
  quay.io: {tls: lab, content: [{repo: ns/app, image: app, tag: v1}]}
config: {crs: ""}
steps:
"""

BAD = [
    ("name: x\nbogus: 1\n", "unknown key 'bogus'"),
    (BASE.replace("trust: system", "trust: everyone"), "cas.lab.trust: one of"),
    (BASE.replace("tls: lab", "tls: other"), "registries.quay.io.tls: 'other' is not one of"),
    (BASE.replace("image: app", "image: nope"), "content[0].image: not one of the images"),
    (BASE.replace("repo: ns/app", "repo: NS/App"), "repository name must be lowercase"),
    (BASE.replace("layers: [1024]", "layers: []"), "images.app.layers"),
    (BASE.replace("quay.io:", "quay.io:5000:"), "a registry name is a host name"),
    (BASE + "- {pull: 'quay.io/ns/app@{nope}'}\n", "{nope} names no image"),
    (BASE + "- {pull: quay.io/ns/app:v1, stop: quay.io}\n", "exactly one of pull, stop, fault"),
    (BASE + "- {stop: other.io}\n", "steps[0].stop: 'other.io' is not a registry"),
    (BASE + "- {fault: {registry: quay.io, kind: explode}}\n", "fault.kind: one of"),
    (BASE + "- {pull: quay.io/ns/app:v1, expect: {served_by: x.io}}\n", "'x.io' is not a"),
    (BASE + "- {pull: quay.io/ns/app:v1, expect: {when: now}}\n", "unknown key 'when'"),
    ("steps: [\n", "invalid YAML"),
    (BASE.replace('config: {crs: ""}', "config: {}"), "config.crs"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_scenarios(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, "s.yaml")
    assert str(caught.value).startswith("s.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_builtin_scenario_covers_the_demo() -> None:
    scenario = load_scenario(None)
    assert {ca.trust for ca in scenario.cas} == {"system", "additionalTrustedCA"}
    kinds = [("pull" if s.pull else "stop" if s.stop else "fault") for s in scenario.steps]
    assert kinds.count("stop") == 2 and kinds.count("fault") == 1
    assert [s.expect.ok for s in scenario.steps if s.pull][-3:] == [False, False, False]
    for kind in ("ImageDigestMirrorSet", "ImageTagMirrorSet", "allowedRegistries",
                 "insecureRegistries", "additionalTrustedCA", "NeverContactSource"):
        assert kind in scenario.crs


def test_the_builtin_scenario_loads_outside_the_source_tree(tmp_path: Path) -> None:
    """The built-in scenario is package data of `mirrorlab.harness`: it loads from any
    directory (it was looked up as a top-level `harness`, found only from the tree)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "from mirrorlab.harness.scenario import load_scenario; "
         "print(load_scenario(None).name)"], cwd=tmp_path, capture_output=True, text=True,
        check=False)
    assert result.returncode == 0 and result.stdout.strip() == "seed-failover", result.stderr
