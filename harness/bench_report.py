"""What `mirrorlab bench` measured, as ratios, targets met or missed, a machine ceiling,
Markdown and a plot.

Every figure stands beside its baseline from the same run. The targets (issue 15) are ratios
to those baselines: to the verifying relay (the least a verifying proxy must do, on the same
machine), to direct, or bounds on the proxy's own latency and memory. Where mirrorlab stays
under one, `ceiling` says how much of that is this machine: from the CPU each process spent
per GB, the most that one event loop, and the machine's cores together, could carry; and the
most that even a proxy whose only cost were SHA-256 verification could reach.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {"throughput_vs_relay": 0.9, "cpu_vs_relay": 1.3, "manifest_p50_overhead_ms": 1.0,
           "concurrent_128_vs_direct": 0.85, "rss_mib": 100.0, "rss_growth_mib": 10.0,
           "cache_cold_vs_relay": 0.9, "cache_warm_vs_nginx_warm": 1.0,
           "cache_upstream_gets_per_blob": 1}
"""Issue 15: a large blob at least 0.9 of the verifying relay; the proxy's CPU per GB at most
1.3 times the relay's; manifest p50 overhead under 1 ms (GET and HEAD, by tag and by digest);
128 concurrent pulls at least 0.85 of direct; memory under 100 MiB in every case and flat in
the blob's size (streaming the larger blob peaks at most 10 MiB above the smaller). With the
verified cache: cold at least 0.9 of the verifying relay, warm at least nginx's warm cache,
128 concurrent cold pulls fetching each blob from the origin once."""

BLOB_PATHS = ("direct", "relay", "mirrorlab", "nginx_relay", "aiohttp_relay",
              "pull_through_cold", "pull_through_warm", "nginx_cache_cold", "nginx_cache_warm",
              "mirrorlab_cache_cold", "mirrorlab_cache_warm")
LABELS = {"direct": "direct", "relay": "verifying relay (C)", "mirrorlab": "mirrorlab",
          "nginx_relay": "nginx relay (no verification)",
          "aiohttp_relay": "aiohttp relay (no verification)",
          "pull_through_cold": "pull-through cold",
          "pull_through_warm": "pull-through warm", "nginx_cache_cold": "nginx cache cold",
          "nginx_cache_warm": "nginx cache warm", "mirrorlab_cache_cold": "mirrorlab cache cold",
          "mirrorlab_cache_warm": "mirrorlab cache warm"}
CONCURRENT_PATHS = ("direct", "relay", "mirrorlab", "aiohttp_relay", "nginx_relay")
SERVING = ("relay", "proxy", "nginx", "aiohttp", "pull_through")
"""The process that serves each path, besides the origin and the client."""


def _serving_cpu(cpu: dict[str, float]) -> float | None:
    return next((cpu[name] for name in SERVING if name in cpu), None)


def ratios(results: dict[str, Any]) -> dict[str, float]:
    blob = results["blob"]
    base = blob["direct"]["mb_per_s"]
    figures = {f"{name}_vs_direct_throughput": round(blob[name]["mb_per_s"] / base, 3)
               for name in BLOB_PATHS if name != "direct"}
    relay = blob["relay"]
    figures["mirrorlab_vs_relay_throughput"] = round(
        blob["mirrorlab"]["mb_per_s"] / relay["mb_per_s"], 3)
    if relay["cpu_s_per_gb"]["relay"] > 0:
        figures["mirrorlab_vs_relay_cpu_per_gb"] = round(
            blob["mirrorlab"]["cpu_s_per_gb"]["proxy"] / relay["cpu_s_per_gb"]["relay"], 3)
    cache_cold, cache_warm = blob["mirrorlab_cache_cold"], blob["mirrorlab_cache_warm"]
    for name, other in (("relay", cache_cold), ("mirrorlab", cache_cold),
                        ("pull_through_cold", cache_cold), ("nginx_cache_cold", cache_cold),
                        ("pull_through_warm", cache_warm), ("nginx_cache_warm", cache_warm)):
        state = "cold" if other is cache_cold else "warm"
        figures[f"mirrorlab_cache_{state}_vs_{name}_throughput"] = round(
            other["mb_per_s"] / blob[name]["mb_per_s"], 3)
    podman = results["podman"]
    figures["podman pull wall time, mirrorlab vs direct"] = round(
        podman["mirrorlab"]["median_s"] / podman["direct"]["median_s"], 3)
    for pulls, case in results["concurrent"].items():
        for name, label in (("mirrorlab", ""), ("relay", ", the verifying relay"),
                            ("aiohttp_relay", ", the aiohttp relay"),
                            ("nginx_relay", ", the nginx relay")):
            if name in case:
                figures[f"{pulls} concurrent pulls, aggregate vs direct{label}"] = round(
                    case[name]["aggregate_mb_per_s"] / case["direct"]["aggregate_mb_per_s"], 3)
    for key, pair in results["manifest"].items():
        for name, label in (("mirrorlab", ""), ("aiohttp_relay", ", the aiohttp relay")):
            if name in pair:
                figures[f"manifest {key} p50 overhead ms{label}"] = round(
                    pair[name]["p50_ms"] - pair["direct"]["p50_ms"], 3)
    return figures


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 15 with this run's figure, the bound and whether it was met."""
    blob, found = results["blob"], results["ratios"]
    rows: list[dict[str, Any]] = []

    def row(name: str, figure: float | None, bound: float, at_least: bool) -> None:
        met = figure is not None and (figure >= bound if at_least else figure < bound)
        rows.append({"target": name, "figure": figure,
                     "bound": f"{'>=' if at_least else '<'} {bound:g}", "met": met})

    row("large blob through mirrorlab, vs the verifying relay",
        found["mirrorlab_vs_relay_throughput"], TARGETS["throughput_vs_relay"], True)
    cpu = found.get("mirrorlab_vs_relay_cpu_per_gb")
    rows.append({"target": "proxy CPU s per GB, vs the verifying relay's "
                 f"({blob['mirrorlab']['cpu_s_per_gb']['proxy']} vs "
                 f"{blob['relay']['cpu_s_per_gb']['relay']})", "figure": cpu,
                 "bound": f"<= {TARGETS['cpu_vs_relay']:g}",
                 "met": cpu is not None and cpu <= TARGETS["cpu_vs_relay"]})
    for key in results["manifest"]:
        row(f"manifest {key}: p50 overhead, ms", found[f"manifest {key} p50 overhead ms"],
            TARGETS["manifest_p50_overhead_ms"], False)
    if "128" in results["concurrent"]:
        row("128 concurrent pulls, aggregate vs direct",
            found["128 concurrent pulls, aggregate vs direct"],
            TARGETS["concurrent_128_vs_direct"], True)
    row("large blob through the cache, cold, vs the verifying relay",
        found["mirrorlab_cache_cold_vs_relay_throughput"], TARGETS["cache_cold_vs_relay"], True)
    row("large blob through the cache, warm, vs nginx's warm cache",
        found["mirrorlab_cache_warm_vs_nginx_cache_warm_throughput"],
        TARGETS["cache_warm_vs_nginx_warm"], True)
    gets = results["cache"]["concurrent"]["upstream_gets_per_blob"]
    rows.append({"target": f"{results['cache']['concurrent']['pulls']} concurrent cold pulls "
                 "through the cache: the origin's GETs of each blob, most", "figure": gets["max"],
                 "bound": f"<= {TARGETS['cache_upstream_gets_per_blob']}",
                 "met": gets["max"] <= TARGETS["cache_upstream_gets_per_blob"]
                 and gets["min"] >= 1})
    peaks = [results["proxy_peak_rss_mib"], results["proxy_peak_rss_large_mib"],
             *(case["proxy_peak_rss_mib"] for case in results["concurrent"].values())]
    row("proxy peak memory in every case, MiB", max(peaks), TARGETS["rss_mib"], False)
    row(f"memory flat: peak streaming {results['large_blob_mib']} MiB minus "
        f"{results['blob_mib']} MiB, MiB",
        round(results["proxy_peak_rss_large_mib"] - results["proxy_peak_rss_mib"], 1),
        TARGETS["rss_growth_mib"], False)
    return rows


