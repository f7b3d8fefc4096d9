"""The proxy's API surface against real registries: auth, addressing, listings, refusals,
operations (metrics, explain, reload), cool-down and 429 handling."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from mirrorlab.certs import LabCA
from mirrorlab.harness.clients import PodmanClient as Podman
from mirrorlab.harness.faults import Fault, FaultProxy
from mirrorlab.harness.images import Image, RegistryClient, make_image
from mirrorlab.harness.registry import RegistryProcess, TlsFiles

from .lab import AuthLab, Lab, ProxyProcess
from .test_proxy_pulls import chain

Factory = Callable[..., ProxyProcess]
OCI_MANIFEST = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def _auth_json(user: str, password: str, key: str) -> dict[str, object]:
    secret = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {key: {"auth": secret}}}


PRIVATE = '[[registry]]\nlocation = "registry.example.com/ns"\n'


def test_token_auth_with_credentials(auth_lab: AuthLab, proxy_factory: Factory,
                                     podman: Podman) -> None:
    auth = _auth_json("puller", "s3cret-pw", "registry.example.com")
    proxy = proxy_factory(auth_lab, PRIVATE, auth=auth)
    ref = f"{proxy.address}/registry.example.com/ns/private:v1"
    result = podman.pull(ref)
    assert result.returncode == 0, result.stderr
    assert podman.digest(ref) == auth_lab.image.digest
    assert ("repository:ns/private:pull", "puller") in [
        (r.scope, r.user) for r in auth_lab.tokens.seen]
    log = proxy.log_path.read_text()
    assert "s3cret-pw" not in log and "puller:" not in log
    assert "eyJ" not in log, "a bearer token (JWT) reached the log"


def test_token_auth_without_credentials_is_denied(auth_lab: AuthLab,
                                                  proxy_factory: Factory) -> None:
    proxy = proxy_factory(auth_lab, PRIVATE)
    status, _, body = proxy.get("/v2/registry.example.com/ns/private/manifests/v1")
    assert status == 403
    error = json.loads(body)["errors"][0]
    assert error["code"] == "DENIED"
    assert [d["outcome"] for d in error["detail"]] == ["denied"]


def test_containerd_ns_query(clean_lab: Lab, proxy_factory: Factory) -> None:
    proxy = proxy_factory(clean_lab, chain(clean_lab))
    status, headers, _ = proxy.get("/v2/ns/app/manifests/v1?ns=quay.io", OCI_MANIFEST)
    assert status == 200
    assert headers["X-Mirrorlab-Source"] == f"{clean_lab.faults.address}/ns/app:v1"


def test_tags_list_names_the_requested_repository(clean_lab: Lab,
                                                  proxy_factory: Factory) -> None:
    proxy = proxy_factory(clean_lab, chain(clean_lab))
    status, headers, body = proxy.get("/v2/quay.io/ns/app/tags/list")
    assert status == 200
    assert json.loads(body) == {"name": "quay.io/ns/app", "tags": ["v1"]}
    assert headers["X-Mirrorlab-Source"].startswith(f"{clean_lab.faults.address}/ns/app")


def test_referrers_missing_upstream_is_404_so_clients_fall_back(
        clean_lab: Lab, proxy_factory: Factory) -> None:
    proxy = proxy_factory(clean_lab, chain(clean_lab))
    app = clean_lab.images["app"]
    status, _, body = proxy.get(f"/v2/quay.io/ns/app/referrers/{app.digest}")
    assert status == 404
    assert json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/v2/quay.io/ns/app/manifests/v1"),
    ("POST", "/v2/quay.io/ns/app/blobs/uploads/"),
    ("DELETE", "/v2/quay.io/ns/app/manifests/v1"),
    ("PATCH", "/v2/quay.io/ns/app/blobs/uploads/x"),
])
def test_push_and_delete_are_unsupported(clean_lab: Lab, proxy_factory: Factory, method: str,
                                         path: str) -> None:
    import urllib.error
    import urllib.request

    proxy = proxy_factory(clean_lab, chain(clean_lab))
    request = urllib.request.Request(f"{proxy.url}{path}", method=method, data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405
    assert json.loads(caught.value.read())["errors"][0]["code"] == "UNSUPPORTED"
    assert clean_lab.faults.requests == []


def test_head_requests(clean_lab: Lab, proxy_factory: Factory) -> None:
    import urllib.request

    proxy = proxy_factory(clean_lab, chain(clean_lab))
    app = clean_lab.images["app"]
    assert isinstance(app, Image)
    for path, digest, size in (
        (f"/v2/quay.io/ns/app/manifests/{app.digest}", app.digest, len(app.manifest.data)),
        (f"/v2/quay.io/ns/app/blobs/{app.layers[-1].digest}", app.layers[-1].digest,
         len(app.layers[-1].data)),
    ):
        request = urllib.request.Request(f"{proxy.url}{path}", method="HEAD",
                                         headers=OCI_MANIFEST)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == digest
            assert int(response.headers["Content-Length"]) == size
            assert response.read() == b""


Window = Callable[[int], tuple[int, int]]
RANGES: list[tuple[str, Callable[[int], str], int, Window | None]] = [
    # id, Range header for a blob of n bytes, status, bytes served (None: 416)
    ("first-100", lambda n: "bytes=0-99", 206, lambda n: (0, 99)),
    ("second-half", lambda n: f"bytes={n // 2}-", 206, lambda n: (n // 2, n - 1)),
    ("last-10", lambda n: "bytes=-10", 206, lambda n: (n - 10, n - 1)),
    ("end-past-size", lambda n: f"bytes=0-{n * 10}", 206, lambda n: (0, n - 1)),
    ("start-after-end", lambda n: "bytes=9-1", 416, None),
    ("start-past-size", lambda n: f"bytes={n}-", 416, None),
    ("several-ranges", lambda n: "bytes=0-0,5-9", 200, lambda n: (0, n - 1)),  # as distribution
]


@pytest.mark.parametrize("layer_index", [0, 1], ids=["buffered", "streamed"])
@pytest.mark.parametrize(("header", "status", "window"), [r[1:] for r in RANGES],
                         ids=[r[0] for r in RANGES])
def test_blob_ranges(clean_lab: Lab, proxy_factory: Factory, layer_index: int,
                     header: Callable[[int], str], status: int, window: Window | None) -> None:
    """Ranges of a 4 KiB layer (verified whole first) and a 6 MiB one (streamed). An
    unsatisfiable range is answered 416 from the size alone: nothing is downloaded or held."""
    proxy = proxy_factory(clean_lab, chain(clean_lab))
    app = clean_lab.images["app"]
    assert isinstance(app, Image)
    layer = app.layers[layer_index]
    size = len(layer.data)
    got, headers, body = proxy.get(f"/v2/quay.io/ns/app/blobs/{layer.digest}",
                                   {"Range": header(size)})
    assert got == status, (got, body[:200])
    if window is None:
        assert headers["Content-Range"] == f"bytes */{size}"
        assert json.loads(proxy.get("/healthz")[2])["buffered_bytes"] == 0
        metrics = proxy.get("/metrics")[2].decode()
        assert not [line for line in metrics.splitlines()
                    if line.startswith("mirrorlab_bytes_total{") and float(line.split()[-1])]
        return
    first, last = window(size)
    assert body == layer.data[first : last + 1]
    if status == 206:
        assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"


BAD_REQUESTS = [
    ("/v2/quay.io/ns/app/blobs/sha256:abc", 400, "DIGEST_INVALID"),
    ("/v2/quay.io/ns/app/blobs/md5:" + "a" * 32, 400, "DIGEST_INVALID"),
    ("/v2/quay.io/NS/app/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/quay.io/ns/app/manifests/bad:tag:x", 400, "DIGEST_INVALID"),
    ("/v2/quay.io/ns/../../etc/passwd/manifests/v1", 400, "NAME_INVALID"),
    ("/v2/quay.io/ns/app/manifests/v1?ns=http://evil", 400, "NAME_INVALID"),
    ("/v2/quay.io/" + "a" * 300 + "/manifests/v1", 400, "NAME_INVALID"),
]


@pytest.mark.parametrize(("path", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_oci_errors(clean_lab: Lab, proxy_factory: Factory, path: str,
                                     status: int, code: str) -> None:
    proxy = proxy_factory(clean_lab, chain(clean_lab))
    got, _, body = proxy.get(path)
    assert (got, json.loads(body)["errors"][0]["code"]) == (status, code)
    assert clean_lab.faults.requests == []


def test_metrics_and_explain_endpoint(clean_lab: Lab, proxy_factory: Factory) -> None:
    proxy = proxy_factory(clean_lab, chain(clean_lab, blocked=True))
    clean_lab.faults.set(Fault("refuse"))
    assert proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)[0] == 200
    _, _, metrics = proxy.get("/metrics")
    text = metrics.decode()
    assert 'mirrorlab_attempts_total{host="mirror2.example.net",kind="manifest",outcome="served"}' \
        in text
    assert f'host="{clean_lab.faults.address}",kind="manifest",outcome="connect"' in text
    assert 'mirrorlab_fallbacks_total{kind="manifest"} 1.0' in text
    _, _, body = proxy.get("/mirrorlab/explain?ref=quay.io/ns/app:v1")
    plan = json.loads(body)
    assert [(s["reference"], s["blocked"]) for s in plan["sources"]] == [
        (f"{clean_lab.faults.address}/ns/app:v1", False),
        ("mirror2.example.net/ns/app:v1", False),
        ("quay.io/ns/app:v1", True),
    ]


def test_reload_on_sighup_keeps_the_old_configuration_when_the_new_one_is_bad(
        clean_lab: Lab, proxy_factory: Factory) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab))

    def source() -> str:
        return proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)[1]["X-Mirrorlab-Source"]

    assert source().startswith(lab.faults.address)
    proxy.conf_path.write_text('[[registry]]\nlocation = "quay.io/ns"\n'
                               '[[registry.mirror]]\nlocation = "mirror2.example.net/ns"\n')
    proxy.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not source().startswith("mirror2.example.net") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert source().startswith("mirror2.example.net")
    proxy.conf_path.write_text('[[registry]]\nlocation = "http://broken"\n')
    proxy.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not [e for e in proxy.events("reload") if not e["ok"]]:
        assert time.monotonic() < deadline, "no failed reload was logged"
        time.sleep(0.1)
    assert source().startswith("mirror2.example.net")
    assert "URI schemes are not supported" in str(proxy.events("reload")[-1]["error"])


@pytest.mark.parametrize("mode", ["sticky", "blob", "resilient"])
def test_cooldown_skips_a_dead_mirror_in_resilient_mode(clean_lab: Lab,
                                                        proxy_factory: Factory,
                                                        mode: str) -> None:
    """A node tries every source on every pull; only resilient mode cools a dead one."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab), extra=("--fallback", mode))
    strict = mode != "resilient"
    lab.faults.set(Fault("refuse"))
    for _ in range(3):
        assert proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)[0] == 200
    outcomes = [e["outcome"] for e in proxy.events()
                if str(e["source"]).startswith(lab.faults.address)]
    assert outcomes == (["connect"] * 3 if strict else ["connect", "connect", "cooldown"])


