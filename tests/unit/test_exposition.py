"""The /metrics text writer against prometheus-client's generic one, its parser and promtool."""

from __future__ import annotations

import subprocess
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from llm_exporter.exposition import CONTENT_TYPE, encoder_for, generate_text
from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.hist import ArrayHistogram, Hist
from tests.helpers import tool

# label values as logs bring them: quotes, backslashes, newlines, non-ASCII, empty
values = st.text(alphabet=st.sampled_from('ab"\\\n é_-.{}=,'), max_size=6)
seconds = st.one_of(st.none(), st.floats(min_value=0, max_value=1e5, allow_nan=False),
                    st.sampled_from([0.01, 0.04, 1.28, 81.92, 1e-9]))
tokens = st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 40))
request = st.fixed_dictionaries({
    "kind": st.just("request"), "provider": st.sampled_from(["app", "vllm", "tgi"]),
    "operation": st.sampled_from(["chat", "text_completion", "embeddings"]), "model": values,
    "outcome": st.sampled_from(["success", "error", "aborted"]), "error_type": values,
    "duration_s": seconds, "queue_s": seconds, "inference_s": seconds, "ttft_s": seconds, "tpot_s": seconds,
    "input_tokens": tokens, "output_tokens": tokens,
    "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length"])),
    "request_id": st.one_of(st.none(), st.text(max_size=80)),
})
other = st.one_of(
    st.fixed_dictionaries({"kind": st.just("stats"), "provider": st.just("vllm"), "model": values,
                           "engine": st.sampled_from(["0", "1"]), "running": st.integers(0, 50),
                           "kv_cache_usage": st.floats(0, 1)}),
    st.fixed_dictionaries({"kind": st.just("http"), "provider": st.just("vllm"), "method": st.just("POST"),
                           "path": values, "code": st.sampled_from(["200", "500"])}),
    st.fixed_dictionaries({"kind": st.just("log"), "provider": st.just("tgi"),
                           "level": st.sampled_from(["info", "error"])}),
)


def _registry(records: list[dict[str, Any]], limit: int = 100) -> tuple[LLMMetrics, CollectorRegistry]:
    m = LLMMetrics(label_limit=limit, clock=lambda: 1_000_000.0)
    for r in records:
        m.apply({k: v for k, v in r.items() if v is not None})
    m.source("stdin").lines("record", len(records))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return m, reg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(request, other), max_size=40), st.sampled_from([2, 100]))
def test_same_bytes_as_prometheus_client(records: list[dict[str, Any]], limit: int) -> None:
    """On any metric state the writer gives generate_latest's bytes, and the parser reads it."""
    _, reg = _registry(records, limit)
    fast = generate_text(reg)
    assert fast == generate_latest(reg)
    names = {f.name for f in text_string_to_metric_families(fast.decode())}
    assert "gen_ai_server_request_duration_seconds" in names


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "zz", "le_x", "error_type", "model", "k"]), min_size=0, max_size=4,
                unique=True),
       st.lists(st.floats(min_value=-10, max_value=1e7, allow_nan=False), min_size=1, max_size=6, unique=True),
       st.lists(st.floats(min_value=-10, max_value=2e7, allow_nan=False), max_size=30),
       st.lists(values, min_size=4, max_size=4))
def test_array_histogram_any_labels_and_bounds(names: list[str], bounds: list[float], obs: list[float],
                                               vals: list[str]) -> None:
    """Label names before and after `le`, negative and large bounds, counts past a million."""
    h = Hist(sorted(bounds))
    for v in obs:
        h.observe(v)
    h.counts[-1] += 1_234_567 if obs and obs[0] > 1e6 else 0
    fam = ArrayHistogram("x_seconds", 'doc "with" \\ and\nnewline', labels=names, unit="seconds")
    fam.add_hist(vals[:len(names)], h)

    class One:
        def collect(self) -> list[ArrayHistogram]:
            return [fam]

    fast = generate_text(One())
    assert fast == generate_latest(One())  # type: ignore[arg-type]
    # the generic path built the samples: the writer now takes them as any other family's
    assert generate_text(One()) == fast


def test_counts_and_sums_read_back_as_applied() -> None:
    """The parser reads back the hand-counted requests, buckets and sums of a small state."""
    recs = [{"kind": "request", "provider": "app", "operation": "chat", "model": 'q"m\\', "outcome": "success",
             "error_type": "", "duration_s": d} for d in (0.005, 0.5, 0.5, 100.0)]
    recs.append({"kind": "request", "provider": "app", "operation": "chat", "model": 'q"m\\', "outcome": "error",
                 "error_type": "timeout", "duration_s": 30.0})
    _, reg = _registry(recs)
    got: dict[tuple[str, str, str], float] = {}
    for fam in text_string_to_metric_families(generate_text(reg).decode()):
        for s in fam.samples:
            if s.name.startswith("gen_ai_server_request_duration_seconds"):
                assert s.labels["gen_ai_request_model"] == 'q"m\\'
                got[(s.name, s.labels["error_type"], s.labels.get("le", ""))] = s.value
            if s.name == "llm_requests_total":
                got[(s.name, s.labels["outcome"], "")] = s.value
    d = "gen_ai_server_request_duration_seconds"
    assert got[(d + "_bucket", "", "0.01")] == 1
    assert got[(d + "_bucket", "", "0.64")] == 3
    assert got[(d + "_bucket", "", "81.92")] == 3
    assert got[(d + "_bucket", "", "+Inf")] == 4
    assert got[(d + "_count", "", "")] == 4
    assert got[(d + "_sum", "", "")] == 101.005
    assert got[(d + "_count", "timeout", "")] == 1
    assert got[("llm_requests_total", "success", "")] == 4
    assert got[("llm_requests_total", "error", "")] == 1


def test_promtool_accepts_a_large_exposition() -> None:
    """promtool check metrics finds no problem in an exposition of many series and odd label values."""
    recs = [{"kind": "request", "provider": "app", "operation": op, "model": f'model-{i}"\\\né', "outcome": out,
             "error_type": "TimeoutError" if out == "error" else "", "duration_s": 0.1 * i, "queue_s": 0.01,
             "inference_s": 0.05, "ttft_s": 0.02, "input_tokens": i, "output_tokens": 3 * i + 1}
            for i in range(60) for op in ("chat", "embeddings") for out in ("success", "error")]
    _, reg = _registry(recs)
    body = generate_text(reg)
    assert body == generate_latest(reg)
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_openmetrics_and_negotiation_unchanged() -> None:
    """OpenMetrics (exemplars) still comes from prometheus-client; plain scrapes get the writer."""
    recs = [{"kind": "request", "provider": "app", "operation": "chat", "model": "m", "outcome": "success",
             "error_type": "", "duration_s": 0.3, "request_id": "r-1"}]
    _, reg = _registry(recs)
    om = generate_openmetrics(reg).decode()
    assert 'request_id="r-1"' in om
    assert encoder_for("")[0] is generate_text and encoder_for("")[1] == CONTENT_TYPE
    assert encoder_for("application/openmetrics-text; version=1.0.0")[0] is not generate_text


def test_families_are_a_snapshot_taken_under_the_lock() -> None:
    """Families collected before more requests arrive still write the values of their moment."""
    rec = {"kind": "request", "provider": "app", "operation": "chat", "model": "m", "outcome": "success",
           "error_type": "", "duration_s": 0.3}
    m, reg = _registry([rec])
    before = generate_text(reg)
    fams = list(m.collect())
    m.apply(dict(rec))

    class Then:
        def collect(self) -> list[Any]:
            return fams

    assert generate_text(Then()) == before != generate_text(reg)
