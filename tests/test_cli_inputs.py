"""One loader, one behaviour, in every command (issue 11, "also seen"): an auth.json that
`explain` refuses is refused by `serve` and by a reload too; bad `--listen` values and a
port in use end on one `error:` line; `--authfile` is spelled as podman and skopeo spell it."""

from __future__ import annotations

import base64
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorlab.cli import build_parser
from mirrorlab.proxy.authfile import load_auth_files, parse_auth_file
from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.explain import NodeConfig
from mirrorlab.proxy.paths import NodeFiles

ACCEPT = '{"default": [{"type": "insecureAcceptAnything"}]}'
GOOD = base64.b64encode(b"user:secret").decode()

BAD_ENTRIES = [
    # the auth value of entry "other.io", what the error says after the file name
    ("!!!", 'credentials for "other.io" are not valid base64'),
    (GOOD[:-1], 'credentials for "other.io" are not valid base64'),  # padding cut
    (GOOD + "=", 'credentials for "other.io" are not valid base64'),
    ("dXNl cjpzZWNyZXQ=", 'credentials for "other.io" are not valid base64'),
    (base64.b64encode(b"\xffuser:x").decode(), 'credentials for "other.io" are not valid base64'),
]


def _auth_json(bad: str) -> str:
    return json.dumps({"auths": {"quay.io": {"auth": GOOD}, "other.io": {"auth": bad}}})


@pytest.mark.parametrize(("value", "message"), BAD_ENTRIES)
@pytest.mark.parametrize("legacy", [False, True])
def test_an_entry_that_does_not_decode_is_refused_at_load(tmp_path: Path, value: str,
                                                         message: str, legacy: bool) -> None:
    """Whatever is looked up later: the file is refused when it is read."""
    path = tmp_path / "auth.json"
    text = _auth_json(value)
    path.write_text(json.dumps(json.loads(text)["auths"]) if legacy else text)
    with pytest.raises(ConfigError) as caught:
        load_auth_files([(str(path), legacy)])
    assert str(caught.value) == f"{path}: {message}"


def test_entries_that_decode_still_load() -> None:
    parsed = parse_auth_file(json.dumps({"auths": {
        "a.io": {"auth": GOOD}, "b.io": {"auth": ""}, "c.io": {"auth": None},
        "d.io": {"auth": base64.b64encode(b"no-colon").decode()},
        "e.io": {"identitytoken": "t"}}}), "/auth.json")
    assert set(parsed.auths) == {"a.io", "b.io", "c.io", "d.io", "e.io"}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "registries.conf").write_text("")
    (tmp_path / "policy.json").write_text(ACCEPT)
    (tmp_path / "auth.json").write_text(_auth_json(GOOD))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _argv(files: Path, auth_flag: str = "--authfile") -> list[str]:
    return ["--registries-conf", str(files / "registries.conf"),
            "--policy", str(files / "policy.json"), auth_flag, str(files / "auth.json")]


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_node_config_refuses_the_file(files: Path) -> None:
    (files / "auth.json").write_text(_auth_json("!!!"))
    node = NodeFiles.from_environment(auth_file=str(files / "auth.json"),
                                      registries_conf=str(files / "registries.conf"),
                                      policy=str(files / "policy.json"))
    with pytest.raises(ConfigError) as caught:
        NodeConfig.load(node)
    assert str(caught.value) == (f'{files}/auth.json: credentials for "other.io" are not '
                                 "valid base64")


@pytest.mark.parametrize("command", ["explain", "serve"])
def test_every_command_refuses_the_file(files: Path, command: str) -> None:
    """explain refused it only when a source looked the entry up; serve started anyway."""
    (files / "auth.json").write_text(_auth_json("!!!"))
    extra = ["quay.io/ns/app:1"] if command == "explain" else ["--listen", "127.0.0.1:0"]
    try:
        result = _run(command, *_argv(files), *extra, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} started with an auth.json it cannot read")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f'error: {files}/auth.json: credentials for "other.io" are not '
                             "valid base64\n")


def test_reload_keeps_the_old_configuration(files: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    from mirrorlab.proxy.resolve_table import ResolveTable
    from mirrorlab.proxy.server import Proxy, ServeOptions

    node = NodeFiles.from_environment(auth_file=str(files / "auth.json"),
                                      registries_conf=str(files / "registries.conf"),
                                      policy=str(files / "policy.json"))
    proxy = Proxy(ServeOptions(files=node, reload_interval=0,
                               resolve=ResolveTable(offline=True)))
    before = proxy.config
    (files / "auth.json").write_text(_auth_json("!!!"))
    with caplog.at_level(logging.INFO, logger="mirrorlab"):
        proxy.reload()
    assert proxy.config is before
    assert [json.loads(r.getMessage())["ok"] for r in caplog.records] == [False]
    assert 'credentials for \\"other.io\\" are not valid base64' in caplog.text


@pytest.mark.parametrize("flag", ["--authfile", "--auth-file"])
@pytest.mark.parametrize("command", ["explain", "serve"])
def test_authfile_is_spelled_as_podman_spells_it(flag: str, command: str) -> None:
    args = build_parser().parse_args([command, flag, "/x/auth.json",
                                      *(["quay.io/a"] if command == "explain" else [])])
    assert args.auth_file == "/x/auth.json"


def test_explain_reads_credentials_through_authfile(files: Path) -> None:
    result = _run("explain", "--json", *_argv(files, "--authfile"), "quay.io/ns/app:1")
    assert result.returncode == 0, result.stderr
    credentials = json.loads(result.stdout)["sources"][0]["credentials"]
    assert credentials == {"file": f"{files}/auth.json", "key": "quay.io", "helper": None}


LISTEN = [
    # --listen, the error after "error: "
    ("127.0.0.1:99999", "--listen '127.0.0.1:99999': port 99999 is not in 0-65535"),
    ("127.0.0.1:65536", "--listen '127.0.0.1:65536': port 65536 is not in 0-65535"),
    ("127.0.0.1:" + "9" * 5000, "is not in 0-65535"),
    ("127.0.0.1:-1", "--listen '127.0.0.1:-1': expected ADDRESS:PORT"),
    ("127.0.0.1:", "--listen '127.0.0.1:': expected ADDRESS:PORT"),
    ("127.0.0.1", "--listen '127.0.0.1': expected ADDRESS:PORT"),
    ("127.0.0.1:\uff15\uff10", "--listen '127.0.0.1:\uff15\uff10': expected ADDRESS:PORT"),
    ("::1:5000", "--listen '::1:5000': an IPv6 address goes in brackets: [ADDRESS]:PORT"),
    ("[::1:5000", "--listen '[::1:5000': expected ADDRESS:PORT"),
    ("[]:5000", "--listen '[]:5000': expected ADDRESS:PORT"),
    ("[127.0.0.1]:5000", "--listen '[127.0.0.1]:5000': [127.0.0.1] is not an IPv6 address"),
]


@pytest.mark.parametrize(("listen", "message"), LISTEN)
def test_bad_listen_is_one_line(files: Path, listen: str, message: str) -> None:
    result = _run("serve", *_argv(files), "--listen", listen, timeout=20)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), \
        result.stderr[-2000:]
    assert message in result.stderr


def test_a_port_in_use_is_one_line(files: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("serve", *_argv(files), "--listen", f"127.0.0.1:{port}", timeout=20)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # no "Unclosed client session"
    assert result.stderr.startswith(f"error: listening on 127.0.0.1:{port}: ")
    assert "address already in use" in result.stderr