def test_429_is_retried_then_the_next_source_serves(clean_lab: Lab,
                                                    proxy_factory: Factory) -> None:
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab))
    lab.faults.set(Fault("status", path="/manifests/", status=429))
    status, headers, _ = proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)
    assert status == 200 and headers["X-Mirrorlab-Source"].startswith("mirror2.example.net")
    assert len(lab.faults.seen("/manifests/")) == 3  # first try and two retries
    outcomes = [e["outcome"] for e in proxy.events()]
    assert outcomes[:2] == ["toomanyrequests", "served"]


def test_resolve_keeps_checking_the_registry_name(clean_lab: Lab,
                                                  proxy_factory: Factory) -> None:
    """mirror2.example.net pointed at quay.io's server: its certificate has the wrong name."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab),
                          extra=("--resolve", f"mirror2.example.net={lab.source.address}"))
    lab.faults.set(Fault("refuse"))
    status, headers, _ = proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)
    assert status == 200 and headers["X-Mirrorlab-Source"] == "quay.io/ns/app:v1"
    mirror2 = [e for e in proxy.events() if str(e["source"]).startswith("mirror2")]
    assert mirror2[0]["outcome"] == "tls", mirror2


SEARCH = ('unqualified-search-registries = ["quay.io", "example.invalid"]\n'
          '[aliases]\n"pinned" = "quay.io/ns/app"\n')


@pytest.mark.parametrize(("mode", "path", "status", "served"), [
    ("permissive", "/v2/ns/app/manifests/v1", 200, "quay.io/ns/app:v1"),
    ("permissive", "/v2/pinned/manifests/v1", 200, "quay.io/ns/app:v1"),
    ("enforcing", "/v2/pinned/manifests/v1", 200, "quay.io/ns/app:v1"),
    ("enforcing", "/v2/ns/app/manifests/v1", 404, "is ambiguous"),
])
def test_short_name_search(clean_lab: Lab, proxy_factory: Factory, mode: str, path: str,
                           status: int, served: str) -> None:
    conf = f'short-name-mode = "{mode}"\n' + SEARCH + chain(clean_lab)
    proxy = proxy_factory(clean_lab, conf, extra=("--short-names", "search"))
    got, headers, body = proxy.get(path, OCI_MANIFEST)
    assert got == status
    if status == 200:
        logical = [e["logical"] for e in proxy.events() if e["outcome"] == "served"]
        assert logical == [served]
        assert headers["X-Mirrorlab-Source"].startswith(clean_lab.faults.address)
    else:
        assert served in json.loads(body)["errors"][0]["message"]


def test_client_certificate_from_certs_d(tmp_path: Path, proxy_factory: Factory) -> None:
    """A registry that requires client certificates: the pair comes from certs.d."""
    ca = LabCA("mtls", tmp_path / "ca")
    server = ca.issue("server", "mtls.example.com")
    certs_d = tmp_path / "certs.d"
    directory = ca.trust_in(certs_d, "mtls.example.com")
    registry = RegistryProcess(tmp_path, "mtls", tls=TlsFiles(
        str(server.cert), str(server.key), str(ca.ca_path), client_ca=str(ca.ca_path)))
    image = make_image("mtls")
    seed_client = ca.issue_client("seeder", "seeder")
    with registry:
        context = ssl.create_default_context(cafile=str(ca.ca_path))
        context.load_cert_chain(str(seed_client.cert), str(seed_client.key))
        client = RegistryClient(registry.url)
        client.context = context
        client.push_image("ns/app", image, "v1")
        target = SimpleNamespace(certs_d=certs_d,
                                 resolve_args=["--resolve", f"mtls.example.com={registry.address}"])
        proxy = proxy_factory(target, '[[registry]]\nlocation = "mtls.example.com/ns"\n')
        status, _, body = proxy.get("/v2/mtls.example.com/ns/app/manifests/v1", OCI_MANIFEST)
        assert status == 502 and b"certificate" in body  # no client certificate yet
        ca.issue_client("client", "mirrorlab")
        for suffix in ("cert", "key"):
            (directory / f"client.{suffix}").write_bytes(
                (tmp_path / "ca" / f"client.{suffix}").read_bytes())
        proxy.process.send_signal(signal.SIGHUP)  # certs.d is re-read on reload
        deadline = time.monotonic() + 10
        while proxy.get("/v2/mtls.example.com/ns/app/manifests/v1", OCI_MANIFEST)[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        status, _, body = proxy.get(f"/v2/mtls.example.com/ns/app/blobs/"
                                          f"{image.layers[0].digest}")
        assert status == 200 and body == image.layers[0].data


def test_credentials_do_not_follow_a_redirect_to_another_host(
        auth_lab: AuthLab, proxy_factory: Factory, tmp_path: Path) -> None:
    """Blob storage on another host (a 307 from the registry) gets no Authorization."""
    tls = auth_lab.registry.tls
    assert tls is not None
    storage = RegistryProcess(tmp_path, "storage")
    with storage:
        RegistryClient(storage.url).push_image("ns/private", auth_lab.image, "v1")
        # The front answers as registry.example.com (same certificate) and redirects blobs.
        with FaultProxy(storage.url) as blob_host, FaultProxy(
                auth_lab.registry.url, upstream_ca=tls.ca,
                server_tls=(tls.cert, tls.key)) as front:
            front.set(Fault("redirect", path="/blobs/", location=f"http://{blob_host.address}"))
            target = SimpleNamespace(
                certs_d=auth_lab.certs_d,
                resolve_args=["--resolve", f"registry.example.com={front.address}",
                              "--resolve", f"auth.example.com={auth_lab.tokens.host}:"
                              f"{auth_lab.tokens.port}"])
            auth = _auth_json("puller", "s3cret-pw", "registry.example.com")
            proxy = proxy_factory(target, PRIVATE, auth=auth)
            layer = auth_lab.image.layers[0]
            status, _, body = proxy.get(f"/v2/registry.example.com/ns/private/blobs/"
                                        f"{layer.digest}")
            assert status == 200 and body == layer.data
            sent_to_registry = [h.get("Authorization", "") for h in front.headers_seen]
            assert any(value.startswith("Bearer ") for value in sent_to_registry)
            assert blob_host.requests == [f"GET /v2/ns/private/blobs/{layer.digest}"]
            assert all("Authorization" not in headers for headers in blob_host.headers_seen)


def test_a_tag_pull_does_not_make_later_digest_pulls_sticky(clean_lab: Lab,
                                                             proxy_factory: Factory) -> None:
    """Found by the demo: after a tag pull served by the source, a top-level pull by digest
    must follow the plan (mirrors first) again; only what a served manifest referenced is
    sticky."""
    lab = clean_lab
    proxy = proxy_factory(lab, chain(lab, pull_from=("digest-only", "digest-only")))
    app = lab.images["app"]
    status, headers, _ = proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)
    assert status == 200 and headers["X-Mirrorlab-Source"] == "quay.io/ns/app:v1"
    status, headers, _ = proxy.get(f"/v2/quay.io/ns/app/manifests/{app.digest}", OCI_MANIFEST)
    assert status == 200
    assert headers["X-Mirrorlab-Source"].startswith(lab.faults.address + "/")


def test_proxy_serves_tls_that_podman_verifies(clean_lab: Lab, proxy_factory: Factory,
                                               podman: Podman, tmp_path: Path) -> None:
    """`serve --tls-cert`: podman pulls over HTTPS, trusting only a cert dir's CA."""
    ca = LabCA("proxy", tmp_path / "proxy-ca")
    issued = ca.issue("proxy", "localhost")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ca.crt").write_bytes(ca.pem)
    proxy = proxy_factory(clean_lab, chain(clean_lab),
                          extra=("--tls-cert", str(issued.cert), "--tls-key", str(issued.key)))
    app = clean_lab.images["app"]
    ref = f"{proxy.address}/quay.io/ns/app@{app.digest}"
    result = podman.pull(ref, cert_dir=str(trust))
    assert result.returncode == 0, result.stderr
    assert podman.digest(ref) == app.digest
    untrusted = podman.pull(ref, cert_dir=str(tmp_path))  # no CA: verification must fail
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr


