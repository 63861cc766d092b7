"""The checkpoint's metric section under hostile values: every value it can hold comes back (an
infinite sum too), and a damaged part loses only itself. On main an infinite histogram sum was
saved as `null` and the next start lost every counter while keeping the file offsets."""

from __future__ import annotations

import math

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.metrics import LLMMetrics, checkpoint
from llm_exporter.pipeline import Pipeline

LINES = [b'{"request_id":"r%d","model":"m","status":"success","total_time_ms":%d,"output_tokens":%d}'
         % (i, 100 + i, i % 7) for i in range(40)]


def _expo(m: LLMMetrics) -> str:
    r = CollectorRegistry(auto_describe=False)
    r.register(m)
    return generate_latest(r).decode()


def _through_json(m: LLMMetrics) -> object:
    with m.lock:
        return orjson.loads(orjson.dumps(checkpoint.snapshot(m)))


def test_a_non_finite_sum_round_trips_and_the_counters_come_back() -> None:
    """A duration histogram whose sum is +Inf (as two valid lines of 1.7e308 s made it on main), and
    a stats gauge of NaN: after the JSON round trip both are as they were and the 40 requests stay."""
    m = LLMMetrics()
    Pipeline(m).process("stdin", LINES)
    series = next(iter(m.requests.series.values()))
    next(iter(series.duration.values())).sum = math.inf
    m.engine.stats[("vllm", "m", "")] = {"running": math.nan, "waiting": 2.0}
    b = LLMMetrics()
    assert checkpoint.restore(b, _through_json(m))
    restored = next(iter(b.requests.series.values()))
    assert restored.requests[0] == 40
    assert next(iter(restored.duration.values())).sum == math.inf
    assert math.isnan(b.engine.stats[("vllm", "m", "")]["running"])
    assert b.engine.stats[("vllm", "m", "")]["waiting"] == 2.0


def test_a_damaged_part_loses_only_itself() -> None:
    """A snapshot whose stats and one request series are damaged: the other series, the line
    counters and the HTTP counters still come back."""
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("stdin", LINES)
    p.process("stdin", [b'{"request_id":"z","model":"other","status":"success","total_time_ms":5}'])
    m.engine.http[("vllm", "GET", "/v1/models", "200")] = 3
    data = _through_json(m)
    assert isinstance(data, dict)
    data["stats"] = "garbage"
    data["requests"][1]["n"] = None  # the "other" model's series
    b = LLMMetrics()
    checkpoint.restore(b, data)
    assert [k[2] for k in b.requests.series] == ["m"]
    assert next(iter(b.requests.series.values())).requests[0] == 40
    assert sum(b.internal.lines.values()) == 41
    assert b.engine.http == {("vllm", "GET", "/v1/models", "200"): 3}
    assert 'gen_ai_request_model="m"' in _expo(b)
