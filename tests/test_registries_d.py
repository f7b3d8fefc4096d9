"""registries.d: parsing, merging and the signature-storage lookup for a physical reference
(containers/image docker/registries_d.go: loadAndMergeConfig / loadRegistryConfiguration,
registryConfiguration.signatureTopLevel, registryConfiguration.useSigstoreAttachments,
registryNamespace.signatureTopLevel, lookasideBaseURL, lookasideStorageURL;
docker/docker_image_src.go: sigstoreAttachmentTag; docker/policyconfiguration/naming.go).

"U-..." cases are those of docker/registries_d_test.go (test and case named beside them);
"G-..." cases were run through go.podman.io/image/v5 v5.42.1's SignatureStorageBaseURL (with
go.yaml.in/yaml/v3 3.0.5 decoding the files) and the expected column is what it answered;
"D-..." cases are derived from reading the named function."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.reference import parse_docker_reference
from mirrorlab.proxy.registries_d import (
    DEFAULT_LOOKASIDE,
    RegistriesD,
    RegistriesDError,
    Section,
    load_registries_d,
    lookaside_signature_url,
    merge_registries_d,
    parse_registries_d,
    reference_scopes,
    signature_storage,
    sigstore_attachment_tag,
)

from .conftest import DIGEST

MD = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
MD_MAPPED = "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

# docker/fixtures/registries.d of containers/image (used by TestLoadAndMergeConfig and
# TestSignatureStorageBaseURL), plus its non-.yaml file.
FIXTURES = {
    "emptyConfig.yaml": "{}",
    "internal-example.com.yaml": """\
        docker:
            example.com:
                lookaside: https://lookaside.example.com
            registry.test.example.com:
                lookaside: http://registry.test.example.com/lookaside
            registry.test.example.com:8888:
                lookaside: http://registry.test.example.com:8889/lookaside
                lookaside-staging: https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist
            localhost:
                lookaside: file:///home/mitr/mydevelopment1
            localhost:8080:
                lookaside: file:///home/mitr/mydevelopment2
            localhost/invalid/url/test:
                lookaside: ":emptyscheme"
            localhost/file/path/test:
                lookaside: "/no/scheme/just/a/path"
            localhost/relative/path/test:
                lookaside: "no/scheme/relative/path"
        """,
    "internet-user.yaml": """\
        default-docker:
            lookaside: file:///mnt/companywide/signatures/for/other/repositories
        docker:
            docker.io/contoso:
                lookaside: https://lookaside.contoso.com/fordocker
            docker.io/centos:
                lookaside: https://lookaside.centos.org/
            docker.io/centos/mybetaproduct:
                lookaside: http://localhost:9999/mybetaWIP/lookaside
                lookaside-staging: file:///srv/mybetaWIP/lookaside
            docker.io/centos/mybetaproduct:latest:
                lookaside: https://lookaside.centos.org/
        """,
    "invalid-but.notyaml": "}",
}


def write_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def storage(config: RegistriesD, ref: str) -> str:
    return signature_storage(config, parse_docker_reference(ref)).lookaside


@pytest.fixture
def fixtures(tmp_path: Path) -> RegistriesD:
    return load_registries_d(write_dir(tmp_path / "registries.d", FIXTURES))


def test_load_and_merge_fixtures(fixtures: RegistriesD) -> None:
    """U: TestLoadAndMergeConfig, "A fully worked example, including an empty-dictionary file
    and a non-.yaml file"."""
    assert fixtures.default_docker is not None
    assert fixtures.default_docker.lookaside == (
        "file:///mnt/companywide/signatures/for/other/repositories")
    docker = {scope: (s.lookaside, s.lookaside_staging) for scope, s in fixtures.docker.items()}
    assert docker == {
        "example.com": ("https://lookaside.example.com", ""),
        "registry.test.example.com": ("http://registry.test.example.com/lookaside", ""),
        "registry.test.example.com:8888": (
            "http://registry.test.example.com:8889/lookaside",
            "https://registry.test.example.com:8889/lookaside/specialAPIserverWhichDoesNotExist"),
        "localhost": ("file:///home/mitr/mydevelopment1", ""),
        "localhost:8080": ("file:///home/mitr/mydevelopment2", ""),
        "localhost/invalid/url/test": (":emptyscheme", ""),
        "localhost/file/path/test": ("/no/scheme/just/a/path", ""),
        "localhost/relative/path/test": ("no/scheme/relative/path", ""),
        "docker.io/contoso": ("https://lookaside.contoso.com/fordocker", ""),
        "docker.io/centos": ("https://lookaside.centos.org/", ""),
        "docker.io/centos/mybetaproduct": ("http://localhost:9999/mybetaWIP/lookaside",
                                           "file:///srv/mybetaWIP/lookaside"),
        "docker.io/centos/mybetaproduct:latest": ("https://lookaside.centos.org/", ""),
    }
    assert [Path(f).name for f in fixtures.files] == [
        "emptyConfig.yaml", "internal-example.com.yaml", "internet-user.yaml"]


