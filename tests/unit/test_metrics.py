"""Metric families: buckets, derived TPOT, cardinality limit, exposition."""

from __future__ import annotations

import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from llm_exporter.labels import LabelLimits
from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.hist import DURATION_BUCKETS, quantile
from llm_exporter.metrics.requests import RequestMetrics
from llm_exporter.metrics.window import Window
from tests.helpers import tool

L = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "app", "gen_ai_request_model": "m"}
A = {**L, "llm_adapter": ""}  # the families that carry the LoRA adapter label


def req(**kw: object) -> dict[str, object]:
    return {"kind": "request", "provider": "app", "operation": "chat", "model": "m", "outcome": "success",
            "error_type": "", **kw}


def test_value_on_a_bound_falls_in_that_bucket(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """le is inclusive: 0.64 s counts in le=0.64, 0.6400001 s does not."""
    metrics.apply(req(duration_s=0.64))
    metrics.apply(req(duration_s=0.6400001))
    b = {**A, "error_type": ""}
    assert registry.get_sample_value("gen_ai_server_request_duration_seconds_bucket", {**b, "le": "0.64"}) == 1
    assert registry.get_sample_value("gen_ai_server_request_duration_seconds_bucket", {**b, "le": "1.28"}) == 2
    assert registry.get_sample_value("gen_ai_server_request_duration_seconds_bucket", {**b, "le": "+Inf"}) == 2


def test_tpot_is_derived_from_e2e_ttft_and_tokens(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """(e2e - ttft) / (output_tokens - 1) when TPOT is not logged; none for one token."""
    metrics.apply(req(duration_s=2.0, ttft_s=0.5, output_tokens=11))
    metrics.apply(req(duration_s=2.0, ttft_s=0.5, output_tokens=1))
    assert registry.get_sample_value("gen_ai_server_time_per_output_token_seconds_sum", L) == 0.15
    assert registry.get_sample_value("gen_ai_server_time_per_output_token_seconds_count", L) == 1


def test_ttft_and_tpot_only_for_successful_requests(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """A failed request's timings go to duration, not to TTFT/TPOT."""
    metrics.apply(req(outcome="error", error_type="oom", duration_s=1.0, ttft_s=0.1, tpot_s=0.01))
    assert registry.get_sample_value("gen_ai_server_time_to_first_token_seconds_count", L) is None
    assert registry.get_sample_value("gen_ai_server_request_duration_seconds_count", {**A, "error_type": "oom"}) == 1
    assert registry.get_sample_value("llm_request_errors_total", {**L, "error_type": "oom"}) == 1


def test_label_values_past_the_limit_fold_into_other() -> None:
    """Model names beyond the limit become _OTHER, and the fold is counted."""
    m = LLMMetrics(label_limit=3)
    for i in range(5):
        m.apply(req(model=f"model-{i}"))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    other = {**A, "gen_ai_request_model": "_OTHER", "outcome": "success"}
    assert reg.get_sample_value("llm_requests_total", other) == 2
    assert reg.get_sample_value("llm_exporter_label_overflow_total",
                                {"metric": "llm_requests_total", "label": "gen_ai_request_model"}) == 2


def test_openmetrics_carries_request_id_exemplars(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """OpenMetrics output links a duration bucket to the request that landed in it."""
    metrics.apply(req(duration_s=3.0, request_id="req_abc"))
    text = generate_openmetrics(registry).decode()
    assert '# {request_id="req_abc"} 3.0' in text
    assert "req_abc" not in generate_latest(registry).decode()


def test_quantile_matches_prometheus_histogram_quantile() -> None:
    """Linear interpolation inside the bucket, as histogram_quantile does."""
    counts = [0] * (len(DURATION_BUCKETS) + 1)
    counts[2] = 10  # ten values in (0.02, 0.04]
    assert quantile(DURATION_BUCKETS, counts, 0.5) == 0.03
    assert quantile(DURATION_BUCKETS, [0] * 15, 0.5) is None


def test_window_summary_covers_the_last_minute_only() -> None:
    """Requests older than the span are left out of the live summary."""
    w = Window(900)
    w.slot(1000.0).outcomes[0] += 60
    w.slot(900.0).outcomes[0] += 1000
    assert w.summary(1000.0)["requests_per_second"] == 1.0


def test_promtool_accepts_the_exposition(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """promtool check metrics finds no problem in a populated exposition."""
    metrics.apply(req(duration_s=1.0, queue_s=0.1, inference_s=0.9, ttft_s=0.2, tpot_s=0.05,
                      input_tokens=10, output_tokens=20, finish_reason="stop", request_id="r"))
    metrics.apply(req(outcome="error", error_type="timeout", duration_s=30.0))
    metrics.apply({"kind": "stats", "provider": "vllm", "model": "", "engine": "0", "running": 2,
                   "kv_cache_usage": 0.5})
    metrics.apply({"kind": "http", "provider": "vllm", "method": "POST", "path": "/v1/completions", "code": "200"})
    metrics.apply({"kind": "log", "provider": "vllm", "level": "error"})
    metrics.source("stdin")
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=generate_latest(registry),
                       capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_summary_rates_count_only_the_seconds_since_start() -> None:
    """Ten requests in the first 5 s after start read as 2/s, not 10/60."""
    now = [1000.0]
    m = LLMMetrics(clock=lambda: now[0])
    now[0] = 1004.5
    for _ in range(10):
        m.apply(req(duration_s=0.1))
    assert m.summary()["requests_per_second"] == 2.0
    now[0] = 1100.0  # a minute later, the same ten requests are outside the window
    assert m.summary()["requests_per_second"] == 0.0


def series(reg: CollectorRegistry, name: str, label: str) -> dict[str, float]:
    """Value by `label` of every sample called `name` (summed over the other labels)."""
    out: dict[str, float] = {}
    for fam in reg.collect():
        for s in fam.samples:
            if s.name == name:
                out[s.labels[label]] = out.get(s.labels[label], 0) + s.value
    return out


def limited(records: list[dict[str, object]]) -> CollectorRegistry:
    m = LLMMetrics(label_limit=2)
    for r in records:
        m.apply(r)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return reg


def overflow(reg: CollectorRegistry, metric: str, label: str) -> float | None:
    return reg.get_sample_value("llm_exporter_label_overflow_total", {"metric": metric, "label": label})


def test_error_types_past_the_limit_fold_into_other() -> None:
    """Request error types: the first two admitted, the other three requests under _OTHER."""
    types = ["oom", "timeout", "validation", "overloaded", "validation"]
    reg = limited([req(outcome="error", error_type=t, duration_s=1.0) for t in types])
    assert series(reg, "llm_request_errors_total", "error_type") == {"oom": 1, "timeout": 1, "_OTHER": 3}
    assert series(reg, "gen_ai_server_request_duration_seconds_count", "error_type") == \
        {"oom": 1, "timeout": 1, "_OTHER": 3}
    assert overflow(reg, "llm_request_errors_total", "error_type") == 3


def test_server_error_types_past_the_limit_fold_into_other() -> None:
    """Server incidents have their own error_type limiter."""
    types = ["engine_dead", "oom", "shard_crash", "engine_dead", "cuda"]
    reg = limited([{"kind": "server_error", "provider": "vllm", "error_type": t} for t in types])
    assert series(reg, "llm_server_errors_total", "error_type") == {"engine_dead": 2, "oom": 1, "_OTHER": 2}
    assert overflow(reg, "llm_server_errors_total", "error_type") == 2


def test_finish_reasons_past_the_limit_fold_into_other() -> None:
    """Finish reasons: stop and length admitted, the two later ones folded."""
    reasons = ["stop", "length", "stop", "tool_calls", "content_filter"]
    reg = limited([req(finish_reason=f) for f in reasons])
    assert series(reg, "llm_request_finish_reasons_total", "gen_ai_response_finish_reason") == \
        {"stop": 2, "length": 1, "_OTHER": 2}
    assert overflow(reg, "llm_request_finish_reasons_total", "gen_ai_response_finish_reason") == 2


def test_engines_past_the_limit_fold_into_other() -> None:
    """Engine names (server stats and prompt-token batches) share one limiter: e0, e1, then _OTHER."""
    stats = [{"kind": "stats", "provider": "sglang", "model": "m", "engine": f"e{i}", "running": float(i)}
             for i in range(4)]
    toks = [{"kind": "tokens", "provider": "sglang", "model": "m", "engine": f"e{i}", "prompt_tokens": 10 + i}
            for i in (0, 3)]
    reg = limited([*stats, *toks])
    # the two folded engines' gauges both land on _OTHER, the later reading (3) kept
    assert series(reg, "llm_requests_running", "engine") == {"e0": 0.0, "e1": 1.0, "_OTHER": 3.0}
    assert series(reg, "llm_prompt_tokens_total", "engine") == {"e0": 10, "_OTHER": 13}
    assert overflow(reg, "llm_requests_running", "engine") == 3


def test_token_usage_counts_each_request_in_its_bucket(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """Input tokens 10, 10, 100 and output tokens 1, 300, 1000: le is inclusive (1 token in le=1)."""
    metrics.apply(req(input_tokens=10, output_tokens=1))
    metrics.apply(req(input_tokens=10, output_tokens=300))
    metrics.apply(req(input_tokens=100, output_tokens=1000))
    want = {"input": {"4": 0, "16": 2, "64": 2, "256": 3, "+Inf": 3},
            "output": {"1": 1, "4": 1, "256": 1, "1024": 3, "+Inf": 3}}
    for kind, buckets in want.items():
        for le, n in buckets.items():
            labels = {**A, "gen_ai_token_type": kind, "le": le}
            assert registry.get_sample_value("gen_ai_client_token_usage_bucket", labels) == n, (kind, le)
    assert registry.get_sample_value("gen_ai_client_token_usage_sum", {**A, "gen_ai_token_type": "input"}) == 120


def test_window_summary_counts_every_request_its_tokens_and_durations() -> None:
    """Three requests in the first second: 0.05 s, 0.05 s, 0.3 s and 30 input tokens. The median
    (rank 1.5 of 3) lies in the (0.04, 0.08] bucket holding two: 0.04 + 0.04 * 1.5 / 2 = 0.07."""
    m = LLMMetrics(clock=lambda: 1000.0)
    m.apply(req(duration_s=0.05, input_tokens=10, output_tokens=4))
    m.apply(req(duration_s=0.05, input_tokens=20))
    m.apply(req(duration_s=0.3))
    s = m.summary()
    assert s["requests_per_second"] == 3
    assert s["input_tokens_per_second"] == 30 and s["output_tokens_per_second"] == 4
    assert s["p50_seconds"] == pytest.approx(0.07, rel=1e-12)


def test_window_keeps_the_built_in_duration_buckets_under_configured_bounds() -> None:
    """With `buckets:` setting the duration bounds to 0.1 and 1 s, the page's quantiles still use the
    built-in bounds: two 0.05 s requests give a median inside (0.04, 0.08]: 0.04 + 0.04 * 1 / 2."""
    m = LLMMetrics(clock=lambda: 1000.0)
    m.requests.set_bounds({"duration": (0.1, 1.0)})
    m.apply(req(duration_s=0.05))
    m.apply(req(duration_s=0.05))
    assert m.summary()["p50_seconds"] == pytest.approx(0.06, rel=1e-12)


def test_window_counts_a_second_seen_again_and_the_first_unix_seconds() -> None:
    """Timestamps out of order (10, 11, 10) all count; so does a request at Unix second 1."""
    m = LLMMetrics(clock=lambda: 11.0)
    for now in (10.0, 11.0, 10.0):
        m.apply(req(), now)
    assert m.window.summary(11.0, 60)["requests_per_second"] == 3 / 60
    early = LLMMetrics(clock=lambda: 1.0)
    early.apply(req())
    assert early.summary()["requests_per_second"] == 1


def test_prompt_tokens_of_request_records_are_counted(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """A request's prompt_tokens and cached_tokens add to the prompt-token counters, engine ""."""
    metrics.apply(req(prompt_tokens=10, cached_tokens=4))
    metrics.apply(req(prompt_tokens=5))
    labels = {"gen_ai_provider_name": "app", "gen_ai_request_model": "m", "engine": ""}
    assert registry.get_sample_value("llm_prompt_tokens_total", labels) == 15
    assert registry.get_sample_value("llm_prompt_cached_tokens_total", labels) == 4


def test_folded_models_add_up_their_prompt_tokens() -> None:
    """Models c and d past the limit of two both land on _OTHER: 20 + 100 prompt tokens."""
    reg = limited([req(model=mod, prompt_tokens=n) for mod, n in (("a", 1), ("b", 10), ("c", 20), ("d", 100))])
    assert series(reg, "llm_prompt_tokens_total", "gen_ai_request_model") == {"a": 1, "b": 10, "_OTHER": 120}


def test_tpot_derived_from_two_tokens_and_from_no_decode_time(metrics: LLMMetrics,
                                                           registry: CollectorRegistry) -> None:
    """Two output tokens: one gap, (1.0 - 0.4) / 1 = 0.6 s; a duration equal to the TTFT: 0 s."""
    metrics.apply(req(duration_s=1.0, ttft_s=0.4, output_tokens=2))
    metrics.apply(req(duration_s=0.5, ttft_s=0.5, output_tokens=5))
    assert registry.get_sample_value("gen_ai_server_time_per_output_token_seconds_count", L) == 2
    assert registry.get_sample_value("gen_ai_server_time_per_output_token_seconds_sum", L) == 0.6
    assert registry.get_sample_value("gen_ai_server_time_per_output_token_seconds_bucket", {**L, "le": "0.01"}) == 1


def test_a_failed_request_without_an_error_type_counts_as_other(metrics: LLMMetrics,
                                                               registry: CollectorRegistry) -> None:
    metrics.apply(req(outcome="error", error_type=""))
    assert registry.get_sample_value("llm_request_errors_total", {**L, "error_type": "_OTHER"}) == 1


def test_request_metrics_work_without_accounting_or_prompt_counters() -> None:
    """The request families on their own (no tenant accounting, no prompt-token counter attached)."""
    rm = RequestMetrics(LabelLimits(100), Window(), clock=lambda: 1000.0)
    rm.apply(req(tenant="t1", prompt_tokens=3, duration_s=0.5))
    fams = {f.name: f for f in rm.families(with_exemplars=False)}
    assert [s.value for s in fams["llm_requests"].samples] == [1]


def test_operation_and_adapter_values_past_the_limit_are_counted_under_their_names() -> None:
    """`llm_exporter_label_overflow_total` names the metric and label each fold happened in."""
    reg = limited([req(operation=op, adapter=ad) for op, ad in
                   (("chat", "a1"), ("embeddings", "a2"), ("text_completion", "a3"))])
    assert overflow(reg, "llm_requests_total", "gen_ai_operation_name") == 1
    assert overflow(reg, "llm_requests_total", "llm_adapter") == 1


def test_openmetrics_exemplar_carries_the_time_it_was_seen(metrics: LLMMetrics, registry: CollectorRegistry) -> None:
    """The exemplar's timestamp is when the request was counted (wall clock)."""
    before = time.time()
    metrics.apply(req(duration_s=3.0, request_id="req_t"))
    after = time.time()
    fam = next(f for f in text_string_to_metric_families(generate_openmetrics(registry).decode())
               if f.name == "gen_ai_server_request_duration_seconds")
    stamps = [s.exemplar.timestamp for s in fam.samples if s.exemplar is not None]
    assert len(stamps) == 1 and before <= float(stamps[0]) <= after
