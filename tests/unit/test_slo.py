"""Service level objectives: requests judged good, bad or unjudged per objective, worked out by
hand for each line below; the `slo:` section's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.config import load_config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import ConfigError
from tests.helpers import parse_metrics, total

CONFIG = """\
slo:
  - name: chat
    model: "llama-*"
    ttft: 500ms
    tpot: 0.05
    target: 99%
  - name: all
    duration: 2s
"""

# (line, chat result, all result); see the module docstring of llm_exporter.metrics.slo for the rules
LINES = [
    # tpot (1.4 - 0.4) / 20 = 0.05: exactly on the threshold is good (le)
    ({"model": "llama-8b", "status": "success", "ttft_ms": 400, "duration_ms": 1400, "output_tokens": 21},
     "good", "good"),
    ({"model": "llama-8b", "status": "success", "ttft_ms": 600, "duration_ms": 1000, "output_tokens": 5},
     "bad", "good"),  # ttft over
    ({"model": "llama-8b", "status": "success", "duration_ms": 3000, "output_tokens": 10},
     "unjudged", "bad"),  # no ttft, so no tpot either; duration over
    ({"model": "llama-8b", "status": "error", "duration_ms": 100},
     "bad", "bad"),  # failed
    ({"model": "mistral-7b", "status": "success", "ttft_ms": 100, "duration_ms": 500, "output_tokens": 3},
     None, "good"),  # not a llama
    ({"model": "llama-8b", "status": "aborted", "ttft_ms": 200, "duration_ms": 300, "output_tokens": 2},
     "bad", "unjudged"),  # tpot (0.3 - 0.2) / 1 = 0.1 over; an aborted request within its threshold: unjudged
    ({"model": "llama-70b", "status": "success", "ttft_ms": 500, "tpot_ms": 40, "duration_ms": 4460,
      "output_tokens": 100}, "good", "bad"),
    ({"model": "mistral-7b", "status": "success", "output_tokens": 7}, None, "unjudged"),  # no timings
]


def run(tmp_path: Path, config: str = CONFIG) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    m = LLMMetrics()
    p = Pipeline(m, config=load_config(path))
    p.process("t", [json.dumps(line).encode() for line, _, _ in LINES])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return parse_metrics(generate_latest(reg).decode())


def expected() -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int]]:
    """An independent count of the table above."""
    req: dict[tuple[str, str, str], int] = {}
    tok: dict[tuple[str, str, str], int] = {}
    for line, chat, every in LINES:
        for slo, result in (("chat", chat), ("all", every)):
            if result is None:
                continue
            k = (slo, str(line["model"]), result)
            req[k] = req.get(k, 0) + 1
            if "output_tokens" in line:
                tok[k] = tok.get(k, 0) + int(line["output_tokens"])  # type: ignore[call-overload]
    return req, tok


def test_requests_and_tokens_by_result(tmp_path: Path) -> None:
    s = run(tmp_path)
    req, tok = expected()
    assert req[("chat", "llama-8b", "bad")] == 3 and req[("all", "mistral-7b", "unjudged")] == 1
    got_req = {(dict(lb)["slo"], dict(lb)["gen_ai_request_model"], dict(lb)["result"]): v
               for (n, lb), v in s.items() if n == "llm_slo_requests_total" and v}
    got_tok = {(dict(lb)["slo"], dict(lb)["gen_ai_request_model"], dict(lb)["result"]): v
               for (n, lb), v in s.items() if n == "llm_slo_output_tokens_total" and v}
    assert got_req == req
    assert got_tok == tok
    # every result of a judged (slo, model) is there, zeros included, so ratios never miss a side
    assert total(s, "llm_slo_requests_total", slo="chat", gen_ai_request_model="llama-70b", result="bad") == 0
    assert ("llm_slo_requests_total", (("gen_ai_request_model", "llama-70b"), ("result", "bad"),
                                       ("slo", "chat"))) in s
    assert total(s, "llm_slo_target_ratio", slo="chat") == 0.99
    assert total(s, "llm_slo_target_ratio", slo="all") == 0.99  # the default
    assert total(s, "llm_slo_threshold_seconds", slo="chat", field="ttft") == 0.5
    assert total(s, "llm_slo_threshold_seconds", slo="all", field="duration") == 2.0
    # the request families themselves are unchanged by the objectives
    assert total(s, "llm_requests_total") == len(LINES)


def test_no_objectives_no_families(tmp_path: Path) -> None:
    s = run(tmp_path, "extra_labels: []\n")
    assert not [k for k in s if k[0].startswith("llm_slo_")]
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LLMMetrics())  # type: ignore[arg-type]
    assert "llm_slo" not in generate_latest(reg).decode()  # not even a HELP line


def test_objectives_show_their_targets_before_any_request(tmp_path: Path) -> None:
    """The burn-rate rules read the target and thresholds from the start, requests or not."""
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    m = LLMMetrics()
    m.configure(load_config(path))
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    s = parse_metrics(generate_latest(reg).decode())
    assert s[("llm_slo_target_ratio", (("slo", "chat"),))] == 0.99
    assert s[("llm_slo_threshold_seconds", (("field", "duration"), ("slo", "all")))] == 2.0


def test_reload_keeps_unchanged_objectives_and_resets_changed_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    m = LLMMetrics()
    p = Pipeline(m, config=load_config(path))
    p.process("t", [json.dumps(line).encode() for line, _, _ in LINES])
    path.write_text(CONFIG.replace("duration: 2s", "duration: 3s"))
    p.reconfigure(load_config(path))
    with m.lock:
        assert m.slo.requests[("chat", "llama-8b")] == [1, 3, 1]  # unchanged: kept
        assert ("all", "llama-8b") not in m.slo.requests  # changed threshold: starts over
        # output tokens alike: chat's llama-8b lines, good 21, bad 5 + 2, unjudged 10 (see LINES)
        assert m.slo.tokens[("chat", "llama-8b")] == [21, 7, 10]
        assert ("all", "llama-8b") not in m.slo.tokens


@pytest.mark.parametrize(("text", "message"), [
    ("slo: [{name: x}]", "needs at least one of ttft, tpot, duration, queue"),
    ("slo: [{name: x, ttft: fast}]", "slo[0].ttft: expected a positive number of seconds or a duration"),
    ("slo: [{name: x, ttft: -1}]", "slo[0].ttft: expected a positive number"),
    ("slo: [{name: x, ttft: 1, target: 1}]", "slo[0].target"),
    ("slo: [{name: x, ttft: 1, target: 120%}]", "slo[0].target"),
    ("slo: [{name: x, ttft: 1}, {name: x, tpot: 1}]", "slo names must be unique: x"),
    ("slo: [{name: 'a b', ttft: 1}]", "slo name must be"),
    ("slo: [{name: x, ttft: 1, latency: 2}]", "slo[0].latency: unknown key"),
    ("buckets: {ttft: [1, 0.5]}", "buckets.ttft: bucket bounds must be strictly increasing"),
    ("buckets: {tokens: [1]}", "buckets.tokens: unknown key"),
])
def test_config_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)
    assert "\n" not in str(e.value) and ":1:" in str(e.value)


def test_thresholds_and_targets_in_any_unit(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("slo: [{name: x, ttft: 1500ms, tpot: 0.02, duration: 1m, queue: '250us', target: '99.9%'}]\n")
    o = load_config(path).slo[0]
    assert o.thresholds == {"ttft": 1.5, "tpot": 0.02, "duration": 60.0, "queue": 0.00025}
    assert o.target == pytest.approx(0.999)
    assert o.model == []


def les(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> list[str]:
    return sorted({dict(lb)["le"] for (n, lb) in s if n == name}, key=lambda x: float(x))


def test_a_threshold_is_a_bucket_edge_and_the_slo_agrees_with_the_histogram(tmp_path: Path) -> None:
    """ttft: 450ms puts a bucket at 0.45 s (the built-in TTFT bounds jump from 0.25 to 0.5): the
    successful requests in `le="0.45"` are exactly the objective's good ones. Of LINES, the
    successes with a TTFT are 0.4, 0.6, 0.1 and 0.5 s: two within 450 ms."""
    s = run(tmp_path, "slo: [{name: ttft, ttft: 450ms}]\n")
    assert "0.45" in les(s, "gen_ai_server_time_to_first_token_seconds_bucket")
    within = total(s, "gen_ai_server_time_to_first_token_seconds_bucket", le="0.45")
    assert within == 2
    assert total(s, "llm_slo_requests_total", slo="ttft", result="good") == within
    # bad: the 0.6 s and 0.5 s successes and the failed request (the aborted one, 0.2 s, is within:
    # unjudged)
    assert total(s, "llm_slo_requests_total", slo="ttft", result="bad") == 3


def test_buckets_set_the_bounds_with_the_thresholds_added(tmp_path: Path) -> None:
    s = run(tmp_path, "buckets: {duration: [0.5, 1, 5], queue: [0.1]}\nslo: [{name: x, duration: 2s}]\n")
    assert les(s, "gen_ai_server_request_duration_seconds_bucket") == ["0.5", "1", "2", "5", "+Inf"]
    # TTFT keeps the built-in bounds (nothing set them)
    assert les(s, "gen_ai_server_time_to_first_token_seconds_bucket")[:3] == ["0.001", "0.005", "0.01"]
    # every request with a duration is in +Inf; 1.4 s and 1.0 s and below within 2 s (lines 1, 2, 4, 5, 6)
    assert total(s, "gen_ai_server_request_duration_seconds_bucket", le="+Inf") == 7
    assert total(s, "gen_ai_server_request_duration_seconds_bucket", le="2") == 5
    # the page's window keeps its own, built-in bounds: a quantile still comes out
    m = LLMMetrics()
    path = tmp_path / "d.yaml"
    path.write_text("buckets: {duration: [0.5, 1, 5]}\n")
    p = Pipeline(m, config=load_config(path))
    p.process("t", [json.dumps(line).encode() for line, _, _ in LINES])
    assert m.summary()["p50_seconds"] is not None


def test_changed_bounds_start_the_series_over_and_the_checkpoint_follows(tmp_path: Path) -> None:
    from llm_exporter.metrics import checkpoint

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("slo: [{name: x, ttft: 450ms}]\n")
    b.write_text("slo: [{name: x, ttft: 300ms}]\n")
    m = LLMMetrics()
    p = Pipeline(m, config=load_config(a))
    p.process("t", [json.dumps(line).encode() for line, _, _ in LINES])
    with m.lock:
        saved = checkpoint.snapshot(m)
    # a restart with the same file: every histogram comes back
    m2 = LLMMetrics()
    m2.configure(load_config(a))
    assert checkpoint.restore(m2, saved)
    assert sum(sum(s.ttft.counts) for s in m2.requests.series.values() if s.ttft is not None) == 4
    # a restart with another threshold: the TTFT histograms saved with 0.45 are dropped, not misread
    m3 = LLMMetrics()
    m3.configure(load_config(b))
    assert checkpoint.restore(m3, saved)
    assert all(s.ttft is None for s in m3.requests.series.values())
    # a reload with other bounds starts the request series over
    p.reconfigure(load_config(b))
    with m.lock:
        assert m.requests.series == {}
        assert m.requests.bounds["ttft"][:9] == (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25)
        assert 0.3 in m.requests.bounds["ttft"] and 0.45 not in m.requests.bounds["ttft"]


def test_checkpoint_keeps_the_counts_of_objectives_defined_the_same(tmp_path: Path) -> None:
    """--state-dir: the SLO counts survive a restart for objectives whose definition is the same;
    one whose threshold changed starts from zero (its old counts were judged differently)."""
    from llm_exporter.metrics import checkpoint

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(CONFIG)
    b.write_text(CONFIG.replace("duration: 2s", "duration: 3s"))
    m = LLMMetrics()
    Pipeline(m, config=load_config(a)).process("t", [json.dumps(line).encode() for line, _, _ in LINES])
    with m.lock:
        saved = json.loads(json.dumps(checkpoint.snapshot(m)))
    m2 = LLMMetrics()
    m2.configure(load_config(a))
    assert checkpoint.restore(m2, saved)
    assert m2.slo.requests == m.slo.requests and m2.slo.tokens == m.slo.tokens
    m3 = LLMMetrics()
    m3.configure(load_config(b))
    assert checkpoint.restore(m3, saved)
    assert {k for k in m3.slo.requests} == {k for k in m.slo.requests if k[0] == "chat"}