BASE_URLS = [
    # U: TestSignatureStorageBaseURL, by comment
    ("U-B1", "this/is/not/in/the:configuration",  # "No match found" (here: default-docker)
     "file:///mnt/companywide/signatures/for/other/repositories/this/is/not/in/the"),
    ("U-B2", "localhost/file/path/test", "/no/scheme/just/a/path/file/path/test"),  # absolute
    ("U-B3", "localhost/relative/path/test",  # "Relative path"
     "no/scheme/relative/path/relative/path/test"),
    ("U-B4", "example.com/my/project", "https://lookaside.example.com/my/project"),  # Success
    # D: lookasideBaseURL appends "/" + path, so a trailing "/" gives "//"
    ("D-B5", "docker.io/centos/other", "https://lookaside.centos.org//centos/other"),
    ("D-B6", "docker.io/centos/mybetaproduct:latest",
     "https://lookaside.centos.org//centos/mybetaproduct"),
    ("D-B7", "docker.io/centos/mybetaproduct:other",  # lookaside, never lookaside-staging
     "http://localhost:9999/mybetaWIP/lookaside/centos/mybetaproduct"),
    ("D-B8", "registry.test.example.com:8888/ns/r",
     "http://registry.test.example.com:8889/lookaside/ns/r"),
]


@pytest.mark.parametrize(("case", "ref", "url"), BASE_URLS, ids=[c[0] for c in BASE_URLS])
def test_signature_storage_base_url(fixtures: RegistriesD, case: str, ref: str,
                                    url: str) -> None:
    assert storage(fixtures, ref) == url


def test_invalid_url_fails_at_lookup_only(fixtures: RegistriesD) -> None:
    """U: TestSignatureStorageBaseURL "Invalid URL": the file loads, the lookup fails."""
    with pytest.raises(RegistriesDError, match=r'^Invalid signature storage URL :emptyscheme: '
                       r'parse ":emptyscheme": missing protocol scheme$'):
        storage(fixtures, "localhost/invalid/url/test")


def test_empty_or_missing_directory_uses_built_in_default(tmp_path: Path) -> None:
    """U: TestSignatureStorageBaseURL "No match found" and TestLoadAndMergeConfig "No
    registries.d exists" / "Empty registries.d directory"; the root default of
    builtinDefaultLookasideStorageDir."""
    for directory in (tmp_path / "missing", write_dir(tmp_path / "empty", {})):
        config = load_registries_d(directory)
        assert (config.default_docker, dict(config.docker)) == (None, {})
        found = signature_storage(config, parse_docker_reference("this/is/not/in/the:conf"))
        assert found.lookaside == DEFAULT_LOOKASIDE + "/this/is/not/in/the"
        assert found.lookaside_from.scope == "built-in"
        assert found.use_sigstore_attachments is False


TOP_LEVEL = RegistriesD(
    default_docker=Section(lookaside="=default", lookaside_staging="=default+w"),
    docker={ns: Section(lookaside=ns, lookaside_staging=ns + "+w") for ns in (
        "localhost", "localhost:5000", "example.com", "example.com/ns1", "example.com/ns1/ns2",
        "example.com/ns1/ns2/repo", "example.com/ns1/ns2/repo:notlatest")})


