"""The pipeline per stream: workload labels of a followed file, a new `--config` on streams already
read, the advice on missing metrics, and how an adapter's failure is logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter import adapters
from llm_exporter.adapters.base import Adapter
from llm_exporter.adapters.vllm import ACCESS_BEFORE_HINT
from llm_exporter.config import load_config
from llm_exporter.hints import HINTS
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from tests.helpers import parse_metrics, total

# vLLM's uvicorn access lines (tests/fixtures/samples/vllm.log): one request each
OK = b'(APIServer pid=1) INFO:     172.18.0.1:36432 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
BAD = b'(APIServer pid=1) INFO:     172.18.0.1:36432 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request'
# an application's JSON request line
APP = b'{"request_id":"r1","model":"m","status":"success","duration_ms":120,"output_tokens":7,"src_lang":"en"}'

POD0 = "/var/log/pods/llm_vllm-0_0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/vllm/0.log"
POD1 = "/var/log/pods/llm_vllm-1_9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4/vllm/0.log.20250601-101500"
OTHER_FILE = "/srv/logs/app.log"


def samples(m: LLMMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return parse_metrics(generate_latest(reg).decode())


def file_pipeline(config: Any = None) -> tuple[LLMMetrics, Pipeline]:
    """What `--file-labels` sets up: request series with the workload labels, streams named by path."""
    m = LLMMetrics()
    m.file_labels = True
    p = Pipeline(m, config=config)
    p.file_labels = True
    p.stream_names.update({"s0": POD0, "s1": POD1, "s2": OTHER_FILE})
    return m, p


def test_each_request_carries_the_workload_its_files_path_names() -> None:
    m, p = file_pipeline()
    p.process("files", [OK, BAD, APP], stream="s0")  # two records from one line, then one record alone
    p.process("files", [OK], stream="s1")
    p.process("files", [OK, APP], stream="s2")
    s = samples(m)
    pod0 = {"k8s_namespace_name": "llm", "k8s_pod_name": "vllm-0", "k8s_container_name": "vllm"}
    assert total(s, "llm_requests_total", **pod0) == 3
    assert total(s, "llm_requests_total", outcome="error", **pod0) == 1
    assert total(s, "llm_requests_total", gen_ai_request_model="m", **pod0) == 1
    assert total(s, "llm_requests_total", k8s_namespace_name="llm", k8s_pod_name="vllm-1") == 1
    # a path of no known layout: the labels are there, empty
    assert total(s, "llm_requests_total", k8s_namespace_name="", k8s_pod_name="", k8s_container_name="") == 2
    assert total(s, "llm_requests_total") == 6


def test_workload_labels_join_the_labels_a_config_reads_from_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("extra_labels: [src_lang]\n")
    m, p = file_pipeline(load_config(cfg))
    p.process("files", [APP, APP.replace(b'"en"', b'"de"'), OK], stream="s0")
    s = samples(m)
    assert total(s, "llm_requests_total", src_lang="en", k8s_pod_name="vllm-0") == 1
    assert total(s, "llm_requests_total", src_lang="de", k8s_pod_name="vllm-0") == 1
    assert total(s, "llm_requests_total", src_lang="", k8s_pod_name="vllm-0") == 1


class _Broken(Adapter):
    """Raises on `boom`, hands out a record of no known kind on `bad`, and no record at all on `str`
    and `nokind`."""

    name = "broken"

    def parse_text(self, text: str) -> Any:
        if text == "boom":
            raise RuntimeError("adapter bug")
        if text == "bad":
            return {"kind": "no_such_kind"}
        if text == "str":
            return "not a record of any kind"
        if text == "nokind":
            return {"provider": "x", "level": "INFO"}
        return {"kind": "log", "provider": "x", "level": "INFO"}


def test_an_adapters_failure_is_logged_once_by_name_and_a_bad_record_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(adapters.ADAPTERS, "broken", f"{__name__}:_Broken")
    p = Pipeline(LLMMetrics(), fmt="broken")
    with caplog.at_level(logging.ERROR, logger="llm_exporter.pipeline"):
        p.process("t", [b"boom", b"ok", b"boom", b"bad", b"bad"])
        p.process("t", [b"boom", b"bad"])
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("ERROR", "adapter broken failed on a line; counted as invalid/adapter_error", True),
        ("ERROR", "adapter (record) failed on a line; counted as invalid/adapter_error", True),
    ]
    assert [(r.lineno, r.reason) for r in p.rejects] == [
        (1, "adapter_error"), (3, "adapter_error"), (4, "adapter_error"), (5, "adapter_error"),
        (6, "adapter_error"), (7, "adapter_error")]


def test_an_adapter_handing_out_no_record_is_an_adapter_error_on_a_labelled_stream_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(adapters.ADAPTERS, "broken", f"{__name__}:_Broken")
    m = LLMMetrics()
    m.file_labels = True
    p = Pipeline(m, fmt="broken")
    p.file_labels = True
    p.stream_names["s0"] = POD0
    p.process("files", [b"str", b"nokind", b"ok"], stream="s0")
    assert [(r.lineno, r.outcome, r.reason) for r in p.rejects] == [(1, "invalid", "adapter_error"),
                                                                   (2, "invalid", "adapter_error")]
    assert m.engine.logs == {("x", "INFO"): 1}


def test_a_new_config_applies_to_streams_already_read(tmp_path: Path) -> None:
    """A reload's mappings read the next lines of every stream, not only of streams seen after it."""
    line = b'{"kind":"llm_call","meta":{"id":"r1","model":"m1"},"timing":{"total":1500}}'
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("t", [line])
    assert total(samples(m), "llm_requests_total") == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mappings:\n  - name: nested\n    match: {kind: llm_call}\n    fields:\n"
                   "      request_id: meta.id\n      model: meta.model\n"
                   "      duration: {path: timing.total, unit: ms}\n")
    p.reconfigure(load_config(cfg))
    p.process("t", [line])
    s = samples(m)
    assert total(s, "llm_requests_total", gen_ai_request_model="m1") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_request_model="m1") == 1.5