def _stream_bound(own: float, total: float, cores: int) -> float:
    """MB/s one stream can reach when its proxy spends `own` CPU s per GB on one core and the
    origin, proxy and client together `total` on `cores`."""
    return 1000 * min(1 / own, cores / total)


def ceiling(results: dict[str, Any]) -> dict[str, float | None]:
    """Upper bounds on mirrorlab's ratios that this machine sets, and an estimate of what
    nginx's cache would reach cold if it also verified SHA-256."""
    cores = results["cores"]
    blob = results["blob"]
    direct = blob["direct"]["mb_per_s"]
    cpu = blob["mirrorlab"]["cpu_s_per_gb"]
    sha_cost = 1000 / results["sha256_mb_per_s"]  # CPU seconds per GB
    others = cpu["origin"] + cpu["client"]
    hash_only = _stream_bound(sha_cost, others + sha_cost, cores)
    bound = None
    if cpu["proxy"] > 0:
        bound = round(_stream_bound(cpu["proxy"], sum(cpu.values()), cores) / direct, 3)
    figures: dict[str, float | None] = {
        "cores": cores, "proxy_cpu_s_per_gb": cpu["proxy"],
        "sha256_cpu_s_per_gb": round(sha_cost, 3), "mirrorlab_bound_vs_direct": bound,
        "hash_only_proxy_bound_vs_direct": round(hash_only / direct, 3)}
    # nginx's cache verifies nothing. Had it hashed too, it would have been no faster than
    # it was, nor than the bound its CPU per GB plus SHA-256's sets: an optimistic estimate.
    cold = blob["nginx_cache_cold"]["cpu_s_per_gb"]
    if cold.get("nginx", 0) > 0:
        hashing = _stream_bound(cold["nginx"] + sha_cost, sum(cold.values()) + sha_cost, cores)
        figures["cache_cold_verifying_nginx_estimate_vs_relay"] = round(
            min(blob["nginx_cache_cold"]["mb_per_s"], hashing) / blob["relay"]["mb_per_s"], 3)
    for pulls, case in results["concurrent"].items():
        spent = sum(case["mirrorlab"]["cpu_s_per_gb"].values())
        figures[f"{pulls}_pulls_bound_vs_direct"] = round(
            1000 * cores / spent / case["direct"]["aggregate_mb_per_s"], 3) if spent else None
    return figures