@pytest.mark.parametrize(("ref", "scope"), [
    # U: TestRegistryConfigurationSignatureTopLevel, its table
    ("example.com/ns1/ns2/repo:notlatest", "example.com/ns1/ns2/repo:notlatest"),
    ("example.com/ns1/ns2/repo:unmatched", "example.com/ns1/ns2/repo"),
    ("example.com/ns1/ns2/notrepo:notlatest", "example.com/ns1/ns2"),
    ("example.com/ns1/notns2/repo:notlatest", "example.com/ns1"),
    ("example.com/notns1/ns2/repo:notlatest", "example.com"),
    ("unknown.example.com/busybox", "=default"),
    ("localhost:5000/busybox", "localhost:5000"),
    ("localhost/busybox", "localhost"),
    ("localhost:9999/busybox", "=default"),
])
def test_signature_top_level(ref: str, scope: str) -> None:
    found = signature_storage(TOP_LEVEL, parse_docker_reference(ref))
    assert found.configured == scope
    assert found.lookaside_from.scope == (scope if scope != "=default" else "default-docker")


@pytest.mark.parametrize(("section", "read", "write"), [
    # U: TestRegistryNamespaceSignatureTopLevel (read = forWriting false, write = true)
    (Section(lookaside_staging="a", lookaside="b"), "b", "a"),
    (Section(lookaside="b"), "b", "b"),
    (Section(lookaside_staging="a"), None, "a"),
    (Section(), None, None),
    (Section(lookaside_staging="a", lookaside="b", sigstore_staging="c", sigstore="d"), "b", "a"),
    (Section(lookaside="b", sigstore_staging="c", sigstore="d"), "b", "c"),
    (Section(lookaside="b", sigstore="d"), "b", "b"),
    (Section(sigstore="d"), "d", "d"),
])
def test_namespace_signature_top_level(section: Section, read: str | None,
                                       write: str | None) -> None:
    got_read, got_write = section.read_lookaside(), section.write_lookaside()
    assert (got_read[1] if got_read else None, got_write[1] if got_write else None) == (
        read, write)


@pytest.mark.parametrize(("base", "index", "url"), [
    # U: TestLookasideStorageURL
    ("file:///tmp", 0, f"file:///tmp@{MD_MAPPED}/signature-1"),
    ("file:///tmp", 1, f"file:///tmp@{MD_MAPPED}/signature-2"),
    ("https://localhost:5555/root", 0, f"https://localhost:5555/root@{MD_MAPPED}/signature-1"),
    ("https://localhost:5555/root", 1, f"https://localhost:5555/root@{MD_MAPPED}/signature-2"),
    ("http://localhost:5555/root", 0, f"http://localhost:5555/root@{MD_MAPPED}/signature-1"),
    ("http://localhost:5555/root", 1, f"http://localhost:5555/root@{MD_MAPPED}/signature-2"),
])
def test_lookaside_storage_url(base: str, index: int, url: str) -> None:
    assert lookaside_signature_url(base, MD, index) == url


def test_lookaside_storage_url_refuses_bad_digest() -> None:
    """U: TestLookasideStorageURL, "sha256:../hello"."""
    with pytest.raises(RegistriesDError):
        lookaside_signature_url("file:///tmp", "sha256:../hello", 0)


def test_signature_url_of_a_physical_source(tmp_path: Path) -> None:
    """D: lookasideStorageURL over lookasideBaseURL, for a mirror's own name; a query stays
    after the path (net/url String)."""
    config = load_registries_d(write_dir(tmp_path / "d", {"m.yaml": """\
        docker:
          mirror.example.net:5000:
            lookaside: https://sigs.example.net/store?x=1
        """}))
    found = signature_storage(config, parse_docker_reference(
        f"mirror.example.net:5000/ocp/release@{DIGEST}"))
    assert found.lookaside_url(DIGEST, 0) == (
        f"https://sigs.example.net/store/ocp/release@sha256={'a' * 64}/signature-1?x=1")
    assert found.attachment_tag(DIGEST) == f"sha256-{'a' * 64}.sig"
    assert sigstore_attachment_tag(DIGEST) == f"sha256-{'a' * 64}.sig"


