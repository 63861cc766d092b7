"""The metric groups one by one, on canonical records with every figure worked out by hand:
request families summed over LoRA adapters, the page's minute summary and its quantiles, start-up
figures and where a new start begins, SLO judging at its edges, `--config` metrics, incidents,
stats gauges, advice from the logs, and the exporter's own line and byte counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.config import MetricSpec, load_config
from llm_exporter.hints import text as hint_text
from llm_exporter.labels import LabelLimits
from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.custom import CustomMetrics
from llm_exporter.metrics.hints import HintsSeen
from llm_exporter.metrics.hist import quantile
from llm_exporter.metrics.slo import RESULTS, Objective, SloMetrics
from llm_exporter.metrics.startup import StartupMetrics
from llm_exporter.metrics.window import Window
from tests.helpers import logged, parse_metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _expo(m: LLMMetrics) -> str:
    r = CollectorRegistry(auto_describe=False)
    r.register(m)
    return generate_latest(r).decode()


def _samples(m: LLMMetrics) -> Samples:
    return parse_metrics(_expo(m))


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _req(**kw: Any) -> dict[str, Any]:
    return {"kind": "request", "operation": "chat", "provider": "vllm", "model": "m", "outcome": "success",
            "error_type": None, **kw}


MODEL = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "vllm", "gen_ai_request_model": "m"}


# --- request families: the ones without llm_adapter add the adapters of a model up ---------------

def test_families_without_the_adapter_label_add_the_adapters_up() -> None:
    """Base model and two LoRA adapters of model m: errors 1 + 2 + 0, finish reasons, and the TTFT
    and queue histograms summed over the three; each TTFT exemplar kept where one adapter had it,
    the later adapter's where both had one."""
    m = LLMMetrics()
    m.apply(_req(outcome="error", error_type="timeout"))
    m.apply(_req(ttft_s=0.03, queue_s=0.5, request_id="base-1", finish_reason="stop"))
    m.apply(_req(adapter="lora1", outcome="error", error_type="timeout"))
    m.apply(_req(adapter="lora1", outcome="error", error_type="timeout"))
    m.apply(_req(adapter="lora1", ttft_s=0.3, queue_s=1.5, request_id="l1-1", finish_reason="stop"))
    m.apply(_req(adapter="lora1", ttft_s=2.0, request_id="l1-2", finish_reason="length"))
    m.apply(_req(adapter="lora2", ttft_s=1.5, request_id="l2-1", finish_reason="stop"))
    got = _samples(m)
    assert _value(got, "llm_request_errors_total", **MODEL, error_type="timeout") == 3
    assert _value(got, "llm_request_finish_reasons_total", **MODEL, gen_ai_response_finish_reason="stop") == 3
    assert _value(got, "llm_request_finish_reasons_total", **MODEL, gen_ai_response_finish_reason="length") == 1
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert _value(got, f"{ttft}_count", **MODEL) == 4
    assert _value(got, f"{ttft}_sum", **MODEL) == pytest.approx(3.83)
    assert _value(got, f"{ttft}_bucket", **MODEL, le="0.04") == 1
    assert _value(got, f"{ttft}_bucket", **MODEL, le="0.5") == 2
    assert _value(got, f"{ttft}_bucket", **MODEL, le="2.5") == 4
    assert _value(got, "llm_request_queue_duration_seconds_count", **MODEL) == 2
    assert _value(got, "llm_request_queue_duration_seconds_sum", **MODEL) == 2.0
    fam = next(f for f in m.collect() if f.name == ttft)
    ex = {s.labels["le"]: s.exemplar.labels["request_id"] for s in fam.samples if s.exemplar is not None}
    assert ex == {"0.04": "base-1", "0.5": "l1-1", "2.5": "l2-1"}


def test_error_counts_for_the_page_are_summed_over_every_series() -> None:
    m = LLMMetrics()
    for model, et in (("a", "timeout"), ("b", "timeout"), ("b", "timeout"), ("b", "oom")):
        m.apply(_req(model=model, outcome="error", error_type=et))
    m.apply(_req(model="a"))
    assert m.requests.error_counts() == {"timeout": 3, "oom": 1}


