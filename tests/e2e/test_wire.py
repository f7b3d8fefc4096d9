"""What goes on the wire: every loopback byte of a pull with credentials is captured, and no
credential or token reaches any host but the one it belongs to (issue 6, security).

Plain HTTP throughout, so that the capture can read every header: `registry.example.com`
(token auth, `insecure`), a mirror on another host that lacks the image, and the token
service `auth.example.com` (the same site as the registry, so it may see the password)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from mirrorlab.harness.images import Image, RegistryClient, make_image
from mirrorlab.harness.registry import RegistryProcess
from mirrorlab.harness.tokenauth import TokenServer

from .capture import LoopbackCapture
from .lab import ProxyProcess

CONF = """[[registry]]
location = "registry.example.com/ns"
insecure = true
[[registry.mirror]]
location = "mirror.other.net/ns"
insecure = true
"""


@contextmanager
def token_registry(work: Path, password: str, realm_host: str
                   ) -> Iterator[tuple[TokenServer, RegistryProcess, Image]]:
    """`registry.example.com` over plain HTTP with token auth from `realm_host`, holding
    ns/app:v1; user `puller` with `password`."""
    tokens = TokenServer(work / "tokens", users={"puller": password}).start()
    private = RegistryProcess(work, "private")
    image = make_image(realm_host)
    try:
        with private:
            RegistryClient(private.url).push_image("ns/app", image, "v1")
        private.auth = tokens.registry_auth(f"http://{realm_host}/token")
        private.start()
        yield tokens, private, image
    finally:
        private.stop()
        tokens.stop()


def test_no_credential_or_token_reaches_another_host(tmp_path: Path,
                                                      proxy_factory: Callable[..., ProxyProcess]
                                                      ) -> None:
    password = "wire-s3cret-pw"
    basic = base64.b64encode(f"puller:{password}".encode())
    other = RegistryProcess(tmp_path, "other")
    with token_registry(tmp_path, password, "auth.example.com") as (tokens, private, image), \
            other:
        lab = SimpleNamespace(certs_d=tmp_path / "certs.d", resolve_args=[
            "--resolve", f"registry.example.com={private.address}",
            "--resolve", f"mirror.other.net={other.address}",
            "--resolve", f"auth.example.com={tokens.host}:{tokens.port}"])
        auth = {"auths": {"registry.example.com": {"auth": basic.decode()}}}
        with LoopbackCapture() as capture:
            proxy = proxy_factory(lab, CONF, auth=auth)
            # Twice: the second time the mirror is asked while the proxy holds a token.
            for _ in range(2):
                status, _, body = proxy.get(
                    "/v2/registry.example.com/ns/app/manifests/v1",
                    {"Accept": "application/vnd.oci.image.manifest.v1+json"})
                assert status == 200, body
            for blob in [image.config, *image.layers]:
                status, _, data = proxy.get(f"/v2/registry.example.com/ns/app/blobs/"
                                            f"{blob.digest}")
                assert status == 200 and data == blob.data

    registry_port, mirror_port = private.port, other.port
    issued = {match.encode() for (source, _), data in capture.flows.items()
              if source == tokens.port
              for match in re.findall(r'"(?:access_)?token":\s*"([^"]+)"', data.decode("latin-1"))}
    assert issued, "the proxy fetched no token: the capture saw nothing to check"
    # The mirror was asked (it answers 404), so its flows exist and can be checked.
    assert any(destination == mirror_port for _, destination in capture.flows)

    assert capture.dropped == 0
    # The credentials travel only to the token service, and only base64-encoded.
    assert {destination for _, destination in capture.carrying(basic)} == {tokens.port}
    assert not capture.carrying(password.encode())
    # A token travels only from the token service to the proxy, and from the proxy to the
    # registry it was issued for: never to the mirror, never back to the client.
    for token in issued:
        carriers = capture.carrying(token)
        assert carriers, "a token the proxy fetched was never used"
        for source, destination in carriers:
            assert source == tokens.port or destination == registry_port, (source, destination)
    to_client = [data for (source, _), data in capture.flows.items() if source == proxy.port]
    assert to_client and not any(password.encode() in data or basic in data or
                                 any(token in data for token in issued) for data in to_client)
    assert password not in proxy.log_path.read_text()
    assert json.dumps(auth) not in proxy.log_path.read_text()


@pytest.mark.parametrize("trusted", [False, True], ids=["withheld", "trusted"])
def test_a_realm_on_another_site_gets_credentials_only_when_trusted(
        tmp_path: Path, proxy_factory: Callable[..., ProxyProcess], trusted: bool) -> None:
    """The token service `auth.other.org` is not on registry.example.com's site: the proxy
    asks it anonymously (and says why, once) unless `--trust-realm auth.other.org`."""
    with token_registry(tmp_path, "realm-pw", "auth.other.org") as (tokens, private, _):
        lab = SimpleNamespace(certs_d=tmp_path / "certs.d", resolve_args=[
            "--resolve", f"registry.example.com={private.address}",
            "--resolve", f"auth.other.org={tokens.host}:{tokens.port}"])
        auth = {"auths": {"registry.example.com": {
            "auth": base64.b64encode(b"puller:realm-pw").decode()}}}
        extra = ("--trust-realm", "auth.other.org") if trusted else ()
        proxy = proxy_factory(lab, 'unqualified-search-registries = []\n[[registry]]\n'
                              'location = "registry.example.com"\ninsecure = true\n',
                              auth=auth, extra=extra)
        for _ in range(2):
            status, _, body = proxy.get("/v2/registry.example.com/ns/app/manifests/v1",
                                        {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    users = {request.user for request in tokens.seen}
    withheld = proxy.events("credentials_withheld")
    if trusted:
        assert status == 200 and users == {"puller"} and not withheld
    else:
        assert status == 403, body
        assert users == {None}
        assert len(withheld) == 1 and withheld[0]["realm"] == "auth.other.org"
