"""`mirrorlab bench`: mirrorlab against its baselines, measured in one run on loopback.

- a large incompressible blob: direct from the registry, through the verifying relay (the
  project's own C program, `relay.c`, built here with gcc and OpenSSL: recv into a 1 MiB
  buffer, SHA-256, send, the digest checked at the end; the least any verifying proxy must
  do), through mirrorlab, through nginx as a plain relay, through a relay of aiohttp alone
  (`aiohttp_relay`: mirrorlab's HTTP stack, verifying nothing), and cold through nginx as a
  caching reverse proxy (`proxy_cache`, `sendfile on`) and mirrorlab's verified cache,
  alternated rep by rep; then through the distribution registry's own pull-through proxy
  (the same binary with `proxy.remoteurl`) cold and warm, and both caches warm, alternated;
- manifest latency (p50, p99) for GET and HEAD, by tag and by digest: direct, mirrorlab and
  the aiohttp relay (the floor of the stack: what a request costs through aiohttp alone);
- the CPU seconds per GB each process spends (origin, proxy, client) and from them the
  ceiling this machine puts on any proxy that verifies SHA-256 (see `bench_report`);
- the proxy's peak resident memory while it streams the blob and a larger one (flat in size);
- 32 and 128 concurrent pulls of a many-layer image, repeated and alternated with direct,
  the verifying relay (a thread per connection), the aiohttp relay and the nginx relay:
  aggregate throughput and p99 pull time, and the proxy's peak memory;
- `podman pull` wall time of the demo's image, direct vs through mirrorlab (a fresh store
  each time);
- failover cost: what a pull pays when the first mirror refuses connections or accepts and
  hangs (bounded by the read timeout), for the first pull and, with the cool-down on, later;
  measured on a proxy of its own in resilient mode (the one with a cool-down) with a short
  read timeout, while every other figure comes from a proxy on `mirrorlab serve`'s defaults;
- the verified cache (`serve --cache`, a proxy of its own, so that every other figure is
  uncached): cold reps remove the entry afterwards; 128 concurrent cold pulls of the
  many-layer image, then warm, with the origin's requests for each blob counted (single
  flight: one each).

Every figure is reported beside its baseline and as a ratio; the targets of issue 15 are
ratios to those baselines (see `bench_report.TARGETS`), each marked met or missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from .bench_report import ceiling, ratios, targets, write_results
from .clients import PodmanClient
from .faults import Fault, FaultProxy
from .images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Blob, RegistryClient, make_image
from .net import free_port, wait_for_http, wait_for_port
from .registry import RegistryProcess
from .scenario import BUILTIN, load_scenario

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


async def _download(session: aiohttp.ClientSession, url: str, size: int) -> float:
    """Seconds to download `url`, which must be `size` bytes."""
    started = time.perf_counter()
    status, received = await _fetch(session, url)
    elapsed = time.perf_counter() - started
    if status != 200 or received != size:
        raise RuntimeError(f"{url}: status {status}, {received} of {size} bytes")
    return elapsed


def _figures(timings: list[float], size: int, spent: dict[str, float]) -> dict[str, Any]:
    median = statistics.median(timings)
    total = size * len(timings) / 1e9
    return {"seconds": [round(t, 4) for t in timings], "median_s": round(median, 4),
            "mb_per_s": round(size / median / 1e6, 1),
            "cpu_s_per_gb": {name: round(seconds / total, 3) for name, seconds in spent.items()}}


async def _throughput(urls: list[str], size: int, pids: dict[str, int]) -> dict[str, Any]:
    """Median MB/s of downloading each of `urls` in turn on one kept-alive session, and the
    CPU each process in `pids` spent per GB."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with _CpuMeter(pids) as cpu:
            timings = [await _download(session, url, size) for url in urls]
    return _figures(timings, size, cpu.spent)