# --- quantiles (Prometheus' histogram_quantile) and the page's minute summary ---------------------

@pytest.mark.parametrize(("bounds", "counts", "q", "want"), [
    ((1, 2, 3), [2, 0, 2, 0], 0.5, 1.0),  # rank exactly at a bucket's top: that bucket, not the next full one
    ((1, 2, 3), [0, 3, 0, 0], 0.0, 1.0),  # q=0 skips the empty first bucket
    ((1, 2), [0, 1, 0], 0.5, 1.5),  # one observation in the second bucket: half way up it
    ((1, 2), [2, 0, 0], 0.5, 0.5),  # the first bucket starts at 0
    ((1, 2), [1, 1, 0], 0.75, 1.5),
    ((1, 2, 3), [1, 1, 2, 0], 0.75, 2.5),
    ((1, 2, 3), [2, 0, 2, 0], 0.75, 2.5),
    ((1, 2, 3), [0, 0, 0, 4], 0.5, 3.0),  # in +Inf: the highest finite bound
    ((1, 2, 3), [1, 0, 0, 1], 0.99, 3.0),
    ((1, 2, 3), [0, 0, 0, 0], 0.5, None),
])
def test_quantile_as_prometheus_works_it_out(bounds: tuple[float, ...], counts: list[int], q: float,
                                             want: float | None) -> None:
    assert quantile(bounds, counts, q) == want


def test_the_minute_summary_counts_the_last_60_seconds_only() -> None:
    """At second 1000: second 940 is out (a minute ago), 941 and 1000 are in: 6 requests (1 error,
    2 aborted), 120 input and 90 output tokens, durations 2 x (0.04, 0.08] and 2 x (0.16, 0.32]."""
    w = Window()
    old = w.slot(940)
    old.outcomes = [50, 50, 50]
    old.tokens_in = old.tokens_out = 1000
    old.duration[0] = 100
    a, b = w.slot(941), w.slot(1000)
    a.outcomes, a.tokens_in, a.tokens_out = [2, 1, 0], 100, 30
    b.outcomes, b.tokens_in, b.tokens_out = [1, 0, 2], 20, 60
    a.duration[3] = 2
    b.duration[5] = 2
    got = w.summary(1000.9, 60)
    assert got == {"requests_per_second": 0.1, "error_ratio": 1 / 6, "p50_seconds": 0.08,
                   "p95_seconds": pytest.approx(0.16 + 0.16 * 1.8 / 2),
                   "input_tokens_per_second": 2.0, "output_tokens_per_second": 1.5}
    assert Window().summary(1000, 60) == {"requests_per_second": 0.0, "error_ratio": None, "p50_seconds": None,
                                          "p95_seconds": None, "input_tokens_per_second": 0.0,
                                          "output_tokens_per_second": 0.0}


def test_the_chart_series_holds_the_seconds_still_in_the_window() -> None:
    w = Window(seconds=10)
    w.slot(100).outcomes[0] += 1
    w.slot(105).outcomes[1] += 1
    assert [(s.second, s.outcomes) for s in w.series(109)] == [(100, [1, 0, 0]), (105, [0, 1, 0])]
    assert [s.second for s in w.series(110)] == [105]  # second 100 is ten seconds old at 110


def test_the_page_rate_is_over_the_time_since_start_until_a_minute() -> None:
    """Six requests in the first second: 6/s then; at 100 s (the requests 10 s ago): 6 per 60 s."""
    t = [1000.0]
    m = LLMMetrics(clock=lambda: t[0])
    for _ in range(6):
        m.apply(_req(duration_s=0.05), 1000.0)
    assert m.summary()["requests_per_second"] == 6.0
    t[0] = 1100.0
    for _ in range(6):
        m.apply(_req(duration_s=0.05), 1090.0)
    assert m.summary()["requests_per_second"] == 0.1


