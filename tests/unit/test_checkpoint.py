"""The metrics section of the checkpoint: a snapshot restored into fresh metrics exposes the same thing."""

from __future__ import annotations

import json
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.metrics import LLMMetrics, checkpoint
from llm_exporter.pipeline import Pipeline


def _expo(m: LLMMetrics) -> bytes:
    r = CollectorRegistry(auto_describe=False)
    r.register(m)
    return generate_latest(r)


def _line(rnd: random.Random, i: int) -> bytes:
    rec = {"request_id": f"r{i}", "model": f"m{rnd.randint(0, 6)}", "task_type": rnd.choice(["chat", "sum"]),
           "status": rnd.choice(["success", "success", "error", "aborted"]),
           "total_time_ms": round(rnd.uniform(1, 90000), 3), "ttft_ms": round(rnd.uniform(1, 900), 3),
           "queue_time_ms": rnd.randint(0, 50), "input_tokens": rnd.randint(0, 5000),
           "output_tokens": rnd.randint(0, 900), "finish_reason": rnd.choice(["stop", "length"])}
    if rec["status"] == "error":
        rec["error_type"] = rnd.choice(["timeout", "oom", "weird_one", "other_weird"])
    return json.dumps(rec).encode() if rnd.random() > 0.1 else b"junk line"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), limit=st.integers(1, 5))
def test_snapshot_round_trip_keeps_every_series(seed: int, n: int, limit: int) -> None:
    """Counters, histograms, limiter folds: a JSON round trip restores the same exposition, and
    lines after the restore fold into _OTHER exactly as they would have without the restart."""
    rnd = random.Random(seed)
    lines = [_line(rnd, i) for i in range(n)]
    half = n // 2
    a = LLMMetrics(label_limit=limit, clock=lambda: 1e6)
    pa = Pipeline(a, clock=lambda: 1e6)
    pa.process("stdin", lines[:half])
    with a.lock:
        snap = orjson.loads(orjson.dumps(checkpoint.snapshot(a)))
    b = LLMMetrics(label_limit=limit, clock=lambda: 1e6)
    assert checkpoint.restore(b, snap)
    assert _expo(b) == _expo(a)
    # the second half goes on in both: one process that never stopped, one restarted
    pa.process("stdin", lines[half:])
    Pipeline(b, clock=lambda: 1e6).process("stdin", lines[half:])
    assert _expo(b) == _expo(a)


def test_damaged_or_foreign_state_starts_from_zero() -> None:
    """A snapshot that is not ours leaves the metrics untouched and says so; a damaged part of
    ours adds nothing (and only it is left out: see test_hardening_checkpoint)."""
    fresh = _expo(LLMMetrics())
    for data in ({"layout": 99}, "nonsense"):
        m = LLMMetrics()
        assert not checkpoint.restore(m, data)
        assert _expo(m) == fresh
    for data in ({"layout": 1, "requests": [{"k": ["a"]}]}, {"layout": 1, "lines": [[["stdin", "record"], "many"]]}):
        m = LLMMetrics()
        checkpoint.restore(m, data)
        assert _expo(m) == fresh
    assert not checkpoint.restore(LLMMetrics(), None)


def test_histogram_with_other_buckets_is_dropped_not_misread() -> None:
    """A duration histogram saved with different bounds is dropped; its counters stay."""
    m = LLMMetrics()
    Pipeline(m).process("stdin", [b'{"request_id":"x","model":"m","status":"success","total_time_ms":20}'])
    with m.lock:
        snap = checkpoint.snapshot(m)
    for r in snap["requests"]:
        for h in r["d"].values():
            h["b"] = [1.0, 2.0]
            h["c"] = [0, 1, 0]
    b = LLMMetrics()
    assert checkpoint.restore(b, snap)
    text = _expo(b).decode()
    assert "gen_ai_server_request_duration_seconds_bucket" not in text
    assert 'llm_requests_total{gen_ai_operation_name="' in text
