"""The Grafana dashboard loads as a dashboard and queries only metrics the exporter really exposes."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import FIXTURES, ROOT, Exporter, app_logs

DASHBOARD = ROOT / "examples" / "grafana" / "llm-exporter.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("", "_sum", "_count"), "info": ("_info",), "unknown": ("",)}
# Keywords and clause words that look like identifiers in PromQL.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}
SYNTHETIC = {"up"}  # written by Prometheus itself for every target


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    m = re.fullmatch(r"\s*label_values\(\s*([^,]+),[^)]*\)\s*", expr)
    if m:
        expr = m.group(1)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for tok in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[tok.end():].lstrip().startswith("(") or tok.group().lower() in PROMQL_WORDS:
            continue
        names.add(tok.group())
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in all_panels(d) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            exprs.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    return exprs


def documented_gpu_names() -> set[str]:
    """GPU metric names as the README's metric table lists them (the names a user is promised)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Metrics"):]
    table = table[: table.index("\n## ", 1)]
    names = set()
    for row in table.splitlines():
        if row.startswith("| `hw_") or row.startswith("| `llm_exporter_gpu") or row.startswith("| `llm_gpu"):
            names |= set(re.findall(r"`((?:hw|llm_exporter_gpu|llm_gpu)_[a-z_]+)`", row.split(" | ")[0]))
    assert {"hw_gpu_memory_usage_bytes", "hw_power_watts", "llm_exporter_gpu_up"} <= names, names
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every sample name the exposition declares, from its families (with or without samples)."""
    out = set()
    for fam in text_string_to_metric_families(exposition):
        out.update(fam.name + s for s in SUFFIXES[fam.type])
        out.update(s.name for s in fam.samples)
    return out


def test_metric_names_are_found_in_promql() -> None:
    """The name extraction finds metrics and skips functions, labels, ranges and variables."""
    expr = ('histogram_quantile(0.95, sum by (le, job) (rate(foo_bucket{job=~"$job", a="rate(x)"}[$__rate_interval])))'
            ' / on (job) group_left bar_total + baz offset 5m > bool 1')
    assert metric_names(expr) == {"foo_bucket", "bar_total", "baz"}
    assert metric_names('label_values(llm_requests_total{job=~"$job"}, gen_ai_request_model)') == {
        "llm_requests_total"}


def test_dashboard_queries_name_only_exposed_metrics(tmp_path: Path) -> None:
    """Every query names a metric from a live exporter's /metrics: fed application log lines, and with
    `--gpu on` over the test suite's stand-in NVML library (one GPU), so the GPU families are the
    ones the real collector emits; those names must also be in the README's metric table."""
    # application lines, then a vLLM start (tests/fixtures/startup), with one objective configured
    lines = app_logs(500, 5) + (FIXTURES / "startup" / "vllm_runai67.log").read_bytes()
    nvml = {"gpus": [{"uuid": "GPU-0a1b2c3d-0000-4000-8000-000000000000"}]}
    env = {"PYTHONPATH": os.pathsep.join([str(FIXTURES / "fake_pynvml"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "LLM_EXPORTER_TEST_FAKE_NVML": json.dumps(nvml)}
    config = tmp_path / "slo.yaml"
    config.write_text("slo: [{name: fast, duration: 2s}]\n")
    with Exporter("--no-passthrough", "--gpu", "on", "--gpu-interval", "0.05", "--config", str(config),
                  env=env) as exp:
        exp.wait_ready()
        exp.stdin.write(lines)
        exp.stdin.flush()
        exp.wait_lines(lines.count(b"\n"))
        deadline = time.monotonic() + 20
        while "hw_gpu_memory_usage_bytes{" not in (text := exp.scrape()) and time.monotonic() < deadline:
            time.sleep(0.05)
        live = exposed_names(text)
    assert "gen_ai_server_request_duration_seconds_bucket" in live
    assert "hw_gpu_memory_limit_bytes" in live
    used = set().union(*(metric_names(q) for q in queries(dashboard())))
    unknown = used - live - SYNTHETIC
    assert not unknown, f"dashboard queries metrics the exporter does not expose: {sorted(unknown)}"
    gpu_used = {n for n in used if n.startswith("hw_") or n.startswith("llm_exporter_gpu")}
    assert gpu_used and gpu_used <= documented_gpu_names()
    # every area the dashboard promises is really queried
    for name in ("llm_requests_total", "gen_ai_server_request_duration_seconds_bucket",
                 "gen_ai_server_time_to_first_token_seconds_bucket",
                 "gen_ai_server_time_per_output_token_seconds_bucket", "gen_ai_client_token_usage_sum",
                 "llm_request_errors_total", "llm_request_queue_duration_seconds_bucket", "llm_requests_running",
                 "llm_requests_waiting", "llm_kv_cache_usage_ratio", "hw_gpu_memory_usage_bytes",
                 "hw_gpu_utilization_ratio", "hw_power_watts", "hw_temperature_celsius", "hw_energy_joules_total",
                 "llm_slo_requests_total", "llm_slo_output_tokens_total", "llm_server_startup_duration_seconds",
                 "llm_server_kv_cache_tokens", "llm_server_max_concurrency"):
        assert name in used, name


def test_dashboard_is_a_loadable_grafana_dashboard() -> None:
    """schemaVersion, a Prometheus datasource variable used by every query, unique ids, a sane grid."""
    d = dashboard()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = all_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
