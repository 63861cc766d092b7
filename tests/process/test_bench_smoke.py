"""The benchmark in its smoke mode: it runs end to end and its report parses (no timing checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import inputs
from tests.helpers import ROOT, SHARED


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
    gen = res["throughput"]["gen_logs"]
    lines = gen["lines"]
    # every line of the input lands in exactly one outcome, in the daemon and in replay alike
    assert lines == 2000
    assert sum(gen["pipe_outcomes"].values()) == lines
    assert sum(gen["replay_outcomes"].values()) == lines
    assert gen["pipe_outcomes"].get("dropped", 0) == 0
    assert set(gen["ratios"]) == set(gen["ratios_cpu"])
    for name in ("llm-exporter replay", "llm-exporter pipe", "cat", "orjson.loads alone"):
        c = gen["contenders"][name]
        assert c["lines_per_s"] > 0 and c["cpu_s"] >= 0 and c["peak_rss_mb"] > 0
    if (SHARED / "bench" / "naive_exporter.py").is_file():
        assert "naive exporter" in gen["contenders"]
    assert res["rss"]["outcomes"].get("dropped", 0) == 0
    assert sum(res["rss"]["outcomes"].values()) == res["rss"]["lines"]
    assert res["scrape"]["series"] > 0
    assert all(t["met"] in (True, False, None) for t in res["targets"])


def test_builtin_generator_writes_the_requested_lines() -> None:
    """The built-in generator writes the requested number of lines, JSON and plain text mixed."""
    lines = list(inputs.builtin_app_logs(500))
    assert len(lines) == 500
    json_lines = [x for x in lines if x.startswith("{")]
    assert 0 < len(json_lines) < 500
    for x in json_lines:
        json.loads(x)
    stream = inputs.RequestStream(distinct=7)
    block = stream.chunk(0, 30).splitlines()
    assert len(block) == 30
    ids = {json.loads(x)["request_id"] for x in block}
    assert len(ids) == 7
