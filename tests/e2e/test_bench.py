"""`mirrorlab bench` runs end to end on a small blob and writes comparable results; its
verifying relay passes an intact blob and cuts a wrong or short one.
(Speed is measured by `make bench`, not asserted by tests.)"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirrorlab.harness.bench import build_relay, run_bench, start_relay
from mirrorlab.harness.bench_report import BLOB_PATHS, CONCURRENT_PATHS


def test_bench_writes_results_beside_their_baselines(tmp_path: Path) -> None:
    results = run_bench(tmp_path / "work", size_mib=4, large_mib=8, reps=1, requests=5,
                        out=tmp_path / "out")
    saved = json.loads((tmp_path / "out/results.json").read_text())
    assert saved == results
    assert set(results["blob"]) == set(BLOB_PATHS)
    assert all(case["mb_per_s"] > 0 for case in results["blob"].values())
    # The alternated cases' warm-up round is not among the figures.
    assert all(len(case["seconds"]) == 1 for case in results["blob"].values())
    assert set(results["manifest"]) == {f"{m} by {k}" for m in ("GET", "HEAD")
                                        for k in ("tag", "digest")}
    assert 0 < results["proxy_peak_rss_mib"] < 1024
    assert 0 < results["proxy_peak_rss_large_mib"] < 1024
    assert set(results["blob"]["mirrorlab"]["cpu_s_per_gb"]) == {"origin", "proxy", "client"}
    assert set(results["blob"]["relay"]["cpu_s_per_gb"]) == {"origin", "relay", "client"}
    assert set(results["blob"]["nginx_cache_warm"]["cpu_s_per_gb"]) == {"origin", "nginx",
                                                                        "client"}
    assert results["ceiling"]["hash_only_proxy_bound_vs_direct"] > 0
    # Left out when nginx's cold rep of a small blob took less than a CPU tick to count.
    estimate = results["ceiling"].get("cache_cold_verifying_nginx_estimate_vs_relay")
    assert estimate is None or estimate > 0
    # The floor of the HTTP stack: an aiohttp-only relay beside mirrorlab everywhere.
    assert set(results["blob"]["aiohttp_relay"]["cpu_s_per_gb"]) == {"origin", "aiohttp",
                                                                     "client"}
    assert all(case[name]["aggregate_mb_per_s"] > 0 for case in results["concurrent"].values()
               for name in CONCURRENT_PATHS)
    assert all(pair["aiohttp_relay"]["p50_ms"] > 0 for pair in results["manifest"].values())
    assert (tmp_path / "out/results.png").read_bytes().startswith(b"\x89PNG")
    assert results["ratios"]["mirrorlab_vs_direct_throughput"] > 0
    assert results["ratios"]["mirrorlab_vs_relay_throughput"] > 0
    # Every target of issue 15 is reported, met or missed.
    assert len(results["targets"]) == 12
    assert all(isinstance(target["met"], bool) for target in results["targets"])
    report = (tmp_path / "out/results.md").read_text()
    assert "| mirrorlab |" in report and "| verifying relay (C) |" in report
    assert "| nginx cache warm |" in report and "| aiohttp relay (no verification) |" in report
    assert sum(line.endswith(("| met |", "| MISSED |")) for line in report.splitlines()) == 12
    # nginx served the warm reps from its cache, not from the origin.
    assert list((tmp_path / "work/nginx/cache").rglob("*"))
    # The verified cache: 128 cold pulls fetched each blob of the image once.
    concurrent = results["cache"]["concurrent"]
    assert concurrent["upstream_gets_per_blob"] == {"max": 1, "min": 1,
                                                    "total": concurrent["blobs"]}
    assert "| mirrorlab cache warm |" in report
    assert all(results["podman"][name]["median_s"] > 0 for name in ("direct", "mirrorlab"))
    # Behaviour, not speed: a hung first mirror is waited out once, then skipped.
    hung = results["failover"]["hung"]["first_pulls_extra_ms"]
    assert hung[0] > 1000 > hung[1], hung


BODY = bytes(range(256)) * (12 * 1024)  # 3 MiB: more than the relay's 1 MiB buffer
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


class _Origin(BaseHTTPRequestHandler):
    """Serves BODY under any digest; `/short/` announces BODY's length but ends early."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        if "/manifests/" in self.path:  # what the relay passed on, back as the media type
            self.send_header("Content-Type", self.headers.get("Accept", "none"))
        self.end_headers()
        if "/short/" in self.path:
            self.wfile.write(BODY[: len(BODY) // 2])
            self.close_connection = True
        else:
            self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def relay_port(tmp_path: Path) -> Iterator[int]:
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    relay, port = start_relay(build_relay(tmp_path), f"127.0.0.1:{origin.server_port}",
                              tmp_path)
    try:
        yield port
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        origin.shutdown()


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_relay_passes_an_intact_blob_on_one_connection(relay_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", relay_port, timeout=10)
    try:
        for _ in range(2):  # kept alive on both sides
            connection.request("GET", f"/v2/bench/app/blobs/{DIGEST}")
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Docker-Content-Digest") == DIGEST
            assert response.read() == BODY
    finally:
        connection.close()
    assert _get(relay_port, "/v2/bench/app/manifests/v1")[0] == 404
    assert _get(relay_port, "/v2/bench/app/blobs/sha256:nothex")[0] == 404


@pytest.mark.parametrize("path", [f"/v2/bench/app/blobs/sha256:{'0' * 64}",
                                  f"/v2/short/app/blobs/{DIGEST}"],
                         ids=["wrong digest", "cut upstream"])
def test_relay_cuts_a_wrong_or_short_blob(relay_port: int, path: str) -> None:
    """The client never completes it: the connection is reset before the last piece."""
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        _get(relay_port, path)
    assert _get(relay_port, f"/v2/bench/app/blobs/{DIGEST}") == (200, BODY)


@pytest.mark.parametrize(("path", "accepts", "media_type"), [
    (f"/v2/bench/app/manifests/{DIGEST}", [OCI_INDEX], OCI_INDEX),
    (f"/v2/bench/app/manifests/{DIGEST}", [OCI_MANIFEST], OCI_MANIFEST),
    # containers/image sends a line per media type: all of them are passed on.
    (f"/v2/bench/app/manifests/{DIGEST}", [OCI_INDEX, OCI_MANIFEST],
     f"{OCI_INDEX}, {OCI_MANIFEST}"),
    # A repository named like an endpoint: the path's last one counts.
    (f"/v2/bench/blobs/manifests/{DIGEST}", [OCI_INDEX], OCI_INDEX),
], ids=["index", "manifest", "two accept lines", "repository named blobs"])
def test_relay_passes_a_manifest_by_digest_with_the_clients_accept(
        relay_port: int, path: str, accepts: list[str], media_type: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", relay_port, timeout=10)
    try:
        connection.putrequest("GET", path)
        for accept in accepts:
            connection.putheader("Accept", accept)
        connection.endheaders()
        response = connection.getresponse()
        assert (response.status, response.getheader("Content-Type")) == (200, media_type)
        assert response.read() == BODY
    finally:
        connection.close()


def test_relay_refuses_a_digest_it_cannot_compute(relay_port: int) -> None:
    """md4 is known to OpenSSL 3 by name but not computable without its legacy provider."""
    assert _get(relay_port, f"/v2/bench/app/blobs/md4:{'0' * 32}")[0] in (404, 502)
    assert _get(relay_port, f"/v2/bench/app/blobs/{DIGEST}") == (200, BODY)  # still up


def test_relay_serves_a_connection_while_another_waits(relay_port: int) -> None:
    """A thread for each client: one that sent half a request holds up no other."""
    with socket.create_connection(("127.0.0.1", relay_port), timeout=10) as waiting:
        waiting.sendall(b"GET /v2/bench/app/blobs/")
        assert _get(relay_port, f"/v2/bench/app/blobs/{DIGEST}") == (200, BODY)
