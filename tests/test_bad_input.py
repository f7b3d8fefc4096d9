"""Bad input, generated: every parser either accepts or raises its one-line error, and the
proxy answers every request path, query and header with an OCI response, never a 500."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorlab.harness.scenario import load_scenario, parse_scenario
from mirrorlab.proxy.authfile import find_credentials, parse_auth_file
from mirrorlab.proxy.errors import MirrorlabError
from mirrorlab.proxy.openshift.crs import load_crs
from mirrorlab.proxy.openshift.render import render
from mirrorlab.proxy.policy import parse_policy
from mirrorlab.proxy.reference import InvalidReference, parse_docker_reference
from mirrorlab.proxy.registries_conf import parse_registries_conf

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

REFERENCE_ALPHABET = "abcz09.-_/:@ABZ%!~ \t\n" + "é"
references = st.text(alphabet=REFERENCE_ALPHABET, max_size=300) | st.builds(
    lambda a, b, c: f"{a}/{b}{c}", st.sampled_from(["quay.io", "localhost:5000", "a.b", "x"]),
    st.text(alphabet="abc09._-/", max_size=80),
    st.sampled_from(["", ":v1", "@sha256:" + "a" * 64, "@sha256:xyz", ":" + "t" * 200]))


@FAST
@given(references)
def test_references_parse_or_say_why(text: str) -> None:
    try:
        ref = parse_docker_reference(text)
    except InvalidReference as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert parse_docker_reference(str(ref)) == ref  # normal forms are stable


toml_fragments = st.lists(st.sampled_from([
    "[[registry]]", "[[registry.mirror]]", '[registries.search]', "[aliases]",
    'location = "quay.io"', 'prefix = "*.example.com"', 'location = ""', "insecure = true",
    'insecure = "yes"', "blocked = 1", 'pull-from-mirror = "digest-only"',
    'pull-from-mirror = "x"', "mirror-by-digest-only = true", 'registries = ["a.io"]',
    'unqualified-search-registries = ["a.io", "b/c"]', 'short-name-mode = "strict"',
    '"x" = "quay.io/x"', '"quay.io/y" = "z"', "= broken", "[[registry]", 'location = "http://x"',
    'credential-helpers = []', "location = [1, 2]", '"\\u0000" = "a"',
]), max_size=12)


@FAST
@given(toml_fragments)
def test_registries_conf_loads_or_names_the_problem(lines: list[str]) -> None:
    try:
        parse_registries_conf("\n".join(lines) + "\n", "fuzz.conf")
    except MirrorlabError as error:
        assert str(error) and "\n" not in str(error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["reject", "insecureAcceptAnything", "signedBy", "GPGKeys", "docker"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["default", "transports", "type", "docker", "keyType", "keyPath",
                         "quay.io", "", "auths", "auth", "credHelpers", "signedIdentity"]),
        inner, max_size=4),
    max_leaves=20)


@FAST
@given(json_values)
def test_policy_json_parses_or_names_the_problem(value: object) -> None:
    try:
        parse_policy(json.dumps(value), "policy.json")
    except MirrorlabError as error:
        assert str(error) and "\n" not in str(error)


@FAST
@given(json_values)
def test_auth_json_parses_or_names_the_problem(value: object) -> None:
    try:
        find_credentials([parse_auth_file(json.dumps(value), "auth.json")], "quay.io/a/b")
    except MirrorlabError as error:
        assert str(error) and "\n" not in str(error)


yaml_documents = st.lists(st.sampled_from([
    "apiVersion: config.openshift.io/v1\nkind: ImageDigestMirrorSet\nmetadata: {name: a}\n"
    "spec: {imageDigestMirrors: [{source: quay.io/ns, mirrors: [m.io/ns]}]}",
    "apiVersion: config.openshift.io/v1\nkind: ImageTagMirrorSet\nmetadata: {name: t}\n"
    "spec: {imageTagMirrors: [{source: quay.io/ns, mirrors: [m.io/ns], "
    "mirrorSourcePolicy: NeverContactSource}]}",
    "apiVersion: operator.openshift.io/v1alpha1\nkind: ImageContentSourcePolicy\n"
    "metadata: {name: i}\nspec: {repositoryDigestMirrors: [{source: 'bad source', mirrors: [x]}]}",
    "apiVersion: config.openshift.io/v1\nkind: Image\nmetadata: {name: cluster}\n"
    "spec: {registrySources: {blockedRegistries: ['*.x.io', ''], insecureRegistries: [m.io]}}",
    "kind: ImageDigestMirrorSet\nspec: 12", "- just\n- a list", "{unclosed: [", "42",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {'a..5000': pem, '../x': y}",
    "apiVersion: v1\nkind: List\nitems: [1, 2]",
]), min_size=1, max_size=4)


@FAST
@given(yaml_documents)
def test_cr_yaml_renders_or_names_the_problem(tmp_path_factory: pytest.TempPathFactory,
                                              documents: list[str]) -> None:
    path = Path(tmp_path_factory.mktemp("crs")) / "crs.yaml"
    path.write_text("\n---\n".join(documents))
    try:
        render(load_crs([str(path)]))
    except MirrorlabError as error:
        assert str(error) and "\n" not in str(error)


@FAST
@given(st.text(max_size=400) | yaml_documents.map("\n".join))
def test_scenario_files_parse_or_name_the_problem(text: str) -> None:
    try:
        parse_scenario(text, "fuzz.yaml")
    except MirrorlabError as error:
        assert str(error).startswith("fuzz.yaml") and "\n" not in str(error)


path_parts = st.lists(st.sampled_from([
    "v2", "quay.io", "ns", "app", "..", ".", "%2e%2e", "manifests", "blobs", "tags", "list",
    "referrers", "sha256:" + "a" * 64, "sha256:zz", "v1", "UPPER", "a" * 300, "%00", "~",
    "localhost_5000", "uploads", "", "ü",
]), max_size=8)


@pytest.fixture(scope="module")
def node_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One node tree for every generated request: a mirror for quay.io, accept-all policy."""
    root = tmp_path_factory.mktemp("node")
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/registries.conf").write_text(
        '[[registry]]\nlocation = "quay.io"\n[[registry.mirror]]\nlocation = "m.example"\n')
    (root / "etc/containers/policy.json").write_text(
        '{"default": [{"type": "insecureAcceptAnything"}]}')
    return str(root)