ATTACHMENTS = """\
    default-docker:
      lookaside: https://default
    docker:
      quay.io:
        use-sigstore-attachments: true
      quay.io/ns:
        lookaside: https://ns
      quay.io/ns/off:
        use-sigstore-attachments: false
      quay.io/ns/staging:
        lookaside-staging: https://staging-only
      "*.example.com":
        use-sigstore-attachments: true
      a.example.com:
        lookaside: https://a
    """


@pytest.mark.parametrize(("ref", "lookaside", "attachments", "attachments_scope"), [
    # D: signatureTopLevel and useSigstoreAttachments walk the same scopes but stop at the
    # first section that has *their* key, separately
    ("quay.io/ns/app:1", "https://ns/ns/app", True, "quay.io"),
    ("quay.io/ns/off/app:1", "https://ns/ns/off/app", False, "quay.io/ns/off"),
    ("quay.io/ns/staging:1", "https://ns/ns/staging", True, "quay.io"),
    ("quay.io/other:1", "https://default/other", True, "quay.io"),
    ("a.example.com/x:1", "https://a/x", True, "*.example.com"),
    ("b.example.com:5000/x:1", "https://default/x", True, "*.example.com"),
    ("example.com/x:1", "https://default/x", False, "built-in"),
])
def test_per_key_inheritance(tmp_path: Path, ref: str, lookaside: str, attachments: bool,
                             attachments_scope: str) -> None:
    config = load_registries_d(write_dir(tmp_path / "d", {"a.yaml": ATTACHMENTS}))
    found = signature_storage(config, parse_docker_reference(ref))
    assert (found.lookaside, found.use_sigstore_attachments,
            found.attachments_from.scope) == (lookaside, attachments, attachments_scope)


def test_scopes_most_precise_first() -> None:
    """D: DockerReferenceIdentity then DockerReferenceNamespaces (naming.go)."""
    assert reference_scopes(parse_docker_reference("a.b.example.com:5000/ns/repo:tag")) == [
        "a.b.example.com:5000/ns/repo:tag", "a.b.example.com:5000/ns/repo",
        "a.b.example.com:5000/ns", "a.b.example.com:5000", "*.b.example.com", "*.example.com",
        "*.com"]
    assert reference_scopes(parse_docker_reference(f"localhost/r@{DIGEST}")) == [
        f"localhost/r@{DIGEST}", "localhost/r", "localhost"]


def _gerror(line: str) -> str:
    return "yaml: unmarshal errors: " + line


