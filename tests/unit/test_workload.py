"""The benchmark's workload generator and its independent count: deterministic, the documented
mix, a count that is right on lines worked out by hand, and the pipeline agreeing with it per shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bench import inputs, workload
from llm_exporter.pipeline import Pipeline
from tests.helpers import ROOT, assert_matches_count, parse_metrics, total


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    a = list(workload.generate(300, 5))
    assert a == list(workload.generate(300, 5))
    assert a != list(workload.generate(300, 6))
    assert len(a) == 300 and all(x.endswith("\n") and x.count("\n") == 1 for x in a)


def test_mix_of_shapes_errors_and_plain_text() -> None:
    """Every shape is there with its own duration field; about 5 % of the lines are not JSON."""
    lines = list(workload.generate(20000, 1))
    text = [x for x in lines if not x.startswith("{")]
    assert 0.04 < len(text) / len(lines) < 0.06
    objs = [json.loads(x) for x in lines if x.startswith("{")]
    by_field = {f: sum(1 for o in objs if f in o) for f in ("latency_ms", "total_time_ms", "response_time_ms",
                                                             "duration_ms", "src_lang", "task_type", "service")}
    assert all(n > 1000 for n in by_field.values()), by_field
    failed = sum(1 for o in objs if o.get("level") == "ERROR" or o.get("status") == "error")
    assert 0.02 < failed / len(objs) < 0.06
    assert any(o.get("status") == "aborted" for o in objs)


def test_one_shape_only() -> None:
    objs = [json.loads(x) for x in workload.generate(2000, 2, ["translation"]) if x.startswith("{")]
    assert objs and all("src_lang" in o for o in objs)
    with pytest.raises(ValueError):
        list(workload.generate(10, 1, ["nonesuch"]))


def test_count_of_lines_worked_out_by_hand() -> None:
    data = (
        '{"model": "m", "path": "/v1/chat/completions", "total_time_ms": 1500, "queue_time_ms": 500,'
        ' "inference_time_ms": 1000, "ttft_ms": 200, "input_tokens": 10, "output_tokens": 4,'
        ' "finish_reason": "stop", "status": "success"}\n'
        '{"model": "m", "path": "/v1/chat/completions", "status": "error", "error_type": "TimeoutError",'
        ' "total_time_ms": 30000, "queue_time_ms": 29000, "ttft_ms": 5}\n'
        '{"model": "m", "path": "/v1/chat/completions", "status": "aborted", "total_time_ms": 250}\n'
        '{"service": "s", "level": "ERROR", "error_type": "ContextWindowExceeded", "duration_ms": 2.5}\n'
        '{"task_type": "sentiment", "response_time_ms": 400}\n'
        'INFO:     10.0.0.2:5000 - "POST /v1/completions HTTP/1.1" 422 Unprocessable Entity\n'
        "model loaded\n"
    )
    c = workload.count(data)
    assert (c.lines, c.text) == (7, 1)
    assert c.access == {("POST", "/v1/completions", "422"): 1}
    assert c.requests == {("chat", "m", "success"): 1, ("chat", "m", "error"): 1, ("chat", "m", "aborted"): 1,
                          ("", "s", "error"): 1, ("sentiment", "", "success"): 1}
    assert c.errors == {("chat", "m", "timeout"): 1, ("", "s", "ContextWindowExceeded"): 1}
    assert c.finish == {("chat", "m", "stop"): 1}
    assert c.duration_s[("chat", "m")] == pytest.approx(1.5 + 30 + 0.25)
    assert c.duration_n[("chat", "m")] == 3 and c.duration_s[("", "s")] == pytest.approx(0.0025)
    assert (c.ttft_s, c.ttft_n) == (pytest.approx(0.2), 1)  # the failed request's ttft is not one
    assert (c.queue_s, c.queue_n) == (pytest.approx(29.5), 2)
    assert (c.inference_s, c.inference_n) == (pytest.approx(1.0), 1)
    assert (c.tokens_in[("chat", "m")], c.tokens_out[("chat", "m")]) == (10, 4)


@pytest.mark.parametrize("shape", workload.SHAPES)
def test_pipeline_agrees_with_the_count_per_shape(pipeline: Pipeline, registry: CollectorRegistry,
                                                 shape: str) -> None:
    """Each shape alone (and its text lines) through the pipeline: every figure equals the count."""
    data = "".join(workload.generate(3000, 9, [shape])).encode()
    want = workload.count(data)
    pipeline.process("stdin", data.splitlines())
    s = parse_metrics(generate_latest(registry).decode())
    assert want.requests and want.access and want.text
    assert bool(want.finish) == (shape == "reasoning")  # only the reasoning model logs finish reasons
    assert bool(want.errors) == (shape != "cpu")  # the small CPU model logs no failures
    assert_matches_count(s, want)
    assert total(s, "llm_exporter_lines_total", outcome="invalid") == 0


def test_cli_writes_lines_and_prints_the_count(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.workload", "400", "3", "--shape", "chat", "--shape", "cpu"],
                         capture_output=True, check=True, cwd=ROOT, timeout=60).stdout
    assert out.decode() == "".join(workload.generate(400, 3, ["chat", "cpu"]))
    (tmp_path / "app.log").write_bytes(out)
    counted = json.loads(subprocess.run([sys.executable, "-m", "bench.workload", "--count", str(tmp_path / "app.log")],
                                        capture_output=True, check=True, cwd=ROOT, timeout=60).stdout)
    assert counted["lines"] == 400 and counted == workload.count(out).as_json()
    assert subprocess.run([sys.executable, "-m", "bench.workload"], capture_output=True, cwd=ROOT,
                          timeout=60).returncode == 2


def test_request_stream_cycles_its_ids() -> None:
    stream = inputs.RequestStream(distinct=7)
    block = stream.chunk(0, 30).splitlines()
    assert len(block) == 30
    assert len({json.loads(x)["request_id"] for x in block}) == 7
