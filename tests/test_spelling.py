"""Blocked and rejected hosts reached by spelling (issue 11, item 5, routing and explain).

The proxy refuses repository names in capitals with NAME_INVALID, as a registry does
(`/v2/BLOCKED.example.org/...` escaped the entry for `blocked.example.org` and was dialled
as the same host). containers/image matches prefixes and scopes as text, so mirrorlab keeps
`host:443` distinct from `host`, and `explain` says where a spelling escapes a blocked or
rejected scope, and what to add."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mirrorlab.cli import main
from mirrorlab.proxy.explain import NodeConfig, explain
from mirrorlab.proxy.paths import NodeFiles
from mirrorlab.proxy.reference import InvalidReference
from mirrorlab.proxy.routing import route

REFUSED = [
    # request name, ns
    ("BLOCKED.example.org/ns/app", None),
    ("Blocked.example.org/ns/app", None),
    ("REJECTED.example.org_443/app", None),
    ("rejected.Example.org_443/app", None),
    ("LOCALHOST_5000/app", None),
    ("quay.io/NS/app", None),
    ("library/BusyBox", None),
    ("ns/app", "Quay.io"),
    ("ns/app", "QUAY.IO:5000"),
    ("ns/app", "Docker.io"),
    ("ns/App", "quay.io"),
    ("Quay.io/a\nb", None),  # found by the fuzz run: the name is quoted, on one line
]


@pytest.mark.parametrize(("name", "ns"), REFUSED)
def test_names_in_capitals_are_refused(name: str, ns: str | None) -> None:
    with pytest.raises(InvalidReference) as caught:
        route(name, ns)
    assert "lowercase" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    assert "digest" not in str(caught.value)  # the server would answer DIGEST_INVALID


@pytest.mark.parametrize(("name", "ns", "registry"), [
    ("blocked.example.org/ns/app", None, "blocked.example.org"),
    ("rejected.example.org_443/app", None, "rejected.example.org:443"),
    ("ns/app", "quay.io:5000", "quay.io:5000"),
])
def test_lowercase_names_still_route(name: str, ns: str | None, registry: str) -> None:
    assert route(name, ns).registry == registry


CONF = """
[[registry]]
location = "blocked.example.org"
blocked = true

[[registry]]
prefix = "quay.io/ns"
location = "quay.io/ns"
blocked = true
[[registry.mirror]]
location = "mirror.example.com/ns"

[[registry]]
location = "*.blocked.example.net"
blocked = true