async def _alternated(cases: dict[str, tuple[str | Callable[[int], str], dict[str, int]]],
                      size: int, reps: int,
                      before: dict[str, Callable[[], Awaitable[None]]] | None = None,
                      after: dict[str, Callable[[], Awaitable[None]]] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Each case's URL downloaded `reps` times, the cases taking turns rep by rep (a noisy
    moment of the machine falls on all of them), each on its own kept-alive session; the CPU
    of each case's processes is counted only while that case downloads. A URL may depend on
    the rep (a new cache key each time); `before[name]` and `after[name]` run before and
    after each of that case's reps, unmeasured (a cold cache is made cold again). One round
    before the `reps` goes unmeasured: on this VM the first fill of memory the guest has not
    used lately costs the host a fault per page (the first cold rep of either cache took
    1.7-2.2 s where the others took 0.3-0.5), and a first connection has its own costs."""
    timings: dict[str, list[float]] = {name: [] for name in cases}
    spent = {name: dict.fromkeys([*pids, "client"], 0.0) for name, (_, pids) in cases.items()}
    sessions = {name: aiohttp.ClientSession(auto_decompress=False) for name in cases}
    try:
        for rep in range(-1, reps):
            for name, (url, pids) in cases.items():
                if before and name in before:
                    await before[name]()
                with _CpuMeter(pids) as cpu:
                    seconds = await _download(
                        sessions[name], url if isinstance(url, str) else url(rep), size)
                if rep >= 0:
                    timings[name].append(seconds)
                    for process, used in cpu.spent.items():
                        spent[name][process] += used
                if after and name in after:
                    await after[name]()
    finally:
        for session in sessions.values():
            await session.close()
    return {name: _figures(timings[name], size, spent[name]) for name in cases}


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


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CpuMeter:
    """CPU seconds that processes, and this one as "client", spend inside the block."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.spent = pids, {name: 0.0 for name in [*pids, "client"]}

    def _now(self) -> dict[str, float]:
        return {**{name: _cpu_seconds(pid) for name, pid in self.pids.items()},
                "client": time.process_time()}

    def __enter__(self) -> _CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = {name: end - self._start[name] for name, end in self._now().items()}

    def per_gb(self, size: int) -> dict[str, float]:
        return {name: round(seconds / (size / 1e9), 3) for name, seconds in self.spent.items()}


def _sha256_mb_per_s(size: int = 64 * 1024 * 1024) -> float:
    """How fast one core hashes here: a bound on any proxy that verifies digests."""
    data = os.urandom(size)
    started = time.perf_counter()
    hashlib.sha256(data).digest()
    return round(size / (time.perf_counter() - started) / 1e6, 1)


# The failover proxy's read timeout: what a hung mirror costs the first pull. Only the failover
# measurement runs with it; under the concurrent pulls a loaded machine can take longer than
# this for one response, so the throughput proxy keeps `mirrorlab serve`'s defaults.
READ_TIMEOUT = 2.0
DEMO_IMAGE = "ubi"
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