def test_with_objectives_a_request_still_counts_at_its_own_time(tmp_path: Path) -> None:
    """An `slo:` config routes requests through the SLO judge too; the page's window still files
    a replayed request under the time given with it, not the clock's."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slo:\n  - name: all\n    duration: 2s\n")
    m = LLMMetrics(clock=lambda: 1000.0)
    m.configure(load_config(cfg))
    m.apply(_req(duration_s=0.5), 5000.0)
    assert [(s.second, s.outcomes) for s in m.window.series(5000)] == [(5000, [1, 0, 0])]
    assert m.slo.requests == {("all", "m"): [1, 0, 0]}


# --- start-up ------------------------------------------------------------------------------------

def _starts(*recs: dict[str, Any]) -> StartupMetrics:
    st = StartupMetrics()
    for r in recs:
        st.apply({"provider": "vllm", **r})
    return st


@pytest.mark.parametrize("figure", [{"kv_cache_tokens": 52000}, {"max_concurrency": 3.5},
                                    {"memory_use": "kv_cache", "memory_bytes": 2**30}])
def test_a_figure_after_the_ready_line_opens_the_next_start(figure: dict[str, Any]) -> None:
    """A restart whose banner was missed: the first capacity line after `ready` is a new start."""
    st = _starts({"start": True, "phases": {"weights": 5.0}}, {"ready": True, "phases": {"ready": 40.0}}, figure)
    assert st.starts == {"vllm": 2}
    assert st.current["vllm"].phases == {}


@pytest.mark.parametrize(("first", "starts"), [
    ({"start": True}, 1),  # the banner printed twice (two ranks): one start
    ({"phases": {"bogus_phase": 3.0}}, 1),  # nothing we keep: still the same (empty) start
    ({"phases": {"weights": 5.0}}, 2),
    ({"memory_use": "weights", "memory_bytes": 2**30}, 2),
    ({"kv_cache_tokens": 52000}, 2),
    ({"max_concurrency": 3.5}, 2),
])
def test_a_banner_opens_a_new_start_only_after_figures(first: dict[str, Any], starts: int) -> None:
    assert _starts(first, {"start": True}).starts == {"vllm": starts}


def test_phase_and_memory_figures_as_printed() -> None:
    """0 s is a figure; a negative or unknown phase is not; memory of two ranks adds up; a memory
    line without bytes changes nothing."""
    st = _starts({"start": True, "phases": {"weights": 0.0, "compile": -1.0, "bogus": 3.0}},
                 {"memory_use": "weights", "memory_bytes": 3 * 2**30},
                 {"memory_use": "weights", "memory_bytes": 2**30},
                 {"memory_use": "weights"})
    assert st.current["vllm"].phases == {"weights": 0.0}
    assert st.current["vllm"].memory == {"weights": 4.0 * 2**30}


def test_a_restored_start_that_was_ready_ends_at_the_next_figure() -> None:
    """Saved ready, with no KV cache or concurrency figure (printed as null): after the restart the
    next phase line is a new start."""
    a = _starts({"start": True, "phases": {"weights": 5.0}}, {"ready": True})
    b = StartupMetrics()
    b.restore(orjson.loads(orjson.dumps(a.snapshot())))
    s = b.current["vllm"]
    assert (b.starts, s.phases, s.kv_tokens, s.concurrency, s.ready) == ({"vllm": 1}, {"weights": 5.0}, None,
                                                                          None, True)
    b.apply({"provider": "vllm", "phases": {"weights": 6.0}})
    assert b.starts == {"vllm": 2}


# --- SLO judging ---------------------------------------------------------------------------------

def _judged(objective: Objective, rec: dict[str, Any]) -> str:
    s = SloMetrics(lambda v: v)
    s.objectives = [objective]
    s.apply({"model": "m", "outcome": "success", **rec})
    return next(RESULTS[i] for i, n in enumerate(s.requests[(objective.name, "m")]) if n)


@pytest.mark.parametrize(("rec", "want"), [
    ({"tpot_s": 0.2}, "bad"),  # logged TPOT over; no TTFT to judge: the TPOT alone makes it bad
    ({"tpot_s": 0.05}, "good"),
    ({"ttft_s": 0.4, "duration_s": 1.0, "output_tokens": 1}, "good"),  # one token: no TPOT, TTFT judged
    ({"ttft_s": 0.4, "duration_s": 0.4, "output_tokens": 2}, "good"),  # TPOT 0 / 1 = 0
    ({"ttft_s": 0.4, "duration_s": 2.4, "output_tokens": 2}, "bad"),  # TPOT 2.0
])
def test_an_objective_judges_each_threshold_it_can(rec: dict[str, Any], want: str) -> None:
    assert _judged(Objective("chat", [], {"ttft": 0.5, "tpot": 0.05}, 0.99), rec) == want


@pytest.mark.parametrize(("rec", "want"), [
    ({"ttft_s": 0.4, "duration_s": 0.4, "output_tokens": 2}, "good"),  # TPOT 0: on time
    ({"ttft_s": 0.4, "duration_s": 1.0, "output_tokens": 1}, "unjudged"),  # one token has no TPOT
    ({"ttft_s": 0.4, "duration_s": 0.3, "output_tokens": 5}, "unjudged"),  # duration below TTFT: none either
])
def test_a_tpot_objective_works_tpot_out_only_when_it_can(rec: dict[str, Any], want: str) -> None:
    assert _judged(Objective("tpot", [], {"tpot": 0.05}, 0.99), rec) == want


def test_saved_slo_counts_missing_a_part_restore_the_rest() -> None:
    """A snapshot without its token counts brings the request counts back, and the other way
    round; one without the definitions brings nothing (they cannot be checked)."""
    obj = Objective("chat", [], {"ttft": 0.5}, 0.99)
    defs = [["chat", [], [["ttft", 0.5]], 0.99]]
    for data, requests, tokens in (
            ({"objectives": defs, "requests": [[["chat", "m"], [1, 2, 3]]]}, {("chat", "m"): [1, 2, 3]}, {}),
            ({"objectives": defs, "tokens": [[["chat", "m"], [9, 8, 7]]]}, {}, {("chat", "m"): [9, 8, 7]}),
            ({"requests": [[["chat", "m"], [1, 2, 3]]]}, {}, {})):
        s = SloMetrics(lambda v: v)
        s.objectives = [obj]
        s.restore(data)
        assert (s.requests, s.tokens) == (requests, tokens)


# --- --config metrics ----------------------------------------------------------------------------

def test_config_metrics_count_keep_and_observe_what_the_lines_say() -> None:
    """Counter: 0 makes the series (at 0), 0.5 and 2 add, -3 is refused; histogram with its own
    buckets and one with the default ones; the help text given, or where the value comes from."""
    specs = [MetricSpec(name="batch_total", type="counter", path="usage.batch", help="Batches run."),
             MetricSpec(name="latency_seconds", type="histogram", path="t", buckets=[0.1, 1.0]),
             MetricSpec(name="wait_seconds", type="histogram", path="w")]
    cm = CustomMetrics(specs, (), LabelLimits(100))
    lab = {"gen_ai_provider_name": "app", "gen_ai_request_model": "m"}
    for name, model, v in (("batch_total", "idle", 0.0), ("batch_total", "m", 0.5), ("batch_total", "m", 2.0),
                           ("batch_total", "m", -3.0), ("latency_seconds", "m", 0.05),
                           ("latency_seconds", "m", 0.5), ("wait_seconds", "m", 0.015)):
        cm.apply({"name": name, "labels": {**lab, "gen_ai_request_model": model}, "value": v})
    m = LLMMetrics()
    m.custom = cm
    text = _expo(m)
    got = parse_metrics(text)
    assert _value(got, "batch_total", **{**lab, "gen_ai_request_model": "idle"}) == 0.0
    assert _value(got, "batch_total", **lab) == 2.5
    assert [_value(got, "latency_seconds_bucket", **lab, le=le) for le in ("0.1", "1", "+Inf")] == [1, 2, 2]
    assert _value(got, "latency_seconds_count", **lab) == 2
    assert _value(got, "wait_seconds_bucket", **lab, le="0.01") == 0
    assert _value(got, "wait_seconds_bucket", **lab, le="0.02") == 1
    assert "# HELP batch_total Batches run.\n" in text
    assert "# HELP wait_seconds From the field w (--config).\n" in text


# --- incidents, stats, advice --------------------------------------------------------------------

def test_incidents_and_batch_prompt_tokens_keep_their_labels() -> None:
    """An incident without a type is `_OTHER`; a batch `tokens` record is filed under its model and engine."""
    m = LLMMetrics()
    m.apply({"kind": "server_error", "provider": "ollama"})
    m.apply({"kind": "tokens", "provider": "sglang", "model": "qwen", "engine": "dp1", "prompt_tokens": 70,
             "cached_tokens": 30})
    m.apply({"kind": "tokens", "provider": "sglang", "prompt_tokens": 5})  # a batch line naming no model
    got = _samples(m)
    assert _value(got, "llm_server_errors_total", gen_ai_provider_name="ollama", error_type="_OTHER") == 1
    lab = {"gen_ai_provider_name": "sglang", "gen_ai_request_model": "qwen", "engine": "dp1"}
    assert _value(got, "llm_prompt_tokens_total", **lab) == 70
    assert _value(got, "llm_prompt_cached_tokens_total", **lab) == 30
    unnamed = {"gen_ai_provider_name": "sglang", "gen_ai_request_model": "", "engine": ""}
    assert _value(got, "llm_prompt_tokens_total", **unnamed) == 5


def test_stats_gauges_carry_the_model_and_the_time_of_their_line() -> None:
    m = LLMMetrics(clock=lambda: 9999.0)
    m.apply({"kind": "stats", "provider": "vllm", "model": "qwen", "running": 2.0}, 1234.0)
    assert m.engine.stats == {("vllm", "qwen", ""): {"running": 2.0, "last_seen": 1234.0}}




def test_each_piece_of_advice_is_logged_once_with_its_fields() -> None:
    """Seen twice: logged once, with the advice text and the hint and provider as fields (the JSON
    log shows them); a hint without a provider is kept with ""; an unknown one is ignored."""
    h = HintsSeen()
    with logged("llm_exporter.hints") as said:
        h.apply({"hint": "vllm_stats_only", "provider": "vllm"})
        h.apply({"hint": "vllm_stats_only", "provider": "other"})
        h.apply({"hint": "vllm_access_log_only"})
        h.apply({"hint": "no_such_hint", "provider": "vllm"})
    assert h.seen == {"vllm_stats_only": "vllm", "vllm_access_log_only": ""}
    assert [(r.getMessage(), r.fields) for r in said] == [  # type: ignore[attr-defined]
        (hint_text("vllm_stats_only"), {"hint": "vllm_stats_only", "provider": "vllm"}),
        (hint_text("vllm_access_log_only"), {"hint": "vllm_access_log_only", "provider": ""}),
    ]


# --- the exporter's own counters -----------------------------------------------------------------

def test_own_line_byte_and_eviction_counters_add_up() -> None:
    """Two sources' framing counts, bytes in two reads, two evictions of one provider's table."""
    m = LLMMetrics()
    stdin, f = m.source("stdin"), m.source("file:a.log")
    stdin.lines("too_long")
    stdin.lines("too_long")
    stdin.lines("dropped", 3)
    f.lines("too_long")
    stdin.bytes(100)
    stdin.bytes(28)
    m.internal.count_line("stdin", "record", 5)
    m.apply({"kind": "evicted", "provider": "tgi", "n": 3})
    m.apply({"kind": "evicted", "provider": "tgi", "n": 4})
    assert m.internal.line_totals() == {"record": 5, "ignored": 0, "unparsed": 0, "invalid": 0, "too_long": 3,
                                        "dropped": 3}
    assert m.internal.bytes == {"stdin": 128, "file:a.log": 0}
    assert _value(_samples(m), "llm_exporter_open_requests_evicted_total", gen_ai_provider_name="tgi") == 7



def test_lines_counted_one_by_one_for_a_source_not_set_up() -> None:
    """The pipeline counts one line per call by default; a source name first seen there starts at 0."""
    m = LLMMetrics()
    m.internal.count_line("push", "record")
    m.internal.count_line("push", "record")
    m.internal.count_line("push", "invalid", 3)
    assert m.internal.lines == {("push", "record"): 2, ("push", "invalid"): 3}


def test_build_info_is_1_and_names_the_revision_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLM_EXPORTER_REVISION (set by the image build) is read once; without it the revision is ""."""
    from llm_exporter.metrics import internal

    def info() -> list[tuple[str, float]]:
        return [(s.labels["revision"], s.value) for s in LLMMetrics().internal.build_info().samples]

    monkeypatch.setattr(internal, "_REVISION", None)
    monkeypatch.setenv("LLM_EXPORTER_REVISION", "abc123")
    assert info() == [("abc123", 1)]
    monkeypatch.setenv("LLM_EXPORTER_REVISION", "def456")
    assert info() == [("abc123", 1)]  # read once, at the first scrape
    monkeypatch.setattr(internal, "_REVISION", None)
    monkeypatch.delenv("LLM_EXPORTER_REVISION")
    assert info() == [("", 1)]


