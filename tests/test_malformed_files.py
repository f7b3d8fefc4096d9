"""Files no parser can take (issue 11, item 2): nested 100,000 levels deep, numbers longer
than Python converts, dates that do not exist. Every reader of outside input ends on its
own one-line error naming the file, never on a traceback (RecursionError, ValueError)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mirrorlab.harness.scenario import load_scenario
from mirrorlab.proxy.authfile import load_auth_files
from mirrorlab.proxy.errors import MirrorlabError
from mirrorlab.proxy.openshift.crs import load_crs
from mirrorlab.proxy.openshift.migrate import migrate
from mirrorlab.proxy.policy import load_policy
from mirrorlab.proxy.registries_conf import RegistriesConfPaths, load_registries_conf

DEPTH = 100_000
DEEP_JSON_ARRAY = "[" * DEPTH + "]" * DEPTH
DEEP_JSON_OBJECT = '{"default": ' * DEPTH + "[]" + "}" * DEPTH
DEEP_AUTHS = '{"auths": ' + '{"a": ' * DEPTH + "{}" + "}" * DEPTH + "}"
LONG_NUMBER = '{"default": [{"type": "reject", "x": ' + "9" * 5000 + "}]}"
DEEP_TOML_ARRAY = "unqualified-search-registries = " + "[" * DEPTH + "]" * DEPTH + "\n"
DEEP_TOML_TABLE = "x = " + "{a = " * DEPTH + "1" + "}" * DEPTH + "\n"
DEEP_TOML_KEY = ".".join(["a"] * DEPTH) + " = 1\n"
DEEP_YAML_FLOW = "[" * DEPTH + "]" * DEPTH + "\n"
DEEP_YAML_MAPPING = "kind: " + "{a: " * DEPTH + "1" + "}" * DEPTH + "\n"
DEEP_YAML_BLOCK = "".join(" " * i + "- " for i in range(0, 4000, 2)) + "x\n"
LONG_YAML_NUMBER = "kind: ImageDigestMirrorSet\nspec: " + "9" * 5000 + "\n"
NO_SUCH_DATE = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, created: 2024-02-30}\n"
NO_SUCH_MONTH = "name: x\ndescription: 2024-13-01\n"

ACCEPT = '{"default": [{"type": "insecureAcceptAnything"}]}'

EXPLAIN = [
    # flag, file name, content, the error line after "error: " ({path}: the file)
    ("--policy", "policy.json", DEEP_JSON_ARRAY,
     'invalid policy in "{path}": invalid JSON: nested too deeply'),
    ("--policy", "policy.json", DEEP_JSON_OBJECT,
     'invalid policy in "{path}": invalid JSON: nested too deeply'),
    ("--policy", "policy.json", LONG_NUMBER,
     'invalid policy in "{path}": invalid JSON: a number has more than 4300 digits'),
    ("--auth-file", "auth.json", DEEP_JSON_ARRAY, "{path}: invalid JSON: nested too deeply"),
    ("--auth-file", "auth.json", DEEP_AUTHS, "{path}: invalid JSON: nested too deeply"),
    ("--auth-file", "auth.json", '{"auths": {"a.io": {"auth": ' + "1" * 5000 + "}}}",
     "{path}: invalid JSON: a number has more than 4300 digits"),
    ("--registries-conf", "registries.conf", DEEP_TOML_ARRAY,
     'loading registries configuration "{path}": toml: '),
    ("--registries-conf", "registries.conf", DEEP_TOML_TABLE,
     'loading registries configuration "{path}": toml: '),
    ("--registries-conf", "registries.conf", DEEP_TOML_KEY,
     'loading registries configuration "{path}": toml: '),
    ("--registries-conf-dir", "drop-in.d/50-deep.conf", DEEP_TOML_ARRAY,
     'loading drop-in registries configuration "{path}": toml: '),
]


@pytest.mark.parametrize(("flag", "name", "content", "message"), EXPLAIN)
def test_explain_refuses_in_one_line(tmp_path: Path, flag: str, name: str, content: str,
                                     message: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    (tmp_path / "empty.conf").write_text("")
    (tmp_path / "accept.json").write_text(ACCEPT)
    files = {"--registries-conf": str(tmp_path / "empty.conf"),
             "--policy": str(tmp_path / "accept.json"),
             "--auth-file": str(tmp_path / "none.json")}
    files[flag] = str(path.parent if flag == "--registries-conf-dir" else path)
    argv = [arg for pair in files.items() for arg in pair]
    result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", "explain", *argv,
                             "quay.io/ns/app:1"], capture_output=True, text=True, timeout=120,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, \
        result.stderr[-2000:]
    assert result.stderr.startswith("error: " + message.format(path=path)), result.stderr


def _conf(path: str) -> object:
    return load_registries_conf(RegistriesConfPaths(path, True, ()))


LOADERS: list[tuple[str, Callable[[str], object], str, str]] = [
    # what, loader, content, a part of the error (its end, for all but tomlkit's own)
    ("policy", load_policy, DEEP_JSON_ARRAY, "invalid JSON: nested too deeply"),
    ("policy", load_policy, LONG_NUMBER, "invalid JSON: a number has more than 4300 digits"),
    ("auth", lambda path: load_auth_files([(path, False)]), DEEP_AUTHS,
     "invalid JSON: nested too deeply"),
    ("auth legacy", lambda path: load_auth_files([(path, True)]), DEEP_JSON_OBJECT,
     "invalid JSON: nested too deeply"),
    ("registries.conf", _conf, DEEP_TOML_ARRAY, "toml: "),
    ("registries.conf", _conf, DEEP_TOML_TABLE, "toml: "),
    ("registries.conf", _conf, DEEP_TOML_KEY, "toml: "),
    ("registries.conf", _conf, "a = " + "1" * 5000 + "\n", "toml: line 1: Invalid number"),
    ("CRs", lambda path: load_crs([path]), DEEP_YAML_FLOW, "invalid YAML: nested too deeply"),
    ("CRs", lambda path: load_crs([path]), DEEP_YAML_MAPPING,
     "invalid YAML: nested too deeply"),
    ("CRs", lambda path: load_crs([path]), DEEP_YAML_BLOCK, "invalid YAML: nested too deeply"),
    ("CRs", lambda path: load_crs([path]), LONG_YAML_NUMBER,
     "invalid YAML: a number has more than 4300 digits"),
    ("CRs", lambda path: load_crs([path]), NO_SUCH_DATE,
     "invalid YAML: day is out of range for month"),
    ("ICSP", lambda path: migrate([path], path + ".out"), DEEP_YAML_FLOW,
     "invalid YAML: nested too deeply"),
    ("scenario", load_scenario, DEEP_YAML_FLOW, "invalid YAML: nested too deeply"),
    ("scenario", load_scenario, DEEP_YAML_MAPPING, "invalid YAML: nested too deeply"),
    ("scenario", load_scenario, NO_SUCH_MONTH, "invalid YAML: month must be in 1..12"),
    # found by the deep-nesting probe: a list where a mapping of names belongs, keys of
    # mixed types (TypeError: unhashable type, and int < str)
    ("scenario", load_scenario, "name: x\nimages: [[1]]\n", ": images: must be a mapping"),
    ("scenario", load_scenario, "name: x\nregistries: [[1]]\n",
     ": registries: must be a mapping"),
    ("scenario", load_scenario, "{1: 2, a: 3}\n", ": unknown key 1 (known: cas, config, "),
]


@pytest.mark.parametrize(("what", "load", "content", "message"), LOADERS,
                         ids=[f"{row[0]}-{index}" for index, row in enumerate(LOADERS)])
def test_loaders_name_the_file_in_one_line(tmp_path: Path, what: str,
                                           load: Callable[[str], object], content: str,
                                           message: str) -> None:
    path = tmp_path / "input"
    path.write_text(content)
    with pytest.raises(MirrorlabError) as caught:
        load(str(path))
    text = str(caught.value)
    assert len(text.splitlines()) == 1 and str(path) in text, text
    assert message in text, text


@pytest.mark.parametrize("command", [["render", "--out", "{tmp}/node"],
                                     ["migrate-icsp", "--dest-dir", "{tmp}/out"]])
@pytest.mark.parametrize("content", [DEEP_YAML_FLOW, DEEP_YAML_MAPPING])
def test_cr_commands_refuse_in_one_line(tmp_path: Path, command: list[str],
                                        content: str) -> None:
    path = tmp_path / "crs.yaml"
    path.write_text(content)
    argv = [arg.format(tmp=tmp_path) for arg in command]
    result = subprocess.run([sys.executable, "-m", "mirrorlab.cli", *argv, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr == f"error: {path}: invalid YAML: nested too deeply\n"
