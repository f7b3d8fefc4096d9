"""`mirrorlab bench`: mirrorlab against its baselines, measured in one run on loopback.

- a large incompressible blob: direct from the registry, through mirrorlab, and through the
  distribution registry's own pull-through proxy (the same binary with `proxy.remoteurl`),
  cold and warm;
- manifest latency (p50, p99) for GET and HEAD, by tag and by digest: direct vs mirrorlab;
- the proxy's peak resident memory while it streams the blob;
- 32 and 128 concurrent pulls of a many-layer image: aggregate throughput and p99 pull time,
  direct vs mirrorlab, and the proxy's peak memory under 128 pulls;
- `podman pull` wall time of an image, direct vs through mirrorlab (a fresh store each time);
- failover cost: what a pull pays when the first mirror refuses connections or accepts and
  hangs (bounded by the read timeout), for the first pull and, with the cool-down on, later.

Every figure is reported beside its baseline and as a ratio, never as an absolute target.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from .clients import PodmanClient
from .faults import Fault, FaultProxy
from .images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Blob, RegistryClient, make_image
from .net import free_port, wait_for_http
from .registry import RegistryProcess

CHUNK = 1024 * 1024


def _make_blob(size: int) -> Blob:
    return Blob(OCI_LAYER, os.urandom(size))


async def _fetch(session: aiohttp.ClientSession, url: str, method: str = "GET",
                 headers: dict[str, str] | None = None) -> tuple[int, int]:
    async with session.request(method, url, headers=headers) as response:
        received = 0
        async for chunk in response.content.iter_chunked(CHUNK):
            received += len(chunk)
        return response.status, received


async def _throughput(url: str, size: int, reps: int) -> dict[str, Any]:
    timings = []
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for _ in range(reps):
            started = time.perf_counter()
            status, received = await _fetch(session, url)
            elapsed = time.perf_counter() - started
            if status != 200 or received != size:
                raise RuntimeError(f"{url}: status {status}, {received} of {size} bytes")
            timings.append(elapsed)
    median = statistics.median(timings)
    return {"seconds": [round(t, 4) for t in timings], "median_s": round(median, 4),
            "mb_per_s": round(size / median / 1e6, 1)}


async def _latency(url: str, method: str, accept: str, count: int) -> dict[str, float]:
    samples = []
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for _ in range(count):
            started = time.perf_counter()
            status, _ = await _fetch(session, url, method, {"Accept": accept})
            samples.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"{method} {url}: status {status}")
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3)}


class _PeakRss:
    """Samples a process's resident memory (VmRSS) every 20 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self._read("VmRSS:"))
            time.sleep(0.02)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


READ_TIMEOUT = 2.0
MANY_LAYERS = 16
LAYER_SIZE = 512 * 1024


