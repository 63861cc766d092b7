"""The application JSON adapter: four common application shapes and the canonical field names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_exporter.adapters import app_json
from llm_exporter.adapters.app_json import AppJsonAdapter
from llm_exporter.adapters.base import Invalid
from llm_exporter.config import load_config
from llm_exporter.records import validate_record


@pytest.fixture(autouse=True)
def fresh_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads as a freshly started exporter does: no key shape planned yet. The plans are
    cached per key shape for the whole process, so without this a shape another test read first
    would be answered from its cached plan and the test would not see how the plan is made."""
    monkeypatch.setattr(AppJsonAdapter, "_shapes", {})
    monkeypatch.setattr(AppJsonAdapter, "_plans", {})


def parse(obj: dict[str, Any] | bytes) -> Any:
    line = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    rec = AppJsonAdapter().parse_json(line, None)
    if rec is not None:
        validate_record(rec)  # whatever the adapter builds is a valid canonical record
    return rec


def test_reads_the_7b_chat_shape() -> None:
    """total/queue/inference in ms, tokens, status and path become a chat request."""
    rec = parse({"timestamp": "2026-11-21T10:00:00.000Z", "request_id": "req_1", "method": "POST",
                 "path": "/v1/chat/completions", "model": "Qwen2.5-7B", "input_tokens": 1855,
                 "output_tokens": 389, "total_time_ms": 7965, "queue_time_ms": 286, "inference_time_ms": 7679,
                 "gpu_memory_mb": 18500, "status": "success"})
    assert rec == {"kind": "request", "provider": "app", "duration_s": 7.965, "queue_s": 0.286,
                   "inference_s": 7.679, "input_tokens": 1855, "output_tokens": 389, "request_id": "req_1",
                   "model": "Qwen2.5-7B", "operation": "chat", "outcome": "success", "error_type": "",
                   "prompt_tokens": 1855}


def test_reads_the_reasoning_shape_with_service_as_model() -> None:
    """duration_ms and `service` (the model's name) are understood; prompt text is never kept."""
    rec = parse({"level": "INFO", "service": "DeepSeek-R1-Distill-Qwen-1.5B", "request_id": "r2",
                 "prompt_truncated": "Solve: xxxx", "response_truncated": "42", "duration_ms": 1234.5,
                 "input_tokens": 10, "output_tokens": 20, "throughput_tps": 16.2})
    assert rec["model"] == "DeepSeek-R1-Distill-Qwen-1.5B"
    assert rec["duration_s"] == pytest.approx(1.2345)
    assert rec["outcome"] == "success"
    assert "Solve" not in repr(rec)


def test_reads_the_translation_shape() -> None:
    """latency_ms with model; the language fields are not labels unless configured."""
    rec = parse({"level": "INFO", "message": "translation_success", "input_text": "Hello", "src_lang": "en",
                 "tgt_lang": "zh", "output_text": "你好", "input_tokens": 5, "output_tokens": 7,
                 "latency_ms": 80, "model": "HY-MT1.5-1.8B"})
    assert (rec["duration_s"], rec["model"], rec["operation"]) == (0.08, "HY-MT1.5-1.8B", "")
    assert "src_lang" not in rec


def test_reads_the_cpu_model_shape_with_task_type() -> None:
    """task_type is the operation and response_time_ms the duration."""
    rec = parse({"timestamp": "2026-11-21 10:00:01", "level": "INFO", "message": "情感分析完成",
                 "task_type": "sentiment", "request_id": "00000001", "response_time_ms": 300,
                 "cpu_usage_percent": 20.5})
    assert (rec["operation"], rec["duration_s"], rec["model"]) == ("sentiment", 0.3, "")


@pytest.mark.parametrize(("error_type", "expected"), [
    ("OutOfMemoryError", "oom"), ("TimeoutError", "timeout"), ("ValueError", "ValueError"),
    ("torch.OutOfMemoryError", "oom"), ("requests.exceptions.ReadTimeout", "timeout"),
    ("CUDA out of memory. Tried to allocate", "oom"), ("exceed_context_size_error", "validation"),
    ("Error code: 400 - {'error': {'type': 'exceed_context_size_error'}}", "validation"),
    ("something went wrong", "_OTHER"),
])
def test_error_lines_are_failed_requests_with_a_bounded_type(error_type: str, expected: str) -> None:
    """An ERROR line with error_type is a failed request; known names fold into shared classes, free
    text goes through the same classifier as the servers' error lines."""
    rec = parse({"level": "ERROR", "message": "translation_failed", "error_type": error_type,
                 "error_message": "CUDA out of memory", "model": "Qwen2.5-7B"})
    assert (rec["outcome"], rec["error_type"]) == ("error", expected)