async def _concurrent_once(base: str, ref: str, pulls: int,
                           pids: dict[str, int]) -> tuple[float, float, dict[str, float]]:
    """`pulls` pulls at once: aggregate MB/s, the p99 time of one pull, CPU s per GB."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
        with _CpuMeter(pids) as cpu:
            started = time.perf_counter()
            done = await asyncio.gather(*(_pull_all(session, base, ref) for _ in range(pulls)))
            wall = time.perf_counter() - started
    times = sorted(seconds for seconds, _ in done)
    size = sum(size for _, size in done)
    return (size / wall / 1e6, times[min(len(times) - 1, int(len(times) * 0.99))],
            cpu.per_gb(size))


async def _concurrent(cases: dict[str, tuple[str, dict[str, int]]], ref: str, pulls: int,
                      reps: int, proxy_pid: int) -> dict[str, Any]:
    """The cases (direct, mirrorlab, the relays) alternated `reps` times, so that a noisy
    moment of the machine falls on all; medians of each, and mirrorlab's peak memory over all
    its runs."""
    runs: dict[str, list[tuple[float, float, dict[str, float]]]] = {name: [] for name in cases}
    with _PeakRss(proxy_pid) as rss:
        for _ in range(reps):
            for name, (base, pids) in cases.items():
                runs[name].append(await _concurrent_once(base, ref, pulls, pids))
    figures: dict[str, Any] = {
        name: {"aggregate_mb_per_s": round(statistics.median(r[0] for r in done), 1),
               "p99_pull_s": round(statistics.median(r[1] for r in done), 3),
               "runs_mb_per_s": [round(r[0], 1) for r in done],
               "cpu_s_per_gb": {process: round(statistics.median(r[2][process] for r in done), 3)
                                for process in done[0][2]}}
        for name, done in runs.items()}
    figures["proxy_peak_rss_mib"] = round(rss.peak_kib / 1024, 1)
    return figures


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

    figures: dict[str, Any] = {"read_timeout_s": READ_TIMEOUT, "fallback": "resilient"}
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


def _blob_gets(registry: RegistryProcess, repository: str) -> dict[str, int]:
    """GET requests for each blob of `repository` in the registry's access log so far."""
    counts: dict[str, int] = {}
    prefix = f"GET /v2/{repository}/blobs/"
    for line in registry.requests_seen():
        if line.startswith(prefix):
            digest = line[len(prefix):].split(" ", 1)[0].split("?", 1)[0]
            counts[digest] = counts.get(digest, 0) + 1
    return counts


class _ColdFills:
    """The two caches' cold reps on equal terms: right before a cold rep of either, the file
    the last cold rep left (the other cache's, or its own) is removed, as `mirrorlab cache
    prune` would, and every dirty page written out, unmeasured; so that each fill writes into
    memory just freed, after no writeback of another's. On this VM, memory freed a few
    seconds before has gone back to the host, and a fill into it pays a host fault per page:
    with each file removed right after its own rep, nginx's fill came just after mirrorlab's
    removal but mirrorlab's five reps after nginx's, and in some runs mirrorlab's cold reps
    took 0.7-1.1 s instead of 0.35-0.5, the page-cache copy (`copy_folio_from_iter_atomic`)
    a fifth of the proxy's CPU. Without the writeback first, mirrorlab's fill took 0.8-1.1 s
    right after nginx's rep had left 256 MiB to write back."""

    def __init__(self, entry: Path, nginx_cache: Path) -> None:
        self.entry = entry
        self.nginx_cache = nginx_cache
        self.commit_s: list[float] = []

    async def stored(self) -> float:
        """Seconds until mirrorlab's entry is in the cache."""
        started = time.perf_counter()
        while not self.entry.exists():
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"the cache never stored {self.entry.name}")
            await asyncio.sleep(0.01)
        return round(time.perf_counter() - started, 3)

    async def committed(self) -> None:
        """After a cold rep of mirrorlab's cache: how long its fsync and rename took after
        the last byte."""
        self.commit_s.append(await self.stored())

    async def free(self) -> None:
        """Before a cold rep of either cache."""
        self.entry.unlink(missing_ok=True)
        for path in self.nginx_cache.rglob("*"):
            if path.is_file():
                path.unlink()
        await asyncio.to_thread(os.sync)


async def _cache_concurrent(base: str, ref: str, pulls: int, pids: dict[str, int],
                            origin: RegistryProcess, digests: list[str]) -> dict[str, Any]:
    """`pulls` cold pulls at once through the cache, then as many warm: MB/s, p99 and the
    origin's GETs of each blob during the cold run (one each when they share one fetch)."""
    figures: dict[str, Any] = {"pulls": pulls, "blobs": len(digests)}
    before = _blob_gets(origin, "bench/many")
    cold = await _concurrent_once(base, ref, pulls, pids)
    await asyncio.sleep(0.5)  # the registry's access log is written as it answers
    after = _blob_gets(origin, "bench/many")
    fetched = [after.get(d, 0) - before.get(d, 0) for d in digests]
    figures["upstream_gets_per_blob"] = {"max": max(fetched), "min": min(fetched),
                                         "total": sum(fetched)}
    warm = await _concurrent_once(base, ref, pulls, pids)
    for name, (mb_per_s, p99, cpu) in (("cold", cold), ("warm", warm)):
        figures[name] = {"aggregate_mb_per_s": round(mb_per_s, 1), "p99_pull_s": round(p99, 3),
                         "cpu_s_per_gb": cpu}
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