async def _pull_all(session: aiohttp.ClientSession, base: str, ref: str) -> tuple[float, int]:
    """One pull as a client makes it: the manifest, then every blob. Seconds and bytes."""
    started = time.perf_counter()
    async with session.get(f"{base}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}) as r:
        if r.status != 200:
            raise RuntimeError(f"{base}: manifest status {r.status}")
        manifest = json.loads(await r.read())
    received = 0
    for blob in [manifest["config"], *manifest["layers"]]:
        status, size = await _fetch(session, f"{base}/blobs/{blob['digest']}")
        if status != 200:
            raise RuntimeError(f"{base}: blob status {status}")
        received += size
    return time.perf_counter() - started, received


async def _concurrent(base: str, ref: str, pulls: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
        started = time.perf_counter()
        done = await asyncio.gather(*(_pull_all(session, base, ref) for _ in range(pulls)))
        wall = time.perf_counter() - started
    times = sorted(seconds for seconds, _ in done)
    return {"wall_s": round(wall, 3),
            "aggregate_mb_per_s": round(sum(size for _, size in done) / wall / 1e6, 1),
            "p99_pull_s": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3)}


async def _failover(base: str, digest: str, fronts: dict[str, FaultProxy],
                    later: int = 20) -> dict[str, Any]:
    """Extra ms per pull when the first mirror refuses or hangs, first pull and later ones
    (the cool-down skips a host after two connection-level failures). Each case has its own
    first-mirror host, so one case's cool-down cannot hide the other's cost."""
    async def timed(url: str) -> float:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            started = time.perf_counter()
            status, _ = await _fetch(session, url, "GET", {"Accept": OCI_MANIFEST})
            if status != 200:
                raise RuntimeError(f"failover pull: status {status}")
            return (time.perf_counter() - started) * 1000

    figures: dict[str, Any] = {"read_timeout_s": READ_TIMEOUT}
    for name, fault in (("refused", Fault("refuse")),
                        ("hung", Fault("hang", path="/manifests/"))):
        url = f"{base}/quay.io/failover-{name}/app/manifests/{digest}"
        healthy = statistics.median([await timed(url) for _ in range(later)])
        fronts[name].set(fault)
        first = [await timed(url) for _ in range(2)]  # the cool-down needs two failures
        rest = statistics.median([await timed(url) for _ in range(later)])
        fronts[name].set(Fault())
        figures[name] = {"healthy_p50_ms": round(healthy, 3),
                         "first_pulls_extra_ms": [round(t - healthy, 1) for t in first],
                         "later_p50_extra_ms": round(rest - healthy, 3)}
    return figures


def _podman_pulls(workdir: Path, ref: str, reps: int) -> dict[str, Any]:
    """Wall seconds of `podman pull`, each into an emptied store."""
    client = PodmanClient(workdir)
    timings = []
    try:
        for _ in range(reps):
            subprocess.run([*client.base, "rmi", "-a", "-f"], capture_output=True,
                           env=client.env, check=False)
            started = time.perf_counter()
            result = client.pull(ref)
            timings.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise RuntimeError(f"podman pull {ref}: {result.stderr.strip()[-300:]}")
    finally:
        client.close()
    return {"seconds": [round(t, 3) for t in timings],
            "median_s": round(statistics.median(timings), 3)}


def run_bench(workdir: Path, *, size_mib: int = 256, reps: int = 3, requests: int = 200,
              out: Path = Path("bench")) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    size = size_mib * 1024 * 1024
    blob = _make_blob(size)
    config = Blob(OCI_CONFIG, b'{"architecture":"amd64","os":"linux","rootfs":{"type":'
                  b'"layers","diff_ids":[]}}')
    manifest = Blob(OCI_MANIFEST, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": [blob.descriptor()]}).encode())
    origin = RegistryProcess(workdir, "origin")
    pull_through: RegistryProcess | None = None
    proxy: subprocess.Popen[bytes] | None = None
    fronts: dict[str, FaultProxy] = {}
    results: dict[str, Any] = {"blob_mib": size_mib, "reps": reps, "requests": requests}
    try:
        origin.start()
        client = RegistryClient(origin.url)
        for item in (config, blob):
            client.push_blob("bench/app", item)
        client.push_manifest("bench/app", "v1", manifest)
        many = make_image("bench-many", (LAYER_SIZE,) * MANY_LAYERS)
        client.push_image("bench/many", many, "v1")
        podman_image = make_image("bench-podman", (1024 * 1024, 8 * 1024 * 1024))
        client.push_image("bench/podman", podman_image, "v1")
        layer = blob.digest
        del blob  # free the blob before measuring the proxy's memory
        conf = workdir / "registries.conf"
        text = (f'[[registry]]\nlocation = "quay.io/bench"\n[[registry.mirror]]\n'
                f'location = "{origin.address}/bench"\ninsecure = true\n')
        for name in ("refused", "hung"):
            fronts[name] = FaultProxy(origin.url).start()
            text += (f'[[registry]]\nlocation = "quay.io/failover-{name}"\n'
                     f'[[registry.mirror]]\nlocation = "{fronts[name].address}/bench"\n'
                     f'insecure = true\n[[registry.mirror]]\n'
                     f'location = "{origin.address}/bench"\ninsecure = true\n')
        conf.write_text(text)
        (workdir / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        port = free_port()
        with open(workdir / "proxy.log", "wb") as log:
            proxy = subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "serve", "--registries-conf", str(conf),
                 "--registries-conf-dir", str(workdir), "--policy",
                 str(workdir / "policy.json"), "--listen", f"127.0.0.1:{port}",
                 "--offline-names", "--read-timeout", str(READ_TIMEOUT)],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proxy, what="mirrorlab serve")
        pull_through = RegistryProcess(workdir, "pull-through", proxy_remote=origin.url)
        pull_through.start()
        digest = manifest.digest
        direct = f"{origin.url}/v2/bench/app"
        mirrored = f"http://127.0.0.1:{port}/v2/quay.io/bench/app"
        through = f"{pull_through.url}/v2/bench/app"

        async def measure() -> None:
            with _PeakRss(proxy.pid) as rss:
                results["blob"] = {
                    "direct": await _throughput(f"{direct}/blobs/{layer}", size, reps),
                    "mirrorlab": await _throughput(f"{mirrored}/blobs/{layer}", size, reps),
                }
            results["blob"]["pull_through_cold"] = await _throughput(
                f"{through}/blobs/{layer}", size, 1)
            await asyncio.sleep(2)  # distribution commits its copy in the background
            results["blob"]["pull_through_warm"] = await _throughput(
                f"{through}/blobs/{layer}", size, reps)
            results["proxy_peak_rss_mib"] = round(rss.peak_kib / 1024, 1)
            results["failover"] = await _failover(f"http://127.0.0.1:{port}/v2", digest, fronts)
            results["concurrent"] = {}
            for pulls in (32, 128):
                direct_case = await _concurrent(f"{origin.url}/v2/bench/many", many.digest, pulls)
                with _PeakRss(proxy.pid) as busy:
                    proxied = await _concurrent(
                        f"http://127.0.0.1:{port}/v2/quay.io/bench/many", many.digest, pulls)
                results["concurrent"][str(pulls)] = {
                    "direct": direct_case, "mirrorlab": proxied,
                    "proxy_peak_rss_mib": round(busy.peak_kib / 1024, 1)}
            results["manifest"] = {}
            for name, ref in (("tag", "v1"), ("digest", digest)):
                for method in ("GET", "HEAD"):
                    key = f"{method} by {name}"
                    results["manifest"][key] = {
                        "direct": await _latency(f"{direct}/manifests/{ref}", method,
                                                 OCI_MANIFEST, requests),
                        "mirrorlab": await _latency(f"{mirrored}/manifests/{ref}", method,
                                                    OCI_MANIFEST, requests),
                    }

        asyncio.run(measure())
        results["podman"] = {
            name: _podman_pulls(workdir / "podman", ref, reps)
            for name, ref in (("direct", f"{origin.address}/bench/podman:v1"),
                              ("mirrorlab", f"127.0.0.1:{port}/quay.io/bench/podman:v1"))}
    finally:
        for front in fronts.values():
            front.stop()
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=10)
        for registry in (pull_through, origin):
            if registry is not None:
                registry.stop()
    blob_results = results["blob"]
    base = blob_results["direct"]["mb_per_s"]
    results["ratios"] = {
        "mirrorlab_vs_direct_throughput": round(blob_results["mirrorlab"]["mb_per_s"] / base, 3),
        "pull_through_cold_vs_direct": round(
            blob_results["pull_through_cold"]["mb_per_s"] / base, 3),
        "pull_through_warm_vs_direct": round(
            blob_results["pull_through_warm"]["mb_per_s"] / base, 3),
    }
    podman = results["podman"]
    results["ratios"]["podman pull wall time, mirrorlab vs direct"] = round(
        podman["mirrorlab"]["median_s"] / podman["direct"]["median_s"], 3)
    for pulls, case in results["concurrent"].items():
        results["ratios"][f"{pulls} concurrent pulls, aggregate vs direct"] = round(
            case["mirrorlab"]["aggregate_mb_per_s"] / case["direct"]["aggregate_mb_per_s"], 3)
    for key, pair in results["manifest"].items():
        results["ratios"][f"manifest {key} p50 overhead ms"] = round(
            pair["mirrorlab"]["p50_ms"] - pair["direct"]["p50_ms"], 3)
    write_results(results, out)
    return results


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    blob = results["blob"]
    lines = [f"# mirrorlab bench ({results['blob_mib']} MiB blob, {results['reps']} reps, "
             f"{results['requests']} manifest requests)", "",
             "| blob path | MB/s (median) | vs direct |", "| --- | --- | --- |"]
    base = blob["direct"]["mb_per_s"]
    for name in ("direct", "mirrorlab", "pull_through_cold", "pull_through_warm"):
        lines.append(f"| {name.replace('_', ' ')} | {blob[name]['mb_per_s']} | "
                     f"{blob[name]['mb_per_s'] / base:.2f} |")
    lines += ["", f"Proxy peak resident memory while streaming: "
              f"{results['proxy_peak_rss_mib']} MiB.", "",
              "| manifest request | direct p50 / p99 ms | mirrorlab p50 / p99 ms |",
              "| --- | --- | --- |"]
    for key, pair in results["manifest"].items():
        lines.append(f"| {key} | {pair['direct']['p50_ms']} / {pair['direct']['p99_ms']} | "
                     f"{pair['mirrorlab']['p50_ms']} / {pair['mirrorlab']['p99_ms']} |")
    lines += ["", f"Concurrent pulls of a {MANY_LAYERS}-layer image "
              f"({MANY_LAYERS} x {LAYER_SIZE // 1024} KiB):", "",
              "| pulls | direct MB/s, p99 s | mirrorlab MB/s, p99 s | vs direct | proxy peak MiB |",
              "| --- | --- | --- | --- | --- |"]
    for pulls, case in results["concurrent"].items():
        d, m = case["direct"], case["mirrorlab"]
        lines.append(f"| {pulls} | {d['aggregate_mb_per_s']}, {d['p99_pull_s']} | "
                     f"{m['aggregate_mb_per_s']}, {m['p99_pull_s']} | "
                     f"{m['aggregate_mb_per_s'] / d['aggregate_mb_per_s']:.2f} | "
                     f"{case['proxy_peak_rss_mib']} |")
    podman = results["podman"]
    lines += ["", f"`podman pull` of a 9 MiB image into an empty store: direct "
              f"{podman['direct']['median_s']} s, through mirrorlab "
              f"{podman['mirrorlab']['median_s']} s (median of {results['reps']})."]
    failover = results.get("failover")
    if failover:
        lines += ["", f"Failover, first mirror broken (read timeout "
                  f"{failover['read_timeout_s']} s; the cool-down skips it after two failures):",
                  "", "| first mirror | healthy p50 ms | extra ms, first two pulls | "
                  "extra ms p50, later pulls |", "| --- | --- | --- | --- |"]
        for name in ("refused", "hung"):
            case = failover[name]
            lines.append(f"| {name} | {case['healthy_p50_ms']} | "
                         f"{case['first_pulls_extra_ms']} | {case['later_p50_extra_ms']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