# --- LLMMetrics: its defaults and what a --config reload keeps --------------------------------------

def test_the_default_label_limit_is_100_values() -> None:
    """`--label-limit` defaults to 100: the 101st model is folded."""
    m = LLMMetrics()
    for i in range(101):
        m.apply(_req(model=f"m{i}"))
    assert _value(_samples(m), "llm_exporter_label_overflow_total", metric="llm_requests_total",
                  label="gen_ai_request_model") == 1


def test_the_owner_lock_is_the_apply_lock() -> None:
    """The run's lock (shared with the pipeline's commits) is the one a scrape takes."""
    import threading

    lock = threading.Lock()
    assert LLMMetrics(lock=lock).lock is lock


def test_stats_last_seen_follows_the_metrics_clock() -> None:
    m = LLMMetrics(clock=lambda: 1234.0)
    m.apply({"kind": "stats", "provider": "vllm", "model": "m", "engine": "0", "running": 1})
    assert _value(_samples(m), "llm_server_stats_last_seen_timestamp_seconds", gen_ai_provider_name="vllm",
                  gen_ai_request_model="m", engine="0") == 1234.0


def test_reload_keeps_config_metric_values_until_the_metrics_change(tmp_path: Path) -> None:
    """The same `metrics:` and extra labels: values kept; one metric more: it is exposed (the
    metrics start over, as for a restart)."""
    text = "extra_labels: [team]\nmetrics:\n  - {name: app_chars_total, type: counter, path: chars}\n"
    path = tmp_path / "c.yaml"
    path.write_text(text)
    m = LLMMetrics()
    m.configure(load_config(path))
    m.apply({"kind": "custom", "name": "app_chars_total", "value": 2.0, "labels": {"team": "a"}})
    m.configure(load_config(path))
    labels = {"gen_ai_provider_name": "", "gen_ai_request_model": "", "team": "a"}
    assert _value(_samples(m), "app_chars_total", **labels) == 2.0
    path.write_text(text + "  - {name: app_depth, type: gauge, path: depth}\n")
    m.configure(load_config(path))
    m.apply({"kind": "custom", "name": "app_depth", "value": 5.0, "labels": {"team": "a"}})
    assert _value(_samples(m), "app_depth", **labels) == 5.0


def test_one_adapter_and_the_base_model_add_up() -> None:
    """Two series of one model (base and one adapter): the TTFT count is 1 + 1."""
    m = LLMMetrics()
    m.apply(_req(ttft_s=0.03))
    m.apply(_req(adapter="lora1", ttft_s=0.3))
    assert _value(_samples(m), "gen_ai_server_time_to_first_token_seconds_count", **MODEL) == 2