# G: each file alone in a registries.d, looked up for REF; the expected URL, or the start of
# the error after "parsing FILE: " (one line here; yaml.v3 puts each error on its own line).
GO_CASES = [
    ("G-01 unknown top key", "foo: 1\ndocker:\n  a.com:\n    lookaside: https://x/y\n",
     "a.com/r:t", "https://x/y/r"),
    ("G-02 unknown section key", "docker:\n  a.com:\n    lookasid: https://x/y\n"
     "    lookaside: https://z\n", "a.com/r:t", "https://z/r"),
    ("G-03 duplicate scope", "docker:\n  a.com:\n    lookaside: https://x\n  a.com:\n"
     "    lookaside: https://y\n", "a.com/r:t",
     _gerror('line 4: mapping key "a.com" already defined at line 2')),
    ("G-04 duplicate key", "docker:\n  a.com:\n    lookaside: https://x\n"
     "    lookaside: https://y\n", "a.com/r:t",
     _gerror('line 4: mapping key "lookaside" already defined at line 3')),
    ("G-05 docker a list", "docker: []\n", "a.com/r:t",
     _gerror("line 1: cannot unmarshal !!seq into map[string]docker.registryNamespace")),
    ("G-06 top-level list", "- a\n", "a.com/r:t",
     _gerror("line 1: cannot unmarshal !!seq into docker.registryConfiguration")),
    ("G-07 top-level scalar", "hello\n", "a.com/r:t",
     _gerror("line 1: cannot unmarshal !!str `hello` into docker.registryConfiguration")),
    ("G-08 number as URL", "docker:\n  a.com:\n    lookaside: 123\n", "a.com/r:t", "123/r"),
    ("G-09 float as written", "docker:\n  a.com:\n    lookaside: 1.50\n", "a.com/r:t",
     "1.50/r"),
    ("G-10 date as written", "docker:\n  a.com:\n    lookaside: 2001-12-14\n", "a.com/r:t",
     "2001-12-14/r"),
    ("G-11 mapping as URL", "docker:\n  a.com:\n    lookaside: {a: b}\n", "a.com/r:t",
     _gerror("line 3: cannot unmarshal !!map into string")),
    ("G-12 quoted true", "docker:\n  a.com:\n    use-sigstore-attachments: \"true\"\n",
     "a.com/r:t", _gerror("line 3: cannot unmarshal !!str `true` into bool")),
    ("G-13 yes", "docker:\n  a.com:\n    lookaside: https://x\n"
     "    use-sigstore-attachments: yes\n", "a.com/r:t", "https://x/r"),
    ("G-14 quoted yes", "docker:\n  a.com:\n    lookaside: https://x\n"
     "    use-sigstore-attachments: \"yes\"\n", "a.com/r:t", "https://x/r"),
    ("G-15 one", "docker:\n  a.com:\n    use-sigstore-attachments: 1\n", "a.com/r:t",
     _gerror("line 3: cannot unmarshal !!int `1` into bool")),
    ("G-16 long value shortened", "docker:\n  a.com:\n"
     "    use-sigstore-attachments: maybemaybemaybe\n", "a.com/r:t",
     _gerror("line 3: cannot unmarshal !!str `maybema...` into bool")),
    ("G-17 second document unread", "docker:\n  a.com:\n    lookaside: https://x\n---\n}\n",
     "a.com/r:t", "https://x/r"),
    ("G-18 null section", "default-docker:\n  lookaside: https://def\ndocker:\n  a.com/r:\n"
     "  a.com:\n    lookaside: https://parent\n", "a.com/r:t", "https://parent/r"),
    ("G-19 empty lookaside", "docker:\n  a.com/r:\n    lookaside: \"\"\n  a.com:\n"
     "    lookaside: https://parent\n", "a.com/r:t", "https://parent/r"),
    ("G-20 staging only", "docker:\n  a.com/r:\n    lookaside-staging: https://stage\n"
     "  a.com:\n    lookaside: https://parent\n", "a.com/r:t", "https://parent/r"),
    ("G-21 sigstore key", "docker:\n  a.com:\n    sigstore: https://old\n", "a.com/r:t",
     "https://old/r"),
    ("G-22 lookaside first", "docker:\n  a.com:\n    sigstore: https://old\n"
     "    lookaside: https://new\n", "a.com/r:t", "https://new/r"),
    ("G-23 query and fragment", "docker:\n  a.com:\n    lookaside: https://x/y?a=b#frag\n",
     "a.com/r:t", "https://x/y/r?a=b#frag"),
    ("G-24 space escaped", "docker:\n  a.com:\n    lookaside: https://x/a b\n", "a.com/r:t",
     "https://x/a%20b/r"),
    ("G-25 escaped slash decoded", "docker:\n  a.com:\n    lookaside: https://x/a%2Fb\n",
     "a.com/r:t", "https://x/a/b/r"),
    ("G-26 opaque URL keeps no path", "docker:\n  a.com:\n    lookaside: mailto:x\n",
     "a.com/r:t", "mailto:x"),
    ("G-27 scheme lower-cased", "docker:\n  a.com:\n    lookaside: HTTPS://X.COM/Y\n",
     "a.com/r:t", "https://X.COM/Y/r"),
    ("G-28 IPv6 host", "docker:\n  a.com:\n    lookaside: http://[::1]:5000/x\n", "a.com/r:t",
     "http://[::1]:5000/x/r"),
    ("G-29 wildcard scope", "docker:\n  '*.com':\n    lookaside: https://wild\n", "a.com/r:t",
     "https://wild/r"),
    ("G-30 tag scope first", "docker:\n  a.com/r:t:\n    lookaside: https://tag\n  a.com/r:\n"
     "    lookaside: https://repo\n", "a.com/r:t", "https://tag/r"),
    ("G-31 normalized name", "docker:\n  docker.io/library/busybox:\n    lookaside: https://bb\n",
     "busybox", "https://bb/library/busybox"),
    ("G-32 merge key", "base: &b\n  lookaside: https://m\ndocker:\n  a.com:\n    <<: *b\n",
     "a.com/r:t", "https://m/r"),
    ("G-33 alias", "docker:\n  a.com: &x\n    lookaside: https://anch\n  b.com: *x\n",
     "b.com/r:t", "https://anch/r"),
    ("G-34 host scope is no port scope", "docker:\n  a.com:\n    lookaside: https://x\n",
     "a.com:5000/r:t", DEFAULT_LOOKASIDE + "/r"),
    ("G-35 default-docker a list", "default-docker: []\n", "a.com/r:t",
     _gerror("line 1: cannot unmarshal !!seq into docker.registryNamespace")),
    ("G-36 nested lists under docker", "docker: " + "[" * 5000 + "]" * 5000 + "\n",
     "a.com/r:t",
     _gerror("line 1: cannot unmarshal !!seq into map[string]docker.registryNamespace")),
    ("G-37 nested maps in a section", "docker: " + "{a: " * 3000 + "b" + "}" * 3000 + "\n",
     "a.com/r:t", DEFAULT_LOOKASIDE + "/r"),
    ("G-38 byte-order mark", "\ufeffdocker:\n  a.com:\n    lookaside: https://bom\n",
     "a.com/r:t", "https://bom/r"),
    ("G-39 bad escape", "docker:\n  a.com:\n    lookaside: https://x/%zz\n", "a.com/r:t",
     'Invalid signature storage URL https://x/%zz: parse "https://x/%zz": invalid URL escape '
     '"%zz"'),
    ("G-40 bad port", "docker:\n  a.com:\n    lookaside: http://host:abc/x\n", "a.com/r:t",
     'Invalid signature storage URL http://host:abc/x: parse "http://host:abc/x": invalid port '
     '":abc" after host'),
    ("G-41 colon in first segment", "docker:\n  a.com:\n    lookaside: 1ab:c/d\n", "a.com/r:t",
     'Invalid signature storage URL 1ab:c/d: parse "1ab:c/d": first path segment in URL '
     "cannot contain colon"),
    ("G-42 control character", "docker:\n  a.com:\n    lookaside: |\n      https://x\n",
     "a.com/r:t", "Invalid signature storage URL https://x\\n: parse \"https://x\\n\": net/url: "
     "invalid control character in URL"),
]


