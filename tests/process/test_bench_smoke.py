"""The benchmark in its smoke mode: it runs end to end and its report parses (no timing checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_bench_smoke_runs_and_writes_parsable_figures(tmp_path: Path) -> None:
    """`bench/run.py --smoke` exits 0, prints the table and writes JSON with every section."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "targets:" in proc.stdout
    res = json.loads(out.read_text())
    assert res["mode"] == "smoke"
    for section in ("steady_cpu", "rss", "passthrough", "scrape", "startup"):
        assert section in res, section
    gen = res["throughput"]["app_json"]
    lines = gen["lines"]
    # every line of the input lands in exactly one outcome, in the daemon and in replay alike
    assert lines == 2000
    assert sum(gen["pipe_outcomes"].values()) == lines
    assert sum(gen["replay_outcomes"].values()) == lines
    assert gen["pipe_outcomes"].get("dropped", 0) == 0
    assert set(gen["ratios"]) == set(gen["ratios_cpu"])
    for name in ("llm-exporter replay", "llm-exporter pipe", "cat", "orjson.loads alone", "baseline exporter"):
        c = gen["contenders"][name]
        assert c["lines_per_s"] > 0 and c["cpu_s"] >= 0 and c["peak_rss_mb"] > 0
    # the peers are in the repository: the ratios against them are always there (mtail when installed)
    assert "llm-exporter pipe / baseline exporter" in gen["ratios_cpu"]
    if "mtail" not in res["skipped"]:
        assert "llm-exporter pipe / mtail" in gen["ratios_cpu"]
        assert "llm-exporter pipe / mtail" in res["throughput"]["vllm_tgi_mix"]["ratios_cpu"]
    assert res["rss"]["outcomes"].get("dropped", 0) == 0
    assert sum(res["rss"]["outcomes"].values()) == res["rss"]["lines"]
    assert res["scrape"]["series"] > 0
    # each verdict agrees with its figure and its target, compared here on their own
    assert res["targets"]
    for t in res["targets"]:
        op, bound = t["target"].split()[:2]
        want = float(bound.rstrip("x"))
        if t["value"] is None:
            assert t["met"] is None, t
        else:
            assert t["met"] is (t["value"] >= want if op == ">=" else t["value"] <= want), t