[[registry]]
location = "registry.example.com:5000/team"
blocked = true
"""

REJECT = [{"type": "reject"}]
ACCEPT = [{"type": "insecureAcceptAnything"}]
SIGNED = [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/key.gpg"}]


def _policy(default: list[dict[str, str]], **docker: list[dict[str, str]]) -> str:
    return json.dumps({"default": default, "transports": {"docker": docker}})


OPEN_POLICY = _policy(ACCEPT, **{"rejected.example.org": REJECT, "docker.io/library": REJECT,
                                 "signed.example.org/apps": SIGNED,
                                 "*.rejected.example.net": REJECT})
CLOSED_POLICY = _policy(REJECT, **{"quay.io": ACCEPT, "mirror.example.com": ACCEPT,
                                   "blocked.example.org": ACCEPT})

BYPASSES = [
    # policy, reference, [(kind, spelling, how, a part of the advice)]
    (OPEN_POLICY, "blocked.example.org/a", [
        ("blocked", "BLOCKED.EXAMPLE.ORG", "case", 'default {"type": "reject"}')]),
    (OPEN_POLICY, "quay.io/ns/app:1", [
        ("blocked", "quay.io:443/ns", "port", 'also block quay.io:443/ns (a [[registry]] with '
         'prefix = "quay.io:443/ns" and blocked = true, with the same mirrors)'),
        ("blocked", "QUAY.IO/ns", "case", 'default {"type": "reject"}')]),
    # the spelling itself is warned about too
    (OPEN_POLICY, "quay.io:443/ns/app:1", [("blocked", "quay.io:443/ns", "port", "also block"),
                                           ("blocked", "QUAY.IO/ns", "case", "reject")]),
    (OPEN_POLICY, "QUAY.IO/ns/app:1", [("blocked", "quay.io:443/ns", "port", "also block"),
                                       ("blocked", "QUAY.IO/ns", "case", "reject")]),
    (OPEN_POLICY, "quay.io/other/app", []),
    (OPEN_POLICY, "a.blocked.example.net/x", [  # a wildcard covers every port, not capitals
        ("blocked", "*.BLOCKED.EXAMPLE.NET", "case", "reject")]),
    (OPEN_POLICY, "registry.example.com:5000/team/app", [  # a port of its own: capitals only
        ("blocked", "REGISTRY.EXAMPLE.COM:5000/team", "case", "reject")]),
    (OPEN_POLICY, "rejected.example.org/a", [
        ("rejected", "rejected.example.org:443", "port", 'also reject rejected.example.org:443 '
         '(transports.docker["rejected.example.org:443"] = [{"type": "reject"}])'),
        ("rejected", "REJECTED.EXAMPLE.ORG", "case", "reject")]),
    (OPEN_POLICY, "rejected.example.org:443/a", [("rejected", "rejected.example.org:443",
                                                  "port", "also reject"),
                                                 ("rejected", "REJECTED.EXAMPLE.ORG", "case",
                                                  "reject")]),
    (OPEN_POLICY, "rejected.example.org:5000/a", []),  # another port is another registry
    # Docker Hub: registry-1.docker.io is the same registry; docker.io:443 is not dialled
    # there, so it is no bypass
    (OPEN_POLICY, "busybox", [
        ("rejected", "registry-1.docker.io/library", "hub",
         "also reject registry-1.docker.io/library")]),
    (OPEN_POLICY, "registry-1.docker.io/library/busybox", [
        ("rejected", "registry-1.docker.io/library", "hub", "also reject")]),
    # a signature requirement is escaped as well
    (OPEN_POLICY, "signed.example.org/apps/x", [
        ("restricted", "signed.example.org:443/apps", "port",
         'also give signed.example.org:443/apps the requirements of signed.example.org/apps'),
        ("restricted", "SIGNED.EXAMPLE.ORG/apps", "case", "reject")]),
    (OPEN_POLICY, "a.rejected.example.net/x", [
        ("rejected", "*.REJECTED.EXAMPLE.NET", "case", "reject")]),
    # a default reject closes every spelling: nothing to warn about
    (CLOSED_POLICY, "quay.io/ns/app:1", []),
    (CLOSED_POLICY, "blocked.example.org/a", []),
    (CLOSED_POLICY, "a.blocked.example.net/x", []),
]


@pytest.fixture
def node(tmp_path: Path) -> Path:
    (tmp_path / "registries.conf").write_text(CONF)
    return tmp_path


def _config(node: Path, policy: str) -> NodeConfig:
    (node / "policy.json").write_text(policy)
    return NodeConfig.load(NodeFiles(registries_conf=str(node / "registries.conf"),
                                     policy=str(node / "policy.json")))


@pytest.mark.parametrize(("policy", "reference", "expected"), BYPASSES)
def test_explain_warns_of_spellings(node: Path, policy: str, reference: str,
                                    expected: list[tuple[str, str, str, str]]) -> None:
    found = explain(_config(node, policy), reference).warnings
    assert [(w.kind, w.spelling, w.how) for w in found] == [e[:3] for e in expected]
    for warning, (*_, advice) in zip(found, expected, strict=True):
        assert advice in warning.advice


def test_warnings_in_text_and_json(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node / "policy.json").write_text(OPEN_POLICY)
    files = ["--registries-conf", str(node / "registries.conf"),
             "--policy", str(node / "policy.json")]
    assert main(["explain", *files, "rejected.example.org/a"]) == 0
    text = " ".join(capsys.readouterr().out.split()) + "\n"  # lines wrap at 80 columns
    assert (f"warning: rejected.example.org:443 (the default port written out) is not "
            "rejected: containers/image matches policy scopes as text, so docker scope "
            f"'rejected.example.org' ({node}/policy.json) does not cover it, and the global "
            "default accepts it; also reject rejected.example.org:443 "
            '(transports.docker["rejected.example.org:443"] = [{"type": "reject"}])') in text
    assert main(["explain", "--json", *files, "quay.io/ns/app:1", "quay.io/other/a"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["warnings"][0] == {
        "kind": "blocked", "scope": "quay.io/ns", "origin": f"{node}/registries.conf:6",
        "spelling": "quay.io:443/ns", "how": "port", "decided_by": None,
        "advice": 'also block quay.io:443/ns (a [[registry]] with prefix = "quay.io:443/ns" '
                  "and blocked = true, with the same mirrors)",
        "message": "quay.io:443/ns (the default port written out) is not blocked: "
                   "containers/image matches [[registry]] prefixes as text, so 'quay.io/ns' "
                   f"({node}/registries.conf:6) does not cover it, and no entry blocks it; "
                   'also block quay.io:443/ns (a [[registry]] with prefix = "quay.io:443/ns" '
                   "and blocked = true, with the same mirrors)"}
    assert second["warnings"] == []


@pytest.mark.parametrize("path", [
    "/v2/BLOCKED.example.org/ns/app/manifests/v1",
    "/v2/Rejected.example.org_443/app/manifests/v1",
    "/v2/ns/app/manifests/v1?ns=Blocked.example.org",
    "/v2/BLOCKED.example.org/ns/app/blobs/sha256:" + "a" * 64,
    "/v2/quay.io/NS/app/manifests/v1",
])
def test_the_proxy_answers_name_invalid(node: Path, path: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from mirrorlab.proxy.resolve_table import ResolveTable
    from mirrorlab.proxy.server import Proxy, ServeOptions

    (node / "policy.json").write_text(OPEN_POLICY)
    files = NodeFiles(registries_conf=str(node / "registries.conf"),
                      policy=str(node / "policy.json"))

    async def get() -> tuple[int, dict[str, object]]:
        proxy = Proxy(ServeOptions(files=files, reload_interval=0,
                                   resolve=ResolveTable(offline=True)))
        async with TestClient(TestServer(proxy.app())) as client:
            response = await client.get(path)
            return response.status, await response.json()

    status, body = asyncio.run(get())
    assert status == 400, body
    errors = body["errors"]
    assert isinstance(errors, list) and errors[0]["code"] == "NAME_INVALID", body