@settings(max_examples=200, deadline=None)
@given(path_parts, st.sampled_from(["", "?ns=quay.io", "?ns=http://evil", "?n=-1&last=%ff",
                                    "?ns=" + "a" * 300, "?artifactType=%00"]),
       st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "POST"]),
       st.sampled_from([{}, {"Range": "bytes=9-1"}, {"Range": "bytes=-"},
                        {"Accept": "x" * 5000}, {"Range": "bytes=0-0,5-9"}]))
def test_every_request_gets_an_oci_answer(node_root: str, parts: list[str], query: str,
                                          method: str, headers: dict[str, str]) -> None:
    # One leading slash: aiohttp's test client refuses `//x` (it reads as scheme-relative).
    path = "/" + "/".join(parts).lstrip("/")
    status, body = asyncio.run(_request(node_root, method, path + query, headers))
    assert status < 500 or status == 502, (status, body[:300])
    if status >= 400 and body.startswith(b"{"):
        assert "errors" in json.loads(body)


async def _request(root: str, method: str, path: str,
                   headers: dict[str, str]) -> tuple[int, bytes]:
    from aiohttp.test_utils import TestClient, TestServer

    from mirrorlab.proxy.paths import NodeFiles
    from mirrorlab.proxy.resolve_table import ResolveTable
    from mirrorlab.proxy.server import Proxy, ServeOptions

    proxy = Proxy(ServeOptions(files=NodeFiles(root=root), reload_interval=0,
                               resolve=ResolveTable(offline=True)))
    async with TestClient(TestServer(proxy.app())) as client:
        response = await client.request(method, path, headers=headers, allow_redirects=False)
        return response.status, await response.read()


YAML_ERRORS = [
    # found by the fuzz run: PyYAML's reader error spanned two lines
    ("kind: Image\x0b", "invalid YAML: unacceptable character #x000b: special characters are "
                        "not allowed (character 12)"),
    ("a: [", ":1:5: invalid YAML: expected the node content, but found '<stream end>'"),
    ("a: b: c", ":1:5: invalid YAML: mapping values are not allowed here"),
    ("\tx: 1", ":1:1: invalid YAML: found character '\\t' that cannot start any token"),
]


@pytest.mark.parametrize(("text", "message"), YAML_ERRORS)
def test_yaml_errors_are_one_line_with_the_place(tmp_path: Path, text: str,
                                                 message: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(text)
    for load in (lambda: load_crs([str(path)]), lambda: load_scenario(str(path))):
        with pytest.raises(MirrorlabError) as caught:
            load()
        assert str(caught.value).startswith(str(path))
        assert str(caught.value).endswith(message)


ESCAPED = [
    # found by the fuzz run: a value quoted from the input broke the error's line
    ('{"default": [{"type": "insecureAccept\\nAnything"}]}',
     'Unknown policy requirement type "insecureAccept\\nAnything"'),
    ('{"default": [{"type": "a\\u2028b\\u0000"}]}',
     'Unknown policy requirement type "a\\u2028b\\x00"'),
]


@pytest.mark.parametrize(("text", "message"), ESCAPED)
def test_quoted_input_is_escaped_in_errors(tmp_path: Path, text: str, message: str) -> None:
    from mirrorlab.proxy.policy import load_policy

    path = tmp_path / "policy.json"
    path.write_text(text)
    with pytest.raises(MirrorlabError) as caught:
        load_policy(str(path))
    assert len(str(caught.value).splitlines()) == 1
    assert str(caught.value).endswith(message)