def _markdown(results: dict[str, Any], plot: str | None) -> str:
    blob = results["blob"]
    base = blob["direct"]["mb_per_s"]
    lines = [f"# mirrorlab bench ({results['blob_mib']} MiB blob, {results['reps']} reps, "
             f"{results['requests']} manifest requests, {results['cores']} cores)", ""]
    if plot:
        lines += [f"![bench]({plot})", ""]
    relay = blob["relay"]["mb_per_s"]
    lines += ["| target (issue 15) | this run | bound | |", "| --- | --- | --- | --- |"]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {target['figure']} | {target['bound']} | "
                     f"{'met' if target['met'] else 'MISSED'} |")
    lines += ["", "| blob path | MB/s (median) | vs direct | vs verifying relay | "
              "CPU s per GB: serving, origin, client |", "| --- | --- | --- | --- | --- |"]
    for name in BLOB_PATHS:
        cpu = blob[name]["cpu_s_per_gb"]
        serving = _serving_cpu(cpu)
        lines.append(f"| {LABELS[name]} | {blob[name]['mb_per_s']} | "
                     f"{blob[name]['mb_per_s'] / base:.2f} | "
                     f"{blob[name]['mb_per_s'] / relay:.2f} | "
                     f"{'-' if serving is None else serving}, {cpu['origin']}, "
                     f"{cpu['client']} |")
    lines += ["", f"Direct, the verifying relay, mirrorlab, the nginx and aiohttp relays and "
              f"both caches cold alternate rep by rep ({results['reps']} each, after one "
              f"unmeasured round: nginx's with a new cache key each time; mirrorlab's fsync and "
              f"rename took {results['cache']['commit_after_last_byte_s']} s after the last "
              f"byte; before each cold rep of either cache, the file the last cold rep left is "
              f"removed and every dirty page written out, unmeasured, so that both fill memory "
              f"just freed); pull-through cold is one fetch; the two warm caches alternate "
              f"after one fill each."]
    cache = results["cache"]
    concurrent = cache["concurrent"]
    gets = concurrent["upstream_gets_per_blob"]
    direct_128 = results["concurrent"].get(str(concurrent["pulls"]), {}).get("direct", {})
    estimate = results["ceiling"].get("cache_cold_verifying_nginx_estimate_vs_relay")
    if estimate is not None:
        lines += ["", "nginx's cache verifies nothing; had it also checked SHA-256 while it "
                  f"filled, it would have reached at most about {estimate} of the verifying "
                  "relay's figure (an optimistic estimate: its own cold figure, or less where "
                  "its CPU per GB plus the hash's would not allow that on these cores)."]
    lines += ["", f"Through the cache, {concurrent['pulls']} concurrent pulls of the "
              f"{concurrent['blobs']}-blob image, cold then warm: the origin answered "
              f"{gets['total']} blob GETs ({gets['min']} to {gets['max']} per blob); "
              f"{concurrent['cold']['aggregate_mb_per_s']} MB/s cold (p99 pull "
              f"{concurrent['cold']['p99_pull_s']} s), {concurrent['warm']['aggregate_mb_per_s']} "
              f"MB/s warm (p99 {concurrent['warm']['p99_pull_s']} s)"
              + (f", direct {direct_128['aggregate_mb_per_s']} MB/s in its own runs above"
                 if direct_128 else "")
              + f". The cache proxy's peak memory: {cache['proxy_peak_rss_mib']} MiB."]
    c = results["ceiling"]
    lines += ["", f"Ceiling on this machine: SHA-256 runs at {results['sha256_mb_per_s']} MB/s "
              f"on one core ({c['sha256_cpu_s_per_gb']} CPU s per GB); the proxy spent "
              f"{c['proxy_cpu_s_per_gb']} CPU s per GB, on one event loop, beside the origin's "
              f"and the client's, where the verifying relay spent "
              f"{blob['relay']['cpu_s_per_gb']['relay']}. From these costs mirrorlab could "
              f"reach at most {c['mirrorlab_bound_vs_direct']} of direct here, and a proxy "
              f"whose only cost were verifying SHA-256 at most "
              f"{c['hash_only_proxy_bound_vs_direct']} (the relay reached "
              f"{relay / base:.2f})."]
    lines += ["", f"Proxy peak resident memory while streaming: {results['proxy_peak_rss_mib']} "
              f"MiB for {results['blob_mib']} MiB, {results['proxy_peak_rss_large_mib']} MiB "
              f"for {results['large_blob_mib']} MiB.", "",
              "| manifest request | direct p50 / p99 ms | mirrorlab p50 / p99 ms | aiohttp "
              "relay p50 / p99 ms |", "| --- | --- | --- | --- |"]
    for key, pair in results["manifest"].items():
        aio = pair.get("aiohttp_relay", {"p50_ms": "-", "p99_ms": "-"})
        lines.append(f"| {key} | {pair['direct']['p50_ms']} / {pair['direct']['p99_ms']} | "
                     f"{pair['mirrorlab']['p50_ms']} / {pair['mirrorlab']['p99_ms']} | "
                     f"{aio['p50_ms']} / {aio['p99_ms']} |")
    lines += ["", "The aiohttp relay is mirrorlab's HTTP stack alone (aiohttp's server and "
              "client on one event loop, verifying, resolving and logging nothing): its "
              "overhead over direct is the floor under mirrorlab's."]
    lines += ["", "Concurrent pulls of a many-layer image (medians of "
              f"{results['reps']} runs, the cases alternated run by run):", "",
              "| pulls | path | MB/s | vs direct | p99 pull s | CPU s per GB: serving, origin, "
              "client |", "| --- | --- | --- | --- | --- | --- |"]
    for pulls, case in results["concurrent"].items():
        direct_mb = case["direct"]["aggregate_mb_per_s"]
        for name in CONCURRENT_PATHS:
            if name not in case:
                continue
            figures = case[name]
            cpu = figures["cpu_s_per_gb"]
            serving = _serving_cpu(cpu)
            lines.append(f"| {pulls} | {LABELS[name]} | {figures['aggregate_mb_per_s']} | "
                         f"{figures['aggregate_mb_per_s'] / direct_mb:.2f} | "
                         f"{figures['p99_pull_s']} | {'-' if serving is None else serving}, "
                         f"{cpu['origin']}, {cpu['client']} |")
    peaks = ", ".join(f"{case['proxy_peak_rss_mib']} MiB with {pulls}"
                      for pulls, case in results["concurrent"].items())
    bounds = [f"{c[f'{pulls}_pulls_bound_vs_direct']} for {pulls}" for pulls in
              results["concurrent"]]
    lines += ["", f"mirrorlab's peak memory: {peaks}. With {c['cores']} cores shared by "
              "origin, proxy and client, the CPU each spent per GB allows mirrorlab at most "
              f"{' and '.join(bounds)} concurrent pulls of direct. The verifying relay is the "
              "least a proxy that checks every digest must do (a thread per connection, "
              "recv, SHA-256, send); the nginx relay checks nothing."]
    podman = results["podman"]
    lines += ["", "`podman pull` of the demo image into an empty store: direct "
              f"{podman['direct']['median_s']} s, "
              f"through mirrorlab {podman['mirrorlab']['median_s']} s "
              f"(median of {results['reps']})."]
    failover = results["failover"]
    lines += ["", f"Failover, first mirror broken (read timeout {failover['read_timeout_s']} s; "
              "resilient mode, whose cool-down skips it after two failures; sticky and blob, as "
              "a node, pay the first-pull cost on every pull):", "",
              "| first mirror | healthy p50 ms | extra ms, first two pulls | "
              "extra ms p50, later pulls |", "| --- | --- | --- | --- |"]
    for name in ("refused", "hung"):
        case = failover[name]
        lines.append(f"| {name} | {case['healthy_p50_ms']} | {case['first_pulls_extra_ms']} | "
                     f"{case['later_p50_extra_ms']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Three panels: blob throughput by path, concurrent pulls, the proxy's peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained",
                                                 width_ratios=(2, 1, 1))
    blob = results["blob"]
    colours = {"direct": "#607d8b", "relay": "#5e35b1", "mirrorlab": "#2e7d32",
               "nginx_relay": "#00838f", "aiohttp_relay": "#9e9d24",
               "pull_through_cold": "#ef6c00",
               "pull_through_warm": "#ffa726", "nginx_cache_cold": "#0277bd",
               "nginx_cache_warm": "#4fc3f7", "mirrorlab_cache_cold": "#1b5e20",
               "mirrorlab_cache_warm": "#81c784"}
    left.bar([LABELS[n].replace(" ", "\n", 1) for n in BLOB_PATHS],
             [blob[n]["mb_per_s"] for n in BLOB_PATHS], color=[colours[n] for n in BLOB_PATHS])
    bound = results["ceiling"]["hash_only_proxy_bound_vs_direct"]
    left.axhline(blob["direct"]["mb_per_s"] * bound, color="#b71c1c", linestyle="--",
                 label="ceiling of a SHA-256-verifying proxy here")
    left.axhline(blob["relay"]["mb_per_s"] * TARGETS["throughput_vs_relay"], color="#5e35b1",
                 linestyle=":", label=f"target: {TARGETS['throughput_vs_relay']} of the relay")
    left.set_title(f"{results['blob_mib']} MiB blob, MB/s")
    left.tick_params(axis="x", labelsize=7)
    left.legend(fontsize=8)
    pulls = list(results["concurrent"])
    width = 0.16
    for index, name in enumerate(CONCURRENT_PATHS):
        offset, colour = (index - 2) * width, colours[name]
        if all(name in results["concurrent"][p] for p in pulls):
            middle.bar([i + offset for i in range(len(pulls))],
                       [results["concurrent"][p][name]["aggregate_mb_per_s"] for p in pulls],
                       width, label=LABELS.get(name, name), color=colour)
    for i, p in enumerate(pulls):
        bound_p = results["ceiling"][f"{p}_pulls_bound_vs_direct"]
        if bound_p:
            middle.hlines(results["concurrent"][p]["direct"]["aggregate_mb_per_s"] * bound_p,
                          i - 2.5 * width, i + 2.5 * width, colors="#b71c1c", linestyles="--",
                          label="CPU ceiling here" if i == 0 else None)
    middle.set_xticks(range(len(pulls)), [f"{p} pulls" for p in pulls])
    middle.set_title("concurrent pulls, aggregate MB/s")
    middle.legend(fontsize=8)
    memory = {f"stream\n{results['blob_mib']} MiB": results["proxy_peak_rss_mib"],
              f"stream\n{results['large_blob_mib']} MiB": results["proxy_peak_rss_large_mib"],
              **{f"{p} pulls": results["concurrent"][p]["proxy_peak_rss_mib"] for p in pulls}}
    right.bar(list(memory), list(memory.values()), color="#2e7d32")
    right.axhline(TARGETS["rss_mib"], color="#b71c1c", linestyle="--", label="target")
    right.set_title("proxy peak resident memory, MiB")
    right.tick_params(axis="x", labelsize=8)
    right.legend(fontsize=8)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "results.png")
    (out / "results.md").write_text(_markdown(results, "results.png"))
