"""What `mirrorlab bench` measured, as ratios, a machine ceiling, Markdown and a plot.

Every figure stands beside its baseline from the same run. Where mirrorlab stays under a
target, `ceiling` says how much of that is this machine: from the CPU each process spent per
GB, the most that one event loop, and the machine's cores together, could carry; and the most
that even a proxy whose only cost were SHA-256 verification could reach.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {"throughput": 0.9, "concurrent": 0.8, "manifest_p50_ms": 2.0, "rss_mib": 100.0}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    blob = results["blob"]
    base = blob["direct"]["mb_per_s"]
    figures = {f"{name}_vs_direct_throughput": round(blob[name]["mb_per_s"] / base, 3)
               for name in ("mirrorlab", "pull_through_cold", "pull_through_warm")}
    podman = results["podman"]
    figures["podman pull wall time, mirrorlab vs direct"] = round(
        podman["mirrorlab"]["median_s"] / podman["direct"]["median_s"], 3)
    for pulls, case in results["concurrent"].items():
        figures[f"{pulls} concurrent pulls, aggregate vs direct"] = round(
            case["mirrorlab"]["aggregate_mb_per_s"] / case["direct"]["aggregate_mb_per_s"], 3)
    for key, pair in results["manifest"].items():
        figures[f"manifest {key} p50 overhead ms"] = round(
            pair["mirrorlab"]["p50_ms"] - pair["direct"]["p50_ms"], 3)
    return figures


def ceiling(results: dict[str, Any]) -> dict[str, float | None]:
    """Upper bounds on mirrorlab's single-stream ratio that this machine sets."""
    cores = results["cores"]
    direct = results["blob"]["direct"]["mb_per_s"]
    cpu = results["blob"]["mirrorlab"]["cpu_s_per_gb"]
    sha_cost = 1000 / results["sha256_mb_per_s"]  # CPU seconds per GB
    others = cpu["origin"] + cpu["client"]
    hash_only = 1000 * min(1 / sha_cost, cores / (others + sha_cost))
    bound = None
    if cpu["proxy"] > 0:
        bound = round(1000 * min(1 / cpu["proxy"], cores / sum(cpu.values())) / direct, 3)
    figures: dict[str, float | None] = {
        "cores": cores, "proxy_cpu_s_per_gb": cpu["proxy"],
        "sha256_cpu_s_per_gb": round(sha_cost, 3), "mirrorlab_bound_vs_direct": bound,
        "hash_only_proxy_bound_vs_direct": round(hash_only / direct, 3)}
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
    lines += ["| blob path | MB/s (median) | vs direct | CPU s per GB: serving, origin, client |",
              "| --- | --- | --- | --- |"]
    for name in ("direct", "mirrorlab", "pull_through_cold", "pull_through_warm"):
        cpu = blob[name]["cpu_s_per_gb"]
        serving = cpu.get("proxy", cpu.get("pull_through", "-"))
        lines.append(f"| {name.replace('_', ' ')} | {blob[name]['mb_per_s']} | "
                     f"{blob[name]['mb_per_s'] / base:.2f} | {serving}, {cpu['origin']}, "
                     f"{cpu['client']} |")
    c = results["ceiling"]
    lines += ["", f"Ceiling on this machine: SHA-256 runs at {results['sha256_mb_per_s']} MB/s "
              f"on one core ({c['sha256_cpu_s_per_gb']} CPU s per GB); the proxy spent "
              f"{c['proxy_cpu_s_per_gb']} CPU s per GB, on one event loop, beside the origin's "
              f"and the client's. From these costs mirrorlab could reach at most "
              f"{c['mirrorlab_bound_vs_direct']} of direct here, and a proxy whose only cost "
              f"were verifying SHA-256 at most {c['hash_only_proxy_bound_vs_direct']}."]
    if c["hash_only_proxy_bound_vs_direct"] < TARGETS["throughput"]:
        lines.append(f"The {TARGETS['throughput']} target is out of reach of any verifying "
                     f"proxy on {c['cores']} cores with this client and origin.")
    lines += ["", f"Proxy peak resident memory while streaming: {results['proxy_peak_rss_mib']} "
              f"MiB for {results['blob_mib']} MiB, {results['proxy_peak_rss_large_mib']} MiB "
              f"for {results['large_blob_mib']} MiB.", "",
              "| manifest request | direct p50 / p99 ms | mirrorlab p50 / p99 ms |",
              "| --- | --- | --- |"]
    for key, pair in results["manifest"].items():
        lines.append(f"| {key} | {pair['direct']['p50_ms']} / {pair['direct']['p99_ms']} | "
                     f"{pair['mirrorlab']['p50_ms']} / {pair['mirrorlab']['p99_ms']} |")
    lines += ["", "Concurrent pulls of a many-layer image (median of "
              f"{results['reps']} runs, alternated with direct):", "",
              "| pulls | direct MB/s, p99 s | mirrorlab MB/s, p99 s | vs direct | proxy peak MiB "
              "| CPU s per GB direct: origin, client; mirrorlab: proxy, origin, client |",
              "| --- | --- | --- | --- | --- | --- |"]
    for pulls, case in results["concurrent"].items():
        d, m = case["direct"], case["mirrorlab"]
        dc, mc = d["cpu_s_per_gb"], m["cpu_s_per_gb"]
        lines.append(f"| {pulls} | {d['aggregate_mb_per_s']}, {d['p99_pull_s']} | "
                     f"{m['aggregate_mb_per_s']}, {m['p99_pull_s']} | "
                     f"{m['aggregate_mb_per_s'] / d['aggregate_mb_per_s']:.2f} | "
                     f"{case['proxy_peak_rss_mib']} | {dc['origin']}, {dc['client']}; "
                     f"{mc['proxy']}, {mc['origin']}, {mc['client']} |")
    bounds = [f"{c[f'{pulls}_pulls_bound_vs_direct']} for {pulls}" for pulls in
              results["concurrent"]]
    lines += ["", f"With {c['cores']} cores shared by origin, proxy and client, the CPU each "
              "spent per GB allows mirrorlab at most "
              f"{' and '.join(bounds)} concurrent pulls of direct."]
    podman = results["podman"]
    lines += ["", "`podman pull` of the demo image into an empty store: direct "
              f"{podman['direct']['median_s']} s, "
              f"through mirrorlab {podman['mirrorlab']['median_s']} s "
              f"(median of {results['reps']})."]
    failover = results["failover"]
    lines += ["", f"Failover, first mirror broken (read timeout {failover['read_timeout_s']} s; "
              "the cool-down skips it after two failures):", "",
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

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    blob = results["blob"]
    names = ["direct", "mirrorlab", "pull_through_cold", "pull_through_warm"]
    left.bar([n.replace("pull_through_", "pull-through\n") for n in names],
             [blob[n]["mb_per_s"] for n in names], color=["#607d8b", "#2e7d32", "#ef6c00",
                                                          "#ffa726"])
    bound = results["ceiling"]["hash_only_proxy_bound_vs_direct"]
    left.axhline(blob["direct"]["mb_per_s"] * bound, color="#b71c1c", linestyle="--",
                 label="ceiling of a SHA-256-verifying proxy here")
    left.set_title(f"{results['blob_mib']} MiB blob, MB/s")
    left.legend(fontsize=8)
    pulls = list(results["concurrent"])
    width = 0.38
    for offset, name, colour in ((-width / 2, "direct", "#607d8b"),
                                 (width / 2, "mirrorlab", "#2e7d32")):
        middle.bar([i + offset for i in range(len(pulls))],
                   [results["concurrent"][p][name]["aggregate_mb_per_s"] for p in pulls],
                   width, label=name, color=colour)
    for i, p in enumerate(pulls):
        bound_p = results["ceiling"][f"{p}_pulls_bound_vs_direct"]
        if bound_p:
            middle.hlines(results["concurrent"][p]["direct"]["aggregate_mb_per_s"] * bound_p,
                          i - width, i + width, colors="#b71c1c", linestyles="--",
                          label="CPU ceiling here" if i == 0 else None)
    middle.set_xticks(range(len(pulls)), [f"{p} pulls" for p in pulls])
    middle.set_title("concurrent pulls, aggregate MB/s")
    middle.legend(fontsize=8)
    memory = {f"stream {results['blob_mib']} MiB": results["proxy_peak_rss_mib"],
              f"stream {results['large_blob_mib']} MiB": results["proxy_peak_rss_large_mib"],
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