HEADERS_OK = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
CLIENT_LIMITS = [
    # what a client sends, what the proxy answers (status line start, or closed)
    ("header of 100 kB", HEADERS_OK + b"X-A: " + b"a" * 100_000 + b"\r\n\r\n", b"HTTP/1.0 400"),
    ("5000 headers", HEADERS_OK + b"".join(b"X-%d: 1\r\n" % i for i in range(5000)) + b"\r\n",
     b"HTTP/1.0 400"),
    ("URL of 100 kB", b"GET /v2/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     b"HTTP/1.0 400"),
    ("body on a pull API", b"PUT /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 10000000\r\n\r\n" + b"x" * 65536, b"HTTP/1.1 405"),
    ("silent connection", b"", b""),
    ("headers that never end", HEADERS_OK, b""),
    ("idle after a request", HEADERS_OK + b"\r\n", b"HTTP/1.1 200"),
]


@pytest.mark.parametrize(("sent", "answer"), [c[1:] for c in CLIENT_LIMITS],
                         ids=[c[0] for c in CLIENT_LIMITS])
def test_client_limits(clean_lab: Lab, proxy_factory: Factory, sent: bytes,
                       answer: bytes) -> None:
    """Oversized requests get a 4xx; a connection without a complete request is closed after
    --idle-timeout (here 1 s), so no client can hold the proxy's sockets; the proxy lives on."""
    import socket

    proxy = proxy_factory(clean_lab, chain(clean_lab), extra=("--idle-timeout", "1"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        started = time.monotonic()
        client.sendall(sent)
        received = b""
        try:
            while chunk := client.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        closed_after = time.monotonic() - started
    assert received.startswith(answer), received[:200]
    assert closed_after < 5, closed_after  # a body nobody reads is dropped for 2 s at most
    if not answer or answer.endswith(b"200"):  # only the idle timeout closes these
        assert closed_after > 0.9, closed_after
    assert proxy.get("/healthz")[0] == 200


UPSTREAM_TLS = [
    # certs.d holds the lab CA, mirror2 insecure -> outcome of the mirror2 attempt
    (True, False, "served"),
    (False, False, "tls"),  # verified by default: the lab CA is in no system store
    (False, True, "served"),  # only `insecure` relaxes it
]


@pytest.mark.parametrize(("trusted", "insecure", "outcome"), UPSTREAM_TLS)
def test_upstream_tls_is_verified_unless_insecure(clean_lab: Lab, proxy_factory: Factory,
                                                  tmp_path: Path, trusted: bool,
                                                  insecure: bool, outcome: str) -> None:
    lab = clean_lab
    conf = chain(lab)
    if insecure:
        conf = conf.replace('location = "mirror2.example.net/ns"\n',
                            'location = "mirror2.example.net/ns"\ninsecure = true\n')
    target = SimpleNamespace(certs_d=lab.certs_d if trusted else tmp_path / "empty",
                             resolve_args=lab.resolve_args)
    proxy = proxy_factory(target, conf)
    lab.faults.set(Fault("refuse"))
    status, headers, _ = proxy.get("/v2/quay.io/ns/app/manifests/v1", OCI_MANIFEST)
    mirror2 = [e for e in proxy.events() if str(e["source"]).startswith("mirror2")]
    assert mirror2[0]["outcome"] == outcome, mirror2
    if outcome == "served":
        assert status == 200
        assert headers["X-Mirrorlab-Source"].startswith("mirror2.example.net")
    else:  # the source quay.io has a lab certificate too: nothing is left
        assert status == 502
        assert [e["outcome"] for e in proxy.events()][1:] == ["tls", "tls"]