def _start_proxy(workdir: Path, name: str, registries_conf: str,
                 *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """`mirrorlab serve` on its own registries.conf (and an empty drop-in folder) under
    workdir/name, logging to workdir/name.log; the process and its port once it answers."""
    folder = workdir / name
    (folder / "registries.conf.d").mkdir(parents=True, exist_ok=True)
    (folder / "registries.conf").write_text(registries_conf)
    port = free_port()
    with open(workdir / f"{name}.log", "wb") as log:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "mirrorlab.cli", "serve",
             "--registries-conf", str(folder / "registries.conf"),
             "--registries-conf-dir", str(folder / "registries.conf.d"),
             "--policy", str(workdir / "policy.json"), "--listen", f"127.0.0.1:{port}",
             "--offline-names", *options],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proxy, what=f"mirrorlab serve ({name})")
    except BaseException:
        proxy.terminate()
        proxy.wait(timeout=10)
        raise
    return proxy, port


RELAY_SOURCE = Path(__file__).with_name("relay.c")


def build_relay(workdir: Path) -> Path:
    """The verifying relay, compiled from `relay.c` into workdir (gcc, OpenSSL's libcrypto)."""
    if not RELAY_SOURCE.is_file():
        raise RuntimeError(f"the verifying relay's source {RELAY_SOURCE} is missing (the bench "
                           "runs from a source checkout)")
    compiler = shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("the bench builds its verifying relay with gcc: run `make setup` "
                           "(Debian packages gcc and libssl-dev)")
    binary = (workdir / "relay").resolve()
    built = subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary), str(RELAY_SOURCE),
                            "-lcrypto", "-pthread"], capture_output=True, text=True,
                           check=False)
    if built.returncode != 0:
        raise RuntimeError(f"building the verifying relay failed (gcc and libssl-dev: run "
                           f"`make setup`): {built.stderr.strip()[-600:]}")
    return binary


def _start_listener(argv: list[str], port: int, log_path: Path,
                    what: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, process, what=what)
    except RuntimeError as error:
        process.terminate()
        process.wait(timeout=10)
        raise RuntimeError(f"{error}{log_path.read_text(errors='replace')[-600:]}") from None
    except BaseException:
        process.terminate()
        process.wait(timeout=10)
        raise
    return process


