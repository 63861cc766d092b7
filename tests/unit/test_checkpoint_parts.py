"""The metric checkpoint part by part: every part comes back on its own, a snapshot written before a
part existed restores without a complaint, a damaged part is named in the one log line that says
what was left out, and histograms or series that no longer fit are dropped with a count."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.metrics import LLMMetrics, checkpoint
from tests.helpers import logged, parse_metrics


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The messages the checkpoint logs (its logger is `llm_exporter.state`), once the block ends."""
    said: list[str] = []
    with logged("llm_exporter.state") as recs:
        yield said
    said.extend(r.getMessage() for r in recs)


def _samples(m: LLMMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = CollectorRegistry(auto_describe=False)
    r.register(m)
    return parse_metrics(generate_latest(r).decode())


def _req(**kw: Any) -> dict[str, Any]:
    return {"kind": "request", "operation": "chat", "provider": "vllm", "model": "m", "outcome": "success",
            "error_type": None, **kw}


def _busy() -> LLMMetrics:
    """Metrics with something in every part: 3 requests, server logs by level, 2 incidents, HTTP
    counters, prompt tokens, stats gauges (one of them -Inf), lines and bytes, a start-up."""
    m = LLMMetrics(clock=lambda: 1000.0)
    m.apply(_req(duration_s=0.5, ttft_s=0.1, output_tokens=11, finish_reason="stop"))
    m.apply(_req(outcome="error", error_type="timeout", duration_s=3.0))
    m.apply(_req(outcome="error", error_type="timeout", duration_s=2.0))
    for level in ("ERROR", "ERROR", "ERROR", "WARNING", "WARNING"):
        m.apply({"kind": "log", "provider": "vllm", "level": level})
    m.apply({"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"})
    m.apply({"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"})
    m.apply({"kind": "http", "provider": "vllm", "method": "POST", "path": "/v1/completions", "code": "200"})
    m.apply({"kind": "tokens", "provider": "sglang", "model": "m", "engine": "", "prompt_tokens": 70,
             "cached_tokens": 30})
    m.apply({"kind": "stats", "provider": "vllm", "model": "m", "running": 3.0, "waiting": -math.inf}, 990.0)
    src = m.source("stdin")
    src.bytes(120)
    src.lines("too_long", 2)
    m.apply({"kind": "startup", "provider": "vllm", "start": True, "phases": {"weights": 12.5}})
    return m


def _through_json(m: LLMMetrics) -> dict[str, Any]:
    with m.lock:
        data = orjson.loads(orjson.dumps(checkpoint.snapshot(m)))
    assert isinstance(data, dict)
    return data


def test_every_part_comes_back_exactly() -> None:
    """Log levels (3 ERROR, 2 WARNING), incidents (2), the -Inf gauge and the rest: after a JSON round
    trip the restored metrics expose the same samples, and no warning is logged."""
    m = _busy()
    b = LLMMetrics(clock=lambda: 1000.0)
    with _warnings() as said:
        assert checkpoint.restore(b, _through_json(m))
    assert said == []
    got = _samples(b)
    assert got == _samples(m)
    assert got[("llm_log_messages_total", (("gen_ai_provider_name", "vllm"), ("level", "ERROR")))] == 3
    assert got[("llm_log_messages_total", (("gen_ai_provider_name", "vllm"), ("level", "WARNING")))] == 2
    assert got[("llm_server_errors_total", (("error_type", "engine_dead"), ("gen_ai_provider_name", "vllm")))] == 2
    assert b.engine.stats[("vllm", "m", "")]["waiting"] == -math.inf


def test_a_non_finite_gauge_is_saved_as_its_json_name() -> None:
    """JSON has no infinities: -Inf, +Inf and NaN are written as those strings and read back."""
    assert [checkpoint._num(x) for x in (-math.inf, math.inf, math.nan, -2.5)] == ["-Inf", "+Inf", "NaN", -2.5]
    m = LLMMetrics()
    m.engine.stats[("vllm", "m", "")] = {"running": -math.inf}
    assert b'"running":"-Inf"' in orjson.dumps(checkpoint.snapshot(m))


def test_a_snapshot_from_before_a_part_existed_restores_quietly() -> None:
    """Only the layout and one request series (no limiters, stats, counters, tenants, error or finish
    counts): the series comes back and nothing is called damaged."""
    data = {"layout": 1, "requests": [{"k": ["chat", "vllm", "m", ""], "n": [4, 1, 0], "d": {}}]}
    m = LLMMetrics()
    with _warnings() as said:
        assert checkpoint.restore(m, data)
    assert said == []
    s = m.requests.series[("chat", "vllm", "m", "")]
    assert (s.requests, s.errors, s.finish) == ([4, 1, 0], {}, {})


# each part of the snapshot, and a value of it that cannot be read back
DAMAGE = {
    "limiters": "x",
    "stats": [[["vllm", "m", ""], {"running": "lots"}]],
    "http": [[["vllm", "GET", "/", "200"], "many"]],
    "logs": [[["vllm", "ERROR"], "many"]],
    "server_errors": [[["vllm", "oom"], "many"]],
    "prompt_tokens": [[["vllm", "m", ""], ["many", 1]]],
    "lines": [[["stdin", "record"], "many"]],
    "bytes": {"stdin": "many"},
    "startup": {"vllm": {}},
    "slo": "x",
    "tenants": [[["acme"], [1, 2, 3, 4, 5, 6, 7, 8]]],
}


@pytest.mark.parametrize("part", list(DAMAGE))
def test_a_damaged_part_is_named_in_the_log(part: str) -> None:
    """One damaged part: the one warning names it (and why); the request counts still come back."""
    data = _through_json(_busy())
    data[part] = DAMAGE[part]
    m = LLMMetrics()
    with _warnings() as said:
        assert checkpoint.restore(m, data)
    assert len(said) == 1
    assert said[0].startswith(f"saved metric state: 1 damaged part(s) left out, the rest restored: {part} (")
    assert m.requests.series[("chat", "vllm", "m", "")].requests == [1, 2, 0]


def test_the_log_says_why_a_part_was_left_out() -> None:
    """The reason is the exception's type and text: a gauge saved as a word is not a number."""
    data = _through_json(_busy())
    data["stats"] = DAMAGE["stats"]
    data["requests"][0]["n"] = None
    with _warnings() as said:
        checkpoint.restore(LLMMetrics(), data)
    assert said == ["saved metric state: 2 damaged part(s) left out, the rest restored: "
                    "requests[0] (TypeError: 'NoneType' object is not iterable); "
                    "stats (ValueError: not a number: 'lots')"]


def test_a_counter_key_with_labels_missing_is_damage() -> None:
    """An HTTP counter saved with three of its four labels: the part is left out, said so."""
    data = _through_json(_busy())
    data["http"] = [[["vllm", "GET", "/"], 5]]
    m = LLMMetrics()
    with _warnings() as said:
        checkpoint.restore(m, data)
    assert said == ["saved metric state: 1 damaged part(s) left out, the rest restored: http (ValueError: short key)"]
    assert m.engine.http == {}


def test_many_damaged_parts_are_counted_and_the_first_five_named() -> None:
    """Seven damaged parts: the line counts 7 and names the first five in restore order, so it stays short."""
    data = _through_json(_busy())
    for part in ("limiters", "stats", "http", "logs", "server_errors", "prompt_tokens", "lines"):
        data[part] = DAMAGE[part]
    with _warnings() as said:
        checkpoint.restore(LLMMetrics(), data)
    assert len(said) == 1
    head, named = said[0].split("restored: ", 1)
    assert head == "saved metric state: 7 damaged part(s) left out, the rest "
    assert [n.split(" (")[0] for n in named.split("; ")] == ["limiters", "stats", "http", "logs", "server_errors"]


def test_an_unknown_layout_is_refused_with_one_line() -> None:
    m = LLMMetrics()
    with _warnings() as said:
        assert not checkpoint.restore(m, {"layout": 2, "requests": []})
    assert said == ["saved metric state has an unknown layout; counters start from zero"]


def _series(**hists: Any) -> dict[str, Any]:
    return {"k": ["chat", "vllm", "m", ""], "n": [5, 0, 0], "d": {}, **hists}


def test_histograms_with_other_bounds_are_counted_as_dropped() -> None:
    """Two duration histograms and a TTFT one saved with other bounds: "3 ... dropped", and the
    request counts and the TPOT histogram (bounds as in use) still come back."""
    other = {"b": [1.0, 2.0], "c": [1, 0, 0], "s": 0.5}
    tpot = {"b": list(LLMMetrics().requests.hist_bounds("tpot")), "c": [0] * 14, "s": 0.0}
    tpot["c"][2] = 1
    data = {"layout": 1, "requests": [_series(d={"": other, "timeout": other}, ttft=other, tpot=tpot)]}
    m = LLMMetrics()
    with _warnings() as said:
        assert checkpoint.restore(m, data)
    assert said == ["3 saved histograms had other bucket bounds and were dropped"]
    s = m.requests.series[("chat", "vllm", "m", "")]
    assert s.requests == [5, 0, 0] and s.duration == {} and s.ttft is None
    assert s.tpot is not None and s.tpot.counts[2] == 1


def test_a_histogram_saved_without_bounds_is_dropped_not_its_series() -> None:
    data = {"layout": 1, "requests": [_series(d={"": {"c": [1], "s": 0.1}})]}
    m = LLMMetrics()
    with _warnings() as said:
        assert checkpoint.restore(m, data)
    assert said == ["1 saved histograms had other bucket bounds and were dropped"]
    assert m.requests.series[("chat", "vllm", "m", "")].requests == [5, 0, 0]


def test_series_saved_before_the_adapter_label_come_back_with_no_adapter() -> None:
    """With one extra label (`team`): a series saved before `llm_adapter` existed (operation,
    provider, model, team) gets an empty adapter put before the team; series saved with another
    number of extra labels are dropped and counted."""
    m = LLMMetrics()
    m.requests.set_extra_labels(("team",))
    old = {"k": ["chat", "vllm", "m", "blue"], "n": [2, 0, 0], "d": {}}
    now = {"k": ["chat", "vllm", "m", "lora1", "red"], "n": [3, 0, 0], "d": {}}
    no_team = [{"k": ["chat", "vllm", "m"], "n": [1, 0, 0], "d": {}},
               {"k": ["chat", "vllm", "m", "", "red", "x"], "n": [1, 0, 0], "d": {}}]
    with _warnings() as said:
        assert checkpoint.restore(m, {"layout": 1, "requests": [old, now, *no_team]})
    assert {k: s.requests for k, s in m.requests.series.items()} == {
        ("chat", "vllm", "m", "", "blue"): [2, 0, 0],
        ("chat", "vllm", "m", "lora1", "red"): [3, 0, 0],
    }
    assert said == ["2 saved request series had other extra labels (--config) and were dropped"]


def test_a_restored_ttft_histogram_keeps_taking_exemplars() -> None:
    """After a restart the next request's id is still shown as the TTFT bucket's exemplar."""
    a = LLMMetrics()
    a.apply(_req(ttft_s=0.03, request_id="before"))
    b = LLMMetrics()
    checkpoint.restore(b, _through_json(a))
    b.apply(_req(ttft_s=0.3, request_id="after"))
    fam = next(f for f in b.collect() if f.name == "gen_ai_server_time_to_first_token_seconds")
    ex = {s.labels["le"]: s.exemplar.labels["request_id"] for s in fam.samples if s.exemplar is not None}
    assert ex == {"0.5": "after"}


def test_series_saved_under_renamed_extra_labels_are_dropped() -> None:
    """`extra_labels: [team]` renamed to `[region]` keeps the count: the saved values (team names)
    must not come back as regions. Saved under the same names, they come back."""
    a = LLMMetrics()
    a.requests.set_extra_labels(("team",))
    a.apply(_req(extra_labels={"team": "blue"}))
    a.apply(_req(extra_labels={"team": "red"}))
    saved = _through_json(a)
    assert saved["extra_labels"] == ["team"] and len(saved["requests"]) == 2
    renamed = LLMMetrics()
    renamed.requests.set_extra_labels(("region",))
    with _warnings() as said:
        assert checkpoint.restore(renamed, saved)
    assert renamed.requests.series == {}
    assert said == ["2 saved request series had other extra labels (--config) and were dropped"]
    same = LLMMetrics()
    same.requests.set_extra_labels(("team",))
    assert checkpoint.restore(same, saved)
    assert {k: s.requests for k, s in same.requests.series.items()} == {("chat", "vllm", "m", "", "blue"): [1, 0, 0],
                                                                        ("chat", "vllm", "m", "", "red"): [1, 0, 0]}