@pytest.mark.parametrize(("status", "outcome"), [
    ("success", "success"), ("ok", "success"), ("error", "error"), ("failed", "error"),
    ("aborted", "aborted"), ("cancelled", "aborted"), (200, "success"), (500, "error"), (429, "error"),
])
def test_status_decides_the_outcome(status: Any, outcome: str) -> None:
    """`status` words and HTTP codes map to success/error/aborted."""
    rec = parse({"request_id": "x", "status": status, "latency": 1})
    assert rec["outcome"] == outcome


def test_http_429_is_overloaded() -> None:
    """A 429 logged as status is the overloaded error class."""
    assert parse({"request_id": "x", "status": 429})["error_type"] == "overloaded"


def test_units_come_from_the_name_or_the_string() -> None:
    """_s, _seconds, bare names (seconds) and duration strings all become seconds."""
    assert parse({"latency_s": 1.5})["duration_s"] == 1.5
    assert parse({"elapsed_seconds": 2})["duration_s"] == 2.0
    assert parse({"duration": 0.25})["duration_s"] == 0.25
    assert parse({"duration": "735.2ms", "ttft": "955µs"})["ttft_s"] == pytest.approx(955e-6)
    assert parse({"duration": "8m44s"})["duration_s"] == 524.0
    assert parse({"latency_us": 1500})["duration_s"] == pytest.approx(0.0015)


def test_first_accepted_name_wins() -> None:
    """When several names of one field are present, the contract's order decides."""
    rec = parse({"latency": 9, "duration": 1, "tokens_in": 3, "input_tokens": 4})
    assert (rec["duration_s"], rec["input_tokens"]) == (1.0, 4)


def test_openai_usage_object_gives_tokens() -> None:
    """usage.prompt_tokens / usage.completion_tokens, details objects possibly null."""
    rec = parse({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                 "usage": {"prompt_tokens": 11, "total_tokens": 30, "completion_tokens": 19,
                           "prompt_tokens_details": None, "completion_tokens_details": None}})
    assert (rec["input_tokens"], rec["output_tokens"], rec["request_id"]) == (11, 19, "chatcmpl-1")


def test_responses_api_usage_names() -> None:
    """usage.input_tokens / usage.output_tokens (Responses API)."""
    rec = parse({"model": "m", "usage": {"input_tokens": 5, "output_tokens": 6}})
    assert (rec["input_tokens"], rec["output_tokens"]) == (5, 6)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/chat"])
def test_operation_derived_from_path(path: str) -> None:
    """Known API paths name the operation; unknown paths give an empty operation."""
    expected = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion",
                "/v1/embeddings": "embeddings", "/api/chat": "chat"}[path]
    assert parse({"path": path, "latency": 1})["operation"] == expected
    assert parse({"path": "/users/123", "latency": 1})["operation"] == ""


@pytest.mark.parametrize("obj", [
    {"latency_ms": -5}, {"latency_ms": "abc"}, {"input_tokens": -1}, {"input_tokens": 1.5},
    {"output_tokens": "12"}, {"duration": True}, {"model": 5, "latency": 1},
])
def test_bad_values_are_invalid(obj: dict[str, Any]) -> None:
    """A known field with a bad value makes the line invalid, not a record."""
    with pytest.raises(Invalid):
        parse(obj)


@pytest.mark.parametrize("line", [
    b'{"level": "INFO", "message": "model loaded"}', b'{"status": "ok"}', b"{}", b"[1, 2]",
    b'{"level":"INFO","fields":{"message":"Starting shard"},"target":"text_generation_launcher"}',
    b"{not json",
])
def test_json_of_no_known_shape_is_not_claimed(line: bytes) -> None:
    """A JSON line that is not a request record is left to other adapters."""
    assert parse(line) is None


def test_level_error_with_a_measurement_is_a_failed_request() -> None:
    """level=ERROR on a request line marks it failed even without an error name."""
    rec = parse({"level": "ERROR", "latency_ms": 10})
    assert (rec["outcome"], rec["error_type"]) == ("error", "_OTHER")


def test_finish_reason_is_kept() -> None:
    """finish_reason/done_reason/stop_reason are carried to the record."""
    assert parse({"done_reason": "stop", "latency": 1})["finish_reason"] == "stop"


