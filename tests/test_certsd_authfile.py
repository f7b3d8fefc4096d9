"""certs.d directory choice and contents, auth.json key lookup (containers/image
docker/docker_client.go: dockerCertDir, pkg/tlsclientconfig/tlsclientconfig.go: SetupCertificates,
pkg/docker/config/config.go: findCredentialsInFile, authKeyLookupOrder)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path

import pytest
import trustme

from mirrorlab.proxy.authfile import find_credentials, parse_auth_file
from mirrorlab.proxy.certsd import CertsDirSettings, certs_dir_for, classify_cert_files
from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.resolve_table import ResolveTable
from mirrorlab.proxy.upstream import Upstreams

CERT_DIRS = [
    # docker/docker_client_test.go: TestDockerCertDir, and the per-user candidate; host h:5000
    (CertsDirSettings(), set(), "/etc/docker/certs.d/h:5000"),
    (CertsDirSettings(cert_dir="/x"), set(), "/x"),
    (CertsDirSettings(per_host_dir="/y"), set(), "/y/h:5000"),
    (CertsDirSettings(cert_dir="/x", per_host_dir="/y"), set(), "/x"),
    (CertsDirSettings(root="/r"), set(), "/r/etc/docker/certs.d/h:5000"),
    (CertsDirSettings(home="/home/u"), {"/etc/containers/certs.d/h:5000"},
     "/etc/containers/certs.d/h:5000"),
    (CertsDirSettings(home="/home/u"),
     {"/home/u/.config/containers/certs.d/h:5000", "/etc/containers/certs.d/h:5000"},
     "/home/u/.config/containers/certs.d/h:5000"),
    (CertsDirSettings(root="/r"), {"/etc/containers/certs.d/h:5000"},
     "/r/etc/docker/certs.d/h:5000"),
]


@pytest.mark.parametrize(("settings", "existing", "expected"), CERT_DIRS)
def test_certs_dir_choice(settings: CertsDirSettings, existing: set[str], expected: str) -> None:
    assert certs_dir_for("h:5000", settings, existing.__contains__) == expected


CERT_FILES = [
    # listing, CA files, client pairs, error
    (["ca.crt", "other.crt", "README"], ["ca.crt", "other.crt"], [], None),
    (["client.cert", "client.key", "ca.crt"], ["ca.crt"], [("client.cert", "client.key")], None),
    (["a.cert", "a.key", "b.cert", "b.key"], [], [("a.cert", "a.key"), ("b.cert", "b.key")],
     None),
    (["ca.pem"], [], [], None),  # a CA must end in .crt: .pem is ignored
    (["client.cert"], [], [],
     "missing key client.key for client certificate client.cert. Note that CA certificates "
     "should use the extension .crt"),
    (["client.key"], [], [], "missing client certificate client.cert for key client.key"),
]


@pytest.mark.parametrize(("names", "cas", "pairs", "error"), CERT_FILES)
def test_cert_files(names: list[str], cas: list[str], pairs: list[tuple[str, str]],
                    error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError) as caught:
            classify_cert_files("/d", names)
        assert str(caught.value) == error
        return
    found = classify_cert_files("/d", names)
    assert found.ca_files == tuple(f"/d/{n}" for n in cas)
    assert found.client_pairs == tuple((f"/d/{c}", f"/d/{k}") for c, k in pairs)


def _auth(user: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:secret".encode()).decode()}


AUTH = json.dumps({
    "auths": {
        "mirror.local/hub/library/busybox": _auth("repo"),
        "mirror.local/hub": _auth("namespace"),
        "mirror.local": _auth("host"),
        "https://old.example/v1/": _auth("legacy-url"),
        "https://index.docker.io/v1/": _auth("hub"),
        "empty.example": {"auth": base64.b64encode(b"no-colon").decode()},
    },
    "credHelpers": {"helped.example": "secretservice"},
})

CREDENTIALS = [
    # physical repository, matched key (None: no credentials)
    ("mirror.local/hub/library/busybox", "mirror.local/hub/library/busybox"),
    ("mirror.local/hub/library/alpine", "mirror.local/hub"),
    ("mirror.local/other/x", "mirror.local"),
    ("mirror.local:5000/hub/x", None),  # the port is part of the host key
    ("old.example/a/b", "https://old.example/v1/"),
    ("docker.io/library/busybox", "https://index.docker.io/v1/"),
    ("helped.example/a", "helped.example"),
    ("empty.example/a", None),  # an entry without user:password decodes to nothing
    ("unknown.example/a", None),
]


@pytest.mark.parametrize(("name", "key"), CREDENTIALS)
def test_credentials_lookup(name: str, key: str | None) -> None:
    found = find_credentials([parse_auth_file(AUTH, "/auth.json")], name)
    assert (found.key if found else None) == key


def test_credentials_never_appear_in_repr() -> None:
    found = find_credentials([parse_auth_file(AUTH, "/auth.json")], "mirror.local/x")
    assert found is not None and found.password == "secret"
    assert "secret" not in repr(found)


def test_first_file_with_usable_credentials_wins() -> None:
    first = parse_auth_file(json.dumps({"auths": {"empty.example": {"auth": ""}}}), "/1")
    second = parse_auth_file(json.dumps({"auths": {"empty.example": _auth("u")}}), "/2")
    found = find_credentials([first, second], "empty.example/a")
    assert found is not None and (found.file, found.username) == ("/2", "u")


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "invalid JSON"), ("[]", "not a JSON object"),
     ('{"auths": []}', "must be JSON objects"),
     ('{"auths": {"a.io": {"auth": "!!!"}}}', "not valid base64")],
)
def test_bad_auth_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        find_credentials([parse_auth_file(text, "/auth.json")], "a.io/x")


# certs.d contents, insecure -> (verifies peers, trusts the certs.d CA, shared context)
TLS_CONTEXTS = [
    ([], False, (True, False, "system")),
    ([], True, (False, False, "unverified")),
    (["ca.crt"], False, (True, True, None)),
    (["ca.crt"], True, (False, False, "unverified")),
    (["client.cert", "client.key"], True, (False, False, None)),
    (["ca.crt", "client.cert", "client.key"], False, (True, True, None)),
]


@pytest.mark.parametrize(("files", "insecure", "expected"), TLS_CONTEXTS)
def test_tls_context_per_host(tmp_path: Path, files: list[str], insecure: bool,
                              expected: tuple[bool, bool, str | None]) -> None:
    """Hosts without certs.d files share one context (the system CAs load once, ~20 ms);
    insecure ones skip verification but still present certs.d client certificates, as
    containers/image does (a host with a client pair gets a context of its own)."""
    ca = trustme.CA()
    issued = ca.issue_cert("client.example")
    host_dir = tmp_path / "h:5000"
    host_dir.mkdir()
    writers = {"ca.crt": ca.cert_pem.write_to_path,
               "client.cert": issued.cert_chain_pems[0].write_to_path,
               "client.key": issued.private_key_pem.write_to_path}
    for name in files:
        writers[name](str(host_dir / name))

    async def check() -> None:
        upstreams = Upstreams(certs=CertsDirSettings(per_host_dir=str(tmp_path)),
                              auth_files=[], resolve=ResolveTable())
        try:
            context = upstreams.tls_context("h:5000", insecure)
            verifies, trusts, shared = expected
            assert (context.verify_mode == ssl.CERT_REQUIRED) is verifies
            assert context.check_hostname is verifies
            organizations = {str(pair[1]) for cert in context.get_ca_certs()
                             for rdn in cert["subject"] for pair in rdn
                             if pair[0] == "organizationName"}
            assert any(name.startswith("trustme") for name in organizations) is trusts
            shares = {"system": upstreams._system, "unverified": upstreams._unverified}
            assert (context is shares[shared]) if shared else context not in shares.values()
            assert upstreams.tls_context("h:5000", insecure) is context
        finally:
            await upstreams.close()

    asyncio.run(check())