def test_advice_on_missing_metrics_is_given_once_the_log_shows_it_applies() -> None:
    """vLLM at its default settings writes only access lines: after a few, the advice to turn on its
    request log is given, once."""
    p = Pipeline(LLMMetrics(), fmt="vllm")
    p.process("t", [OK] * (ACCESS_BEFORE_HINT - 1))
    assert p.hints() == []
    p.process("t", [OK] * (ACCESS_BEFORE_HINT + 2))
    assert p.hints() == [HINTS["vllm_access_log_only"]]


# a llama.cpp timing block (tests/fixtures/samples/llamacpp.log): a request is complete only when
# the next line comes, or at the end of the stream (or an idle flush)
PROMPT = b"prompt eval time =    5093.47 ms /  1360 tokens (    3.75 ms per token,   267.01 tokens per second)"
EVAL = b"       eval time =     319.58 ms /    10 tokens (   31.96 ms per token,    31.29 tokens per second)"
# the same with an eval time no request has (3,170 years per token): a value no line may carry
EVAL_ABSURD = EVAL.replace(b"    319.58 ms", b"999999999999999.00 ms")


def test_a_request_completed_at_end_of_stream_is_counted_once() -> None:
    m = LLMMetrics()
    p = Pipeline(m, fmt="llamacpp")
    p.process("t", [PROMPT, EVAL])
    p.flush()
    p.flush()
    s = samples(m)
    assert total(s, "llm_requests_total", outcome="success") == 1
    assert total(s, "gen_ai_server_time_to_first_token_seconds_sum") == pytest.approx(5.09347, rel=1e-12)
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 1360
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 10
    assert total(s, "gen_ai_server_time_per_output_token_seconds_sum") == pytest.approx(0.031958, rel=1e-12)


def test_a_record_handed_out_at_end_of_stream_is_checked_like_a_lines() -> None:
    """A value no line may carry is not applied at a flush either (a histogram sum stays finite)."""
    m = LLMMetrics()
    p = Pipeline(m, fmt="llamacpp")
    p.process("t", [PROMPT, EVAL_ABSURD])
    p.flush()
    s = samples(m)
    assert total(s, "llm_requests_total") == 0
    assert total(s, "gen_ai_server_time_per_output_token_seconds_count") == 0


class _BrokenFlush(_Broken):
    """Holds something that is no record until the end of the stream."""

    name = "broken-flush"

    def flush(self) -> list[Any]:
        return [{"kind": "log", "provider": "x", "level": "ERROR"}, "junk"]


def test_an_adapter_handing_out_no_record_at_end_of_stream_is_logged_and_nothing_applied(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(adapters.ADAPTERS, "broken-flush", f"{__name__}:_BrokenFlush")
    m = LLMMetrics()
    p = Pipeline(m, fmt="broken-flush")
    p.process("t", [b"ok"])
    with caplog.at_level(logging.ERROR, logger="llm_exporter.pipeline"):
        p.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "adapter broken-flush failed on a line; counted as invalid/adapter_error"]
    assert m.engine.logs == {("x", "INFO"): 1}


def test_a_request_still_held_at_end_of_its_file_carries_the_workload_too() -> None:
    """A CRI fragment held when the file ends is a request at the flush, with its pod's labels."""
    m, p = file_pipeline()
    p.process("files", [b"2025-06-01T10:00:00.1Z stdout P " + APP], stream="s0")
    assert total(samples(m), "llm_requests_total") == 0
    p.flush()
    s = samples(m)
    assert total(s, "llm_requests_total", k8s_namespace_name="llm", k8s_pod_name="vllm-0",
                 k8s_container_name="vllm") == 1
    assert total(s, "llm_requests_total") == 1