@pytest.mark.parametrize(("key", "value", "seconds"), [
    # each suffix's unit worked out by hand: the value divided by the unit's count per second
    ("duration_ns", 1_500_000_000, 1.5),
    ("latency_ns", 286_000_000, 0.286),
    ("duration_millis", 286, 286 / 1000),
    ("latency_millis", 1500, 1.5),
    ("duration_ms", 286, 286 / 1000),
    ("duration_us", 2500, 2500 / 1_000_000),
    ("duration_sec", 2.5, 2.5),
    ("elapsed_secs", 3, 3.0),
    ("response_time_seconds", 7, 7.0),
    ("total_time_s", 0.75, 0.75),
])
def test_every_name_suffix_has_its_own_unit(key: str, value: float, seconds: float) -> None:
    """_ns, _millis, _ms, _us, _sec, _secs, _seconds, _s: exact seconds, no tolerance."""
    assert parse({key: value})["duration_s"] == seconds


@pytest.mark.parametrize(("obj", "expected"), [
    # one kind of evidence alone makes a request (truths from the rule in the schema's description)
    ({"finish_reason": "length"}, {"finish_reason": "length", "outcome": "success", "error_type": ""}),
    ({"error": "TimeoutError"}, {"outcome": "error", "error_type": "timeout"}),
    ({"exception": "torch.OutOfMemoryError"}, {"outcome": "error", "error_type": "oom"}),
    ({"usage": {"prompt_tokens": 8, "total_tokens": 8}}, {"input_tokens": 8, "prompt_tokens": 8}),
    ({"status": "ok", "request_id": "r7"}, {"request_id": "r7", "outcome": "success"}),
    ({"status": 503, "trace_id": 4711}, {"request_id": "4711", "outcome": "error"}),
    # a status or an id alone is not
    ({"status": "ok"}, None),
    ({"request_id": "r7"}, None),
    ({"status": "ok", "model": "m", "level": "INFO"}, None),
    # names only Ollama's own objects carry: its adapter's line, not an application's
    ({"duration": 1.0, "eval_count": 12}, None),
    ({"total_duration": 5, "prompt_eval_duration": 3, "done_reason": "stop"}, None),
    # LiteLLM's request and spend logs (a call type with a cost) are its adapter's
    ({"call_type": "acompletion", "response_cost": 0.00012, "duration": 1.2}, None),
    ({"call_type": "aembedding", "spend": 0.00012, "duration": 1.2}, None),
    # a call type without a cost, or a cost without a call type, is an application's own line
    ({"call_type": "acompletion", "duration": 1.2}, {"duration_s": 1.2}),
    ({"spend": 0.5, "duration": 1.2}, {"duration_s": 1.2}),
    ({"response_cost": 0.5, "duration": 1.2}, {"duration_s": 1.2}),
])
def test_what_makes_a_json_line_a_request(obj: dict[str, Any], expected: dict[str, Any] | None) -> None:
    rec = parse(obj)
    if expected is None:
        assert rec is None
    else:
        assert rec is not None and rec["kind"] == "request"
        assert {k: rec.get(k) for k in expected} == expected


@pytest.mark.parametrize(("obj", "outcome"), [
    ({"levelname": "ERROR", "latency": 0.5}, ("error", "_OTHER")),  # Python logging's name
    ({"levelname": "INFO", "latency": 0.5}, ("success", "")),
    ({"level": "ERROR", "levelname": "INFO", "latency": 0.5}, ("error", "_OTHER")),  # `level` first
    ({"level": "INFO", "levelname": "ERROR", "latency": 0.5}, ("success", "")),
    ({"error_type": "ValueError", "error": "TimeoutError", "latency": 0.5}, ("error", "ValueError")),
])
def test_the_level_and_error_names_decide_the_outcome_in_order(obj: dict[str, Any],
                                                               outcome: tuple[str, str]) -> None:
    rec = parse(obj)
    assert (rec["outcome"], rec["error_type"]) == outcome