@pytest.mark.parametrize(("case", "text", "ref", "expected"), GO_CASES,
                         ids=[c[0].split()[0] for c in GO_CASES])
def test_against_containers_image(tmp_path: Path, case: str, text: str, ref: str,
                                  expected: str) -> None:
    directory = tmp_path / "registries.d"
    directory.mkdir()
    (directory / "a.yaml").write_text(text)
    if not expected.startswith(("yaml:", "Invalid signature storage URL")):
        assert storage(load_registries_d(directory), ref) == expected
        return
    with pytest.raises(RegistriesDError) as raised:
        storage(load_registries_d(directory), ref)
    message = str(raised.value)
    if expected.startswith("yaml:"):
        expected = f"parsing {directory / 'a.yaml'}: {expected}"
    assert message == expected
    assert "\n" not in message


@pytest.mark.parametrize(("text", "fragment"), [
    # D: syntax errors, undecodable bytes: one line naming the file and, where known, the line
    ("docker:\n\ta.com:\n", ":2:1: invalid YAML: found character '\\t' that cannot start"),
    ("docker: [\n", ": invalid YAML:"),
    ("docker:\n  a.com: *nothing\n", "invalid YAML: found undefined alias"),
])
def test_syntax_errors_are_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    directory = write_dir(tmp_path / "d", {"bad.yaml": text})
    with pytest.raises(ConfigError) as raised:
        load_registries_d(directory)
    assert str(raised.value).startswith(str(directory / "bad.yaml"))
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_invalid_utf8(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "bad.yaml").write_bytes(b"docker:\n  a.com:\n    lookaside: https://x/\xff\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML: .*character 43\)$"):
        load_registries_d(directory)


