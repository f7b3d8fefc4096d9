"""`mirrorlab explain` as a user runs it: output shapes, file selection, errors and exit codes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorlab.cli import main

from .conftest import DIGEST

ACCEPT = '{"default": [{"type": "insecureAcceptAnything"}]}'
CONF = """
[[registry]]
location = "quay.io/ns"
blocked = true
[[registry.mirror]]
location = "mirror.local:5000/q"
[[registry.mirror]]
location = "plain.local/q"
insecure = true
pull-from-mirror = "digest-only"
"""


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rendered node tree and an empty HOME, so nothing of this machine leaks in."""
    root = tmp_path / "root"
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/registries.conf").write_text(CONF)
    (root / "etc/containers/policy.json").write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"quay.io": [{"type": "insecureAcceptAnything"}]}},
    }))
    certs = root / "etc/docker/certs.d/mirror.local:5000"
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_text("not checked here")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_json_lines_schema(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "explain", "--json", "--root", str(node),
                           "quay.io/ns/app:1", f"quay.io/ns/app@{DIGEST}", "busybox")
    assert (status, err) == (0, "")
    tag, digest, hub = (json.loads(line) for line in out.splitlines())
    assert tag["reference"] == "quay.io/ns/app:1"
    assert tag["policy"] == {"allowed": True, "needs_signatures": False, "scope": "quay.io",
                             "reason": "insecureAcceptAnything"}
    assert [(s["reference"], s["mirror"], s["insecure"], s["blocked"]) for s in tag["sources"]] == [
        ("mirror.local:5000/q/app:1", True, False, False),
        ("quay.io/ns/app:1", False, False, True),
    ]
    assert tag["sources"][0]["certs_dir"] == f"{node}/etc/docker/certs.d/mirror.local:5000"
    assert tag["sources"][0]["ca_files"] == [f"{node}/etc/docker/certs.d/mirror.local:5000/ca.crt"]
    assert [s["reference"] for s in digest["sources"]] == [
        f"mirror.local:5000/q/app@{DIGEST}", f"plain.local/q/app@{DIGEST}",
        f"quay.io/ns/app@{DIGEST}"]
    assert digest["sources"][1]["insecure"] is True
    assert hub["policy"]["allowed"] is False and hub["policy"]["scope"] == "default"
    assert hub["sources"][0]["connect_host"] == "registry-1.docker.io"


def test_text_output(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "explain", "--root", str(node), "quay.io/ns/app:1")
    assert status == 0
    assert "policy: allowed by docker scope 'quay.io'" in out
    assert "1. mirror.local:5000/q/app:1  (mirror)" in out
    assert "2. quay.io/ns/app:1  (primary; BLOCKED by [[registry]] 'quay.io/ns'" in out
    assert "1 CA file(s)" in out


def test_credentials_key_is_reported(node: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    auth = tmp_path / "auth.json"
    secret = base64.b64encode(b"user:hunter2").decode()
    auth.write_text(json.dumps({"auths": {"mirror.local:5000/q": {"auth": secret}}}))
    status, out, _ = run(capsys, "explain", "--json", "--root", str(node), "--auth-file",
                         str(auth), "quay.io/ns/app:1")
    assert status == 0
    sources = json.loads(out)["sources"]
    assert sources[0]["credentials"] == {"file": str(auth), "key": "mirror.local:5000/q",
                                         "helper": None}
    assert sources[1]["credentials"] is None
    assert "hunter2" not in out


def test_user_files_win_over_system_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """As podman: ~/.config/containers/registries.conf replaces /etc and its drop-ins."""
    home = tmp_path / "home"
    (home / ".config/containers").mkdir(parents=True)
    (home / ".config/containers/registries.conf").write_text(
        '[[registry]]\nlocation = "user.io"\n[[registry.mirror]]\nlocation = "user-mirror.io"\n')
    (home / ".config/containers/policy.json").write_text(ACCEPT)
    monkeypatch.setenv("HOME", str(home))
    status, out, _ = run(capsys, "explain", "--json", "user.io/a")
    assert status == 0
    assert [s["reference"] for s in json.loads(out)["sources"]] == [
        "user-mirror.io/a:latest", "user.io/a:latest"]


ERRORS = [
    # arguments after the node tree, expected fragment of the one stderr line
    (["--registries-conf", "{tmp}/missing.conf", "quay.io/a"],
     'loading registries configuration "{tmp}/missing.conf": open'),
    (["--registries-conf", "{tmp}/bad.conf", "quay.io/a"], 'bad.conf": line 1: invalid condition'),
    (["--policy", "{tmp}/bad.json", "quay.io/a"], 'invalid policy in "{tmp}/bad.json"'),
    (["quay.io/NS/app"], 'invalid reference "quay.io/NS/app"'),
    ([f"quay.io/a:1@{DIGEST}"], "both a tag and digest"),
    (["--registries-conf", "{tmp}/rewrite.conf", "foo.com/team/app:1"],
     "rewriting reference: repository name must be canonical"),
    (["--no-such-flag", "x"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_errors_are_one_line_with_status_2(node: Path, tmp_path: Path, args: list[str],
                                           message: str) -> None:
    (tmp_path / "bad.conf").write_text('[[registry]]\n[[registry]]\nprefix = "a.io"\n')
    (tmp_path / "bad.json").write_text('{"default": []}')
    (tmp_path / "rewrite.conf").write_text('[[registry]]\nprefix = "foo.com/team"\n'
                                           'location = "docker.io"\n')
    argv = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "mirrorlab.cli", "explain", "--root", str(node), *argv],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message.format(tmp=tmp_path) in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_listens_on_loopback_by_default() -> None:
    from mirrorlab.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.listen == "127.0.0.1:5000"