@pytest.mark.parametrize(("obj", "record"), [
    # a null duration is skipped, the next one is still read
    ({"duration": None, "ttft": 0.25, "tpot_ms": 40},
     {"ttft_s": 0.25, "tpot_s": 0.04, "model": "", "operation": "", "outcome": "success", "error_type": ""}),
    # a null model or operation is no label value; the operation then comes from the path
    ({"model": None, "operation": None, "endpoint": "/v1/embeddings", "latency_ms": 250},
     {"duration_s": 0.25, "model": "", "operation": "embeddings", "outcome": "success", "error_type": ""}),
    ({"model": None, "task_type": None, "latency_ms": 250},
     {"duration_s": 0.25, "model": "", "operation": "", "outcome": "success", "error_type": ""}),
    ({"operation": "embeddings", "path": "/v1/chat/completions", "latency": 2},
     {"duration_s": 2.0, "model": "", "operation": "embeddings", "outcome": "success", "error_type": ""}),
    # an OpenAI object type that names no operation (an Assistants run) gives none
    ({"id": "run_abc123", "object": "thread.run", "model": "gpt-4o",
      "usage": {"prompt_tokens": 123, "completion_tokens": 456, "total_tokens": 579}},
     {"request_id": "run_abc123", "input_tokens": 123, "prompt_tokens": 123, "output_tokens": 456,
      "model": "gpt-4o", "operation": "", "outcome": "success", "error_type": ""}),
    # the application's own top-level counts come before those of a usage object on the same line
    ({"input_tokens": 5, "output_tokens": 6, "usage": {"prompt_tokens": 9, "completion_tokens": 11}},
     {"input_tokens": 5, "prompt_tokens": 5, "output_tokens": 6, "model": "", "operation": "",
      "outcome": "success", "error_type": ""}),
    # Responses API usage: the cached part of the input is in input_tokens_details
    ({"id": "resp_67ccd2bed1ec8190", "object": "response", "model": "gpt-4o-2024-08-06",
      "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 12}, "output_tokens": 87,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123}},
     {"request_id": "resp_67ccd2bed1ec8190", "input_tokens": 36, "prompt_tokens": 36, "output_tokens": 87,
      "cached_tokens": 12, "model": "gpt-4o-2024-08-06", "operation": "chat", "outcome": "success",
      "error_type": ""}),
])
def test_the_record_of_a_line(obj: dict[str, Any], record: dict[str, Any]) -> None:
    """The whole record, worked out by hand from the line."""
    assert parse(obj) == {"kind": "request", "provider": "app", **record}


def test_a_tenant_field_names_the_tenant_with_no_config() -> None:
    rec = parse({"tenant": "blue", "duration": 1})
    assert (rec["tenant"], rec["tenant_key"]) == ("blue", None)
    assert "tenant" not in parse({"duration": 1})


def test_a_configured_tenant_path_is_read_from_the_line_as_written(tmp_path: Path) -> None:
    """`accounting.tenant` may name any field, not only those the reader knows: it is read from the
    line as the application wrote it, on either path through the reader."""
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("accounting:\n  tenant: [customer.org]\n")
    reader = AppJsonAdapter(load_config(str(cfg_file)))
    for line in (b'{"customer": {"org": "acme"}, "duration": 1.5}',
                 b'{"customer": {"org": "acme"}, "duration": 1.5, "error": {"type": "server_error"}}'):
        rec = reader.parse_json(line, None)  # not decoded beforehand
        assert rec["tenant"] == "acme", line


def test_each_key_shape_is_planned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which key feeds which field is worked out once per key shape, not per line (the hot path)."""
    calls: list[frozenset[str]] = []
    real = app_json.make_plan

    def counting(keys: frozenset[str]) -> Any:
        calls.append(keys)
        return real(keys)

    monkeypatch.setattr(app_json, "make_plan", counting)
    for i in range(3):
        assert parse({"request_id": f"r{i}", "latency_ms": 10 + i, "model": "m"})["duration_s"] == (10 + i) / 1000
    assert len(calls) == 1
    for i in range(3):  # an error object takes the schema's path, which keeps its own plans
        rec = parse({"request_id": f"r{i}", "latency_ms": 10, "error": {"type": "server_error", "code": 500 + i}})
        assert rec["outcome"] == "error"
    assert len(calls) == 3  # the new shape once for the first check, once for the schema's path


def test_the_plan_caches_stay_bounded() -> None:
    """A stream of ever new key shapes holds at most 4096 plans in each cache, then plans each line anew."""
    names = ["model", "service", "operation", "task", "path", "endpoint", "finish_reason", "stop_reason",
             "level", "levelname", "exception", "object", "status"]
    for i in range(5000):
        obj: dict[str, Any] = {n: "x" for bit, n in enumerate(names) if i >> bit & 1}
        obj["latency"] = i
        obj["error"] = {"type": "server_error"}  # the schema's path: both caches are filled
        assert parse(obj)["duration_s"] == float(i)
    assert len(AppJsonAdapter._shapes) == 4096
    assert len(AppJsonAdapter._plans) == 4096
