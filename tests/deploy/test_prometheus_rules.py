"""The example Prometheus config and rules pass promtool's checks and their unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy_tools import deploy_tool
from tests.helpers import ROOT

PROM_DIR = ROOT / "examples" / "prometheus"
SEED_ALERTS = {
    "LLMRequestLatencyP95High",
    "LLMErrorRatioHigh",
    "LLMServerIncident",
    "LLMGPUMemoryHigh",
    "LLMGenerationSlow",
    "LLMExporterDown",
    "LLMExporterDroppingLines",
    "LLMExporterGPUReadingsMissing",
    "LLMSLOErrorBudgetBurnFast",
    "LLMSLOErrorBudgetBurnSlow",
    "LLMSLOErrorBudgetBurnTicket",
    "LLMTenantsOverflowing",
}
RECORDS = {
    "llm:requests:rate5m",
    "llm:request_errors:ratio_rate5m",
    "llm:request_duration_seconds:p50_5m",
    "llm:request_duration_seconds:p95_5m",
    "llm:request_duration_seconds:p99_5m",
    "llm:tokens:rate5m",
    "llm:generation_speed_tokens_per_second:ratio_rate5m",
    "llm:gpu_energy_joules_per_output_token:rate5m",
    "llm:gpu_energy_joules_per_request:rate5m",
    "llm:slo_attainment:ratio_rate5m",
    "llm:slo_goodput_requests:rate5m",
    "llm:slo_goodput_tokens:rate5m",
    "llm:slo_error_budget:ratio",
    "llm:slo_errors:ratio_rate5m",
    "llm:slo_errors:ratio_rate30m",
    "llm:slo_errors:ratio_rate1h",
    "llm:slo_errors:ratio_rate2h",
    "llm:slo_errors:ratio_rate6h",
    "llm:slo_errors:ratio_rate1d",
    "llm:slo_errors:ratio_rate3d",
    "llm:tenant_requests:rate5m",
    "llm:tenant_tokens:rate5m",
    "llm:tenant_cost:increase1h",
    "llm:tenant_errors:ratio_rate5m",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([deploy_tool("promtool"), *args], cwd=PROM_DIR, capture_output=True, text=True,
                          timeout=60)


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts rules.yaml."""
    r = _promtool("check", "rules", "rules.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(SEED_ALERTS) + len(RECORDS)} rules found" in r.stdout


def test_rules_unit_tests_pass() -> None:
    """`promtool test rules` runs rules_test.yaml: each alert fires on its series and not on the others."""
    r = _promtool("test", "rules", "rules_test.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rules_unit_tests_cover_every_rule() -> None:
    """Every alert has an alert_rule_test that expects it to fire, and every recording rule is queried."""
    rules = yaml.safe_load((PROM_DIR / "rules.yaml").read_text())
    names = {r.get("alert") or r["record"] for g in rules["groups"] for r in g["rules"]}
    assert names == SEED_ALERTS | RECORDS
    tests = yaml.safe_load((PROM_DIR / "rules_test.yaml").read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a["exp_alerts"]}
    quiet = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if not a["exp_alerts"]}
    assert fired == SEED_ALERTS
    assert quiet == SEED_ALERTS
    queried = " ".join(e["expr"] for t in tests for e in t.get("promql_expr_test", []))
    assert all(rec in queried for rec in RECORDS)


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: the same file with one expected value changed makes promtool exit 1."""
    d = tmp_path
    (d / "rules.yaml").write_text((PROM_DIR / "rules.yaml").read_text())
    text = (PROM_DIR / "rules_test.yaml").read_text()
    assert "value: 30.72" in text
    (d / "rules_test.yaml").write_text(text.replace("value: 30.72", "value: 30.73"))
    r = subprocess.run([deploy_tool("promtool"), "test", "rules", "rules_test.yaml"], cwd=d,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "FAILED" in r.stdout + r.stderr


def test_example_prometheus_config_is_valid() -> None:
    """`promtool check config` accepts prometheus.yml together with the rule file it loads."""
    r = _promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