def start_relay(binary: Path, upstream: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The relay on a free loopback port in front of `upstream` (host:port); its log is
    workdir/relay.log."""
    host, upstream_port = upstream.rsplit(":", 1)
    port = free_port()
    process = _start_listener([str(binary), str(port), host, upstream_port], port,
                              workdir / "relay.log", "the verifying relay")
    return process, port


NGINX_CONF = """\
# mirrorlab bench: Debian's nginx in front of the origin registry, one process (no master,
# no workers: its CPU is that of one pid, like mirrorlab's one event loop).
daemon off;
master_process off;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log access.log;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    proxy_cache_path cache levels=1:2 keys_zone=blobs:10m max_size=20g inactive=1h
                     use_temp_path=off;
    upstream origin {{ server {origin}; keepalive 16; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffers 8 256k;
    proxy_buffer_size 64k;
    proxy_busy_buffers_size 512k;
    # A plain relay: buffered in memory only (2 MiB), never spooled to a temporary file.
    server {{
        listen 127.0.0.1:{relay_port};
        location / {{ proxy_pass http://origin; proxy_max_temp_file_size 0; }}
    }}
    # A caching reverse proxy: a miss streams to the client while it is written to the
    # cache; a hit is sent from the file with sendfile. The query string is part of the key,
    # so that every cold rep is a miss.
    server {{
        listen 127.0.0.1:{cache_port};
        location / {{
            proxy_pass http://origin;
            proxy_cache blobs;
            proxy_cache_key $uri$is_args$args;
            proxy_cache_valid 200 1h;
        }}
    }}
}}
"""


def start_nginx(upstream: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """Debian's nginx with its own prefix and configuration under workdir/nginx: the process,
    the plain relay's port and the caching proxy's port."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        raise RuntimeError("the bench compares with nginx: run `make setup` (Debian package "
                           "nginx)")
    prefix = (workdir / "nginx").resolve()
    if prefix.exists():
        shutil.rmtree(prefix)  # a cold cache
    (prefix / "tmp").mkdir(parents=True)
    relay_port, cache_port = free_port(), free_port()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(origin=upstream, relay_port=relay_port,
                                                         cache_port=cache_port))
    process = _start_listener(
        [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
         "-e", str(prefix / "error.log")], relay_port, prefix / "stderr.log", "nginx")
    try:
        wait_for_port("127.0.0.1", cache_port, process, what="nginx")
    except BaseException:
        process.terminate()
        process.wait(timeout=10)
        raise
    return process, relay_port, cache_port


def run_bench(workdir: Path, *, size_mib: int = 256, large_mib: int = 1024, reps: int = 5,
              requests: int = 200, out: Path = Path("bench")) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    size, large_size = size_mib * 1024 * 1024, large_mib * 1024 * 1024
    blob = _make_blob(size)
    config = Blob(OCI_CONFIG, b'{"architecture":"amd64","os":"linux","rootfs":{"type":'
                  b'"layers","diff_ids":[]}}')
    manifest = Blob(OCI_MANIFEST, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": [blob.descriptor()]}).encode())
    origin = RegistryProcess(workdir, "origin")
    pull_through: RegistryProcess | None = None
    proxy: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    aio: subprocess.Popen[bytes] | None = None
    failover_proxy: subprocess.Popen[bytes] | None = None
    cached_proxy: subprocess.Popen[bytes] | None = None
    fronts: dict[str, FaultProxy] = {}
    results: dict[str, Any] = {"blob_mib": size_mib, "large_blob_mib": large_mib, "reps": reps,
                               "requests": requests, "cores": len(os.sched_getaffinity(0)),
                               "sha256_mb_per_s": _sha256_mb_per_s()}
    for stale in (workdir / "origin" / "data", workdir / "pull-through" / "data"):
        shutil.rmtree(stale, ignore_errors=True)  # an earlier run's blobs: no use, GBs
    try:
        origin.start()
        client = RegistryClient(origin.url)
        for item in (config, blob):
            client.push_blob("bench/app", item)
        client.push_manifest("bench/app", "v1", manifest)
        layer = blob.digest
        del blob  # the bench process's memory is not measured, but need not grow either
        large = _make_blob(large_size)
        client.push_blob("bench/app", large)
        large_layer = large.digest
        del large
        many = make_image("bench-many", (LAYER_SIZE,) * MANY_LAYERS)
        client.push_image("bench/many", many, "v1")
        # What `make demo` pulls; by its path (the built-in lookup by package name fails
        # outside the source tree).
        demo = load_scenario(str(Path(__file__).with_name("scenarios") / f"{BUILTIN}.yaml")
                             ).image(DEMO_IMAGE)
        client.push_image("bench/podman", make_image(demo.seed, demo.layers), "v1")
        (workdir / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        # Throughput, latency, memory and podman: one proxy on `mirrorlab serve`'s defaults.
        proxy, port = _start_proxy(
            workdir, "proxy", f'[[registry]]\nlocation = "quay.io/bench"\n[[registry.mirror]]\n'
                              f'location = "{origin.address}/bench"\ninsecure = true\n')
        # Failover: a proxy of its own with the short read timeout, each case behind a fault
        # front that the measurement switches.
        failover_conf = ""
        for name in ("refused", "hung"):
            fronts[name] = FaultProxy(origin.url).start()
            failover_conf += (f'[[registry]]\nlocation = "quay.io/failover-{name}"\n'
                              f'[[registry.mirror]]\nlocation = "{fronts[name].address}/bench"\n'
                              f'insecure = true\n[[registry.mirror]]\n'
                              f'location = "{origin.address}/bench"\ninsecure = true\n')
        # The cool-down is resilient mode's (sticky and blob, as a node, pay on every pull).
        failover_proxy, failover_port = _start_proxy(workdir, "failover", failover_conf,
                                                     "--read-timeout", str(READ_TIMEOUT),
                                                     "--fallback", "resilient")
        # The verified cache: a proxy of its own, so that the figures above stay uncached.
        cache_dir = (workdir / "cache").resolve()
        shutil.rmtree(cache_dir, ignore_errors=True)
        cached_proxy, cached_port = _start_proxy(
            workdir, "cached", f'[[registry]]\nlocation = "quay.io/bench"\n'
            f'[[registry.mirror]]\nlocation = "{origin.address}/bench"\ninsecure = true\n',
            "--cache", str(cache_dir))
        cold = _ColdFills(cache_dir / "blobs" / "sha256" / layer.split(":", 1)[1],
                          workdir.resolve() / "nginx" / "cache")
        pull_through = RegistryProcess(workdir, "pull-through", proxy_remote=origin.url)
        pull_through.start()
        assert origin.pid is not None and pull_through.pid is not None
        digest = manifest.digest
        direct = f"{origin.url}/v2/bench/app"
        mirrored = f"http://127.0.0.1:{port}/v2/quay.io/bench/app"
        through = f"{pull_through.url}/v2/bench/app"
        served_by_origin = {"origin": origin.pid}
        served_by_proxy = {"origin": origin.pid, "proxy": proxy.pid}
        served_through = {"origin": origin.pid, "pull_through": pull_through.pid}

        relay, relay_port = start_relay(build_relay(workdir), origin.address, workdir)
        aio_port = free_port()
        aio = _start_listener([sys.executable, "-m", "mirrorlab.harness.aiohttp_relay",
                               str(aio_port), origin.url], aio_port,
                              workdir / "aiohttp-relay.log", "the aiohttp relay")
        nginx, nginx_relay_port, nginx_cache_port = start_nginx(origin.address, workdir)
        relayed = f"http://127.0.0.1:{relay_port}/v2/bench/app"
        nginx_relayed = f"http://127.0.0.1:{nginx_relay_port}/v2/bench/app"
        cached = f"http://127.0.0.1:{nginx_cache_port}/v2/bench/app"
        served_by_relay = {"origin": origin.pid, "relay": relay.pid}
        served_by_nginx = {"origin": origin.pid, "nginx": nginx.pid}
        aio_relayed = f"http://127.0.0.1:{aio_port}/v2/bench"
        served_by_aio = {"origin": origin.pid, "aiohttp": aio.pid}
        through_cache = f"http://127.0.0.1:{cached_port}/v2/quay.io/bench/app"
        served_by_cache = {"origin": origin.pid, "proxy": cached_proxy.pid}

        async def measure() -> None:
            assert proxy is not None and cached_proxy is not None
            with _PeakRss(proxy.pid) as rss, _PeakRss(cached_proxy.pid) as cached_rss:
                blob_figures = results["blob"] = await _alternated(
                    {"direct": (f"{direct}/blobs/{layer}", served_by_origin),
                     "relay": (f"{relayed}/blobs/{layer}", served_by_relay),
                     "mirrorlab": (f"{mirrored}/blobs/{layer}", served_by_proxy),
                     "nginx_relay": (f"{nginx_relayed}/blobs/{layer}", served_by_nginx),
                     "aiohttp_relay": (f"{aio_relayed}/app/blobs/{layer}", served_by_aio),
                     "mirrorlab_cache_cold": (f"{through_cache}/blobs/{layer}",
                                              served_by_cache),
                     # every cold rep its own cache key (the query string, which the
                     # registry ignores)
                     "nginx_cache_cold": (lambda rep: f"{cached}/blobs/{layer}?cold={rep}",
                                          served_by_nginx)},
                    size, reps,
                    before={"mirrorlab_cache_cold": cold.free, "nginx_cache_cold": cold.free},
                    after={"mirrorlab_cache_cold": cold.committed})
            with _PeakRss(proxy.pid) as large_rss:
                await _throughput([f"{mirrored}/blobs/{large_layer}"], large_size,
                                  served_by_proxy)
            results["proxy_peak_rss_mib"] = round(rss.peak_kib / 1024, 1)
            results["proxy_peak_rss_large_mib"] = round(large_rss.peak_kib / 1024, 1)
            blob_figures["pull_through_cold"] = await _throughput(
                [f"{through}/blobs/{layer}"], size, served_through)
            await asyncio.sleep(2)  # distribution commits its copy in the background
            blob_figures["pull_through_warm"] = await _throughput(
                [f"{through}/blobs/{layer}"] * reps, size, served_through)
            # Warm: nginx's cache and mirrorlab's, alternated, after one unmeasured fill each.
            await _throughput([f"{cached}/blobs/{layer}"], size, served_by_nginx)
            await _throughput([f"{through_cache}/blobs/{layer}"], size, served_by_cache)
            await cold.stored()
            with _PeakRss(cached_proxy.pid) as warm_rss:
                blob_figures.update(await _alternated(
                    {"nginx_cache_warm": (f"{cached}/blobs/{layer}", served_by_nginx),
                     "mirrorlab_cache_warm": (f"{through_cache}/blobs/{layer}",
                                              served_by_cache)}, size, reps))
            results["cache"] = {
                "commit_after_last_byte_s": cold.commit_s,
                "proxy_peak_rss_mib": round(max(cached_rss.peak_kib,
                                                warm_rss.peak_kib) / 1024, 1),
                "concurrent": await _cache_concurrent(
                    f"http://127.0.0.1:{cached_port}/v2/quay.io/bench/many", many.digest,
                    128, served_by_cache, origin,
                    [many.config.digest, *(blob.digest for blob in many.layers)])}
            results["failover"] = await _failover(f"http://127.0.0.1:{failover_port}/v2", digest,
                                                  fronts)
            results["concurrent"] = {
                str(pulls): await _concurrent(
                    {"direct": (f"{origin.url}/v2/bench/many", served_by_origin),
                     "relay": (f"http://127.0.0.1:{relay_port}/v2/bench/many",
                               served_by_relay),
                     "mirrorlab": (f"http://127.0.0.1:{port}/v2/quay.io/bench/many",
                                   served_by_proxy),
                     "aiohttp_relay": (f"{aio_relayed}/many", served_by_aio),
                     "nginx_relay": (f"http://127.0.0.1:{nginx_relay_port}/v2/bench/many",
                                     served_by_nginx)},
                    many.digest, pulls, reps, proxy.pid)
                for pulls in (32, 128)}
            results["manifest"] = {}
            for name, ref in (("tag", "v1"), ("digest", digest)):
                for method in ("GET", "HEAD"):
                    key = f"{method} by {name}"
                    results["manifest"][key] = {
                        "direct": await _latency(f"{direct}/manifests/{ref}", method,
                                                 OCI_MANIFEST, requests),
                        "mirrorlab": await _latency(f"{mirrored}/manifests/{ref}", method,
                                                    OCI_MANIFEST, requests),
                        "aiohttp_relay": await _latency(
                            f"{aio_relayed}/app/manifests/{ref}", method, OCI_MANIFEST,
                            requests),
                    }

        asyncio.run(measure())
        results["podman"] = {
            name: _podman_pulls(workdir / "podman", ref, reps)
            for name, ref in (("direct", f"{origin.address}/bench/podman:v1"),
                              ("mirrorlab", f"127.0.0.1:{port}/quay.io/bench/podman:v1"))}
    finally:
        for front in fronts.values():
            front.stop()
        for process in (failover_proxy, proxy, cached_proxy, relay, nginx, aio):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
        for registry in (pull_through, origin):
            if registry is not None:
                registry.stop()
    results["ratios"] = ratios(results)
    results["ceiling"] = ceiling(results)
    results["targets"] = targets(results)
    write_results(results, out)
    return results