@pytest.mark.parametrize(("first", "second", "message"), [
    # U: TestLoadAndMergeConfig "Duplicate DefaultDocker" and the namespace case; G: a null
    # section is a definition too
    ("default-docker:\n lookaside: file:////tmp/something",
     "default-docker:\n lookaside: file:////tmp/different",
     'Error parsing signature storage configuration: "default-docker" defined both in '
     '"{d}/0.yaml" and "{d}/1.yaml"'),
    ("docker:\n example.com:\n  lookaside: file:////tmp/something",
     "docker:\n example.com:\n  lookaside: file:////tmp/different",
     'Error parsing signature storage configuration: "docker" namespace "example.com" '
     'defined both in "{d}/0.yaml" and "{d}/1.yaml"'),
    ("docker:\n  a.com:\n", "docker:\n  a.com:\n    lookaside: https://b\n",
     'Error parsing signature storage configuration: "docker" namespace "a.com" defined both '
     'in "{d}/0.yaml" and "{d}/1.yaml"'),
])
def test_duplicates_across_files(tmp_path: Path, first: str, second: str,
                                 message: str) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "0.yaml").write_text(first)
    (directory / "1.yaml").write_text(second)
    with pytest.raises(RegistriesDError) as raised:
        load_registries_d(directory)
    assert str(raised.value) == message.format(d=directory)


def test_null_default_docker_is_no_definition(tmp_path: Path) -> None:
    """G: `default-docker:` with no value leaves the pointer nil: no duplicate."""
    config = load_registries_d(write_dir(tmp_path / "d", {
        "0.yaml": "default-docker:\n", "1.yaml": "default-docker:\n  lookaside: https://b\n"}))
    assert config.default_docker is not None and config.default_docker.lookaside == "https://b"


def test_unknown_keys_are_warnings(tmp_path: Path) -> None:
    """G-01/G-02: containers/image ignores them; mirrorlab names them, file and line."""
    config = load_registries_d(write_dir(tmp_path / "d", {"a.yaml": """\
        lookaside: https://top
        docker:
          quay.io:
            lookside: https://typo
        """}))
    path = tmp_path / "d" / "a.yaml"
    assert config.warnings == (
        f'{path}:1: unknown key "lookaside" is ignored by containers/image',
        f'{path}:4: docker "quay.io": unknown key "lookside" is ignored by containers/image')


def test_only_yaml_files_and_no_directories(tmp_path: Path) -> None:
    directory = write_dir(tmp_path / "d", {"a.yml": "}", "b.yaml.bak": "}",
                                           "c.yaml": "docker:\n  a.com:\n    lookaside: x\n"})
    (directory / "sub.yaml").mkdir()
    assert [Path(f).name for f in load_registries_d(directory).files] == ["c.yaml"]


def test_unreadable_directory_is_one_line(tmp_path: Path) -> None:
    """U: TestLoadAndMergeConfig "Unreadable registries.d directory" (here: not a directory)."""
    (tmp_path / "file").write_text("")
    with pytest.raises(RegistriesDError, match=r"file: Not a directory$"):
        load_registries_d(tmp_path / "file")


def test_pure_parse_and_merge() -> None:
    one = parse_registries_d(b"docker:\n  a.com:\n    lookaside: https://x\n", "mem:1")
    two = parse_registries_d("default-docker:\n  use-sigstore-attachments: true\n", "mem:2")
    config = merge_registries_d([one, two])
    found = signature_storage(config, parse_docker_reference("a.com/r:t"))
    assert (found.lookaside, found.use_sigstore_attachments) == ("https://x/r", True)
    assert found.lookaside_from.origin == "mem:1:3"
    assert found.attachments_from.scope == "default-docker"
    assert found.describe() == [
        "lookaside: https://x/r (docker 'a.com' lookaside (mem:1:3))",
        "sigstore attachments: on (default-docker use-sigstore-attachments (mem:2:2))"]
