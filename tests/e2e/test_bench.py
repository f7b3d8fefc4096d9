"""`mirrorlab bench` runs end to end on a small blob and writes comparable results.
(Speed is measured by `make bench`, not asserted by tests.)"""

from __future__ import annotations

import json
from pathlib import Path

from mirrorlab.harness.bench import run_bench


def test_bench_writes_results_beside_their_baselines(tmp_path: Path) -> None:
    results = run_bench(tmp_path / "work", size_mib=4, large_mib=8, reps=1, requests=5,
                        out=tmp_path / "out")
    saved = json.loads((tmp_path / "out/results.json").read_text())
    assert saved == results
    assert set(results["blob"]) == {"direct", "mirrorlab", "pull_through_cold",
                                    "pull_through_warm"}
    assert all(case["mb_per_s"] > 0 for case in results["blob"].values())
    assert set(results["manifest"]) == {f"{m} by {k}" for m in ("GET", "HEAD")
                                        for k in ("tag", "digest")}
    assert 0 < results["proxy_peak_rss_mib"] < 1024
    assert 0 < results["proxy_peak_rss_large_mib"] < 1024
    assert set(results["blob"]["mirrorlab"]["cpu_s_per_gb"]) == {"origin", "proxy", "client"}
    assert results["ceiling"]["hash_only_proxy_bound_vs_direct"] > 0
    assert (tmp_path / "out/results.png").read_bytes().startswith(b"\x89PNG")
    assert results["ratios"]["mirrorlab_vs_direct_throughput"] > 0
    assert "| mirrorlab |" in (tmp_path / "out/results.md").read_text()
    assert all(results["podman"][name]["median_s"] > 0 for name in ("direct", "mirrorlab"))
    # Behaviour, not speed: a hung first mirror is waited out once, then skipped.
    hung = results["failover"]["hung"]["first_pulls_extra_ms"]
    assert hung[0] > 1000 > hung[1], hung
