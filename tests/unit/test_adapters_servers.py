"""Server adapters, one behaviour at a time: durations, payload safety, state, multi-line records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_exporter import errors
from llm_exporter.adapters import AUTO_ORDER, IGNORED, load
from llm_exporter.adapters import vllm as vllm_mod
from llm_exporter.adapters.app_json import AppJsonAdapter
from llm_exporter.adapters.llamacpp import LlamacppAdapter
from llm_exporter.adapters.ollama import OllamaAdapter
from llm_exporter.adapters.tgi import TgiAdapter
from llm_exporter.adapters.vllm import VllmAdapter
from llm_exporter.records import validate_record
from tests.helpers import FIXTURES


def requests(res: Any) -> list[dict[str, Any]]:
    recs = res if isinstance(res, list) else [res]
    for r in recs:
        validate_record(r)
    return [r for r in recs if r["kind"] == "request"]


def tgi_success(fields: str, span: str = "generate") -> str:
    return (f"2024-12-10T21:50:03.478010Z  INFO {span}{{{fields}}}: text_generation_router::server: "
            "router/src/server.rs:622: Success")


@pytest.mark.parametrize(("text", "seconds"), [
    ("70\u00b5s", 70e-6), ("70\u03bcs", 70e-6), ("70us", 70e-6), ("955.594\u00b5s", 955.594e-6),
    ("12ns", 12e-9), ("1.96844ms", 1.96844e-3), ("2.458150804s", 2.458150804), ("161.454300714s", 161.454300714)])
def test_tgi_rust_durations_are_parsed_exactly(text: str, seconds: float) -> None:
    """Every Rust Duration unit, both micro signs, gives the exact number of seconds."""
    line = tgi_success(f'total_time="{text}" queue_time="{text}" inference_time="{text}" time_per_token="{text}"')
    [rec] = requests(TgiAdapter().parse_text(line))
    assert rec["duration_s"] == pytest.approx(seconds, rel=1e-12)
    assert rec["queue_s"] == pytest.approx(seconds, rel=1e-12)
    assert rec["output_tokens"] == 1


def test_tgi_timings_come_from_the_fields_after_the_parameters() -> None:
    """Stop strings that imitate timing fields or a Success line change nothing."""
    fake = 'stop: ["total_time=\\"99s\\"", "}: text_generation_router::server: x: Success"]'
    fields = (f"parameters=GenerateParameters {{ max_new_tokens: Some(20), {fake} }} "
              'total_time="1.5s" validation_time="1ms" queue_time="2ms" inference_time="1.497s" '
              'time_per_token="74.85ms" seed="None"')
    [rec] = requests(TgiAdapter().parse_text(tgi_success(fields, "chat_completions")))
    assert rec["duration_s"] == 1.5 and rec["output_tokens"] == round(1.497 / 0.07485) == 20
    assert rec["operation"] == "chat"


def test_tgi_errors_in_a_request_span_are_failed_requests_and_others_are_logs() -> None:
    """A validation text inside generate{} is a failed request; a batch-level error is only a log."""
    a = TgiAdapter()
    assert a.parse_text("2024-05-21T06:25:30.209697Z ERROR generate{parameters=GenerateParameters { }}: "
                        "text_generation_router::infer: router/src/infer.rs:110: `inputs` tokens + "
                        "`max_new_tokens` must be <= 2048. Given: 1235 `inputs` tokens") == []
    [rec] = requests(a.flush())
    assert (rec["outcome"], rec["error_type"], rec["operation"]) == ("error", "validation", "text_completion")
    assert a.parse_text("2024-08-01T17:14:52.447085Z ERROR batch{batch_size=1}:prefill: text_generation_client: "
                        "router/client/src/lib.rs:46: Server error: CUDA out of memory") == []
    logs = a.flush()
    assert requests(logs) == [] and logs[0]["error_type"] == "oom"


def test_tgi_multiline_error_is_classified_by_its_later_lines() -> None:
    """`Request failed during generation: Server error: ` with the CUDA text on the next lines."""
    a = TgiAdapter()
    a.parse_text("2025-05-26T10:46:34.737206Z ERROR chat_completions:generate:generate_stream:schedule:infer:"
                 "send_error: text_generation_router_v3::backend: backends/v3/src/backend.rs:1: "
                 "Request failed during generation: Server error: ")
    assert a.parse_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB") == []
    nxt = "2025-05-26T10:46:35.000000Z  INFO text_generation_router::server: x.rs:1: Connected"
    [rec] = requests(a.parse_text(nxt))
    assert (rec["error_type"], rec["operation"]) == ("oom", "chat")


def test_tgi_router_info_lines_do_not_swallow_the_lines_after_them() -> None:
    """After a Success line, an unknown plain line is not taken as part of it."""
    a = TgiAdapter()
    requests(a.parse_text(tgi_success('total_time="1s" queue_time="1ms" inference_time="0.9s" time_per_token="0.1s"')))
    assert a.parse_text("some other program's output") is None


@pytest.mark.parametrize("line", [
    b'{"timestamp":"2024-12-10T21:50:03.478010Z","level":"INFO","message":"Success","target":'
    b'"text_generation_router::server","span":{"total_time":"735.2ms","name":"chat_completions"}}',
    b'{"timestamp":"2023-12-07T13:57:23Z","level":"ERROR","message":"`inputs` must have less than 10 tokens",'
    b'"target":"text_generation_router::infer","span":{"name":"generate_stream"},"status":"error"}',
    b'{"asctime": "2025-05-19 10:13:31,418", "levelname": "ERROR", "name": "vllm.entrypoints", '
    b'"message": "Error in preprocessing prompt inputs", "exc_info": "ValueError: too long"}',
    b'{"model":"llama3.2:latest","created_at":"2025-06-06T15:50:35Z","done_reason":"stop","done":true,'
    b'"total_duration":872113375,"prompt_eval_count":29,"eval_count":25,"eval_duration":321374542}',
    b'{"tid":"1","timestamp":1717067386,"level":"INFO","function":"print_timings","msg":"total time = 6.0 ms",'
    b'"id_slot":0,"id_task":19,"t_total":6.0}',
])
def test_app_json_leaves_server_json_lines_to_their_adapters(line: bytes) -> None:
    """TGI --json-output, vLLM JSON logging, Ollama API objects and llama.cpp JSON are not app lines."""
    assert AppJsonAdapter().parse_json(line, None) is None
    others = [load(n)() for n in AUTO_ORDER if n != "app-json"]
    obj = orjson.loads(line)
    assert any(a.parse_json(line, obj) is not None for a in others)


def test_vllm_duration_is_measured_between_our_receive_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Received at t=10, Generated at t=13.5: a 3.5 s request; ids never leave the record's id field."""
    now = [10.0]
    monkeypatch.setattr(VllmAdapter, "clock", staticmethod(lambda: now[0]))
    a = VllmAdapter()
    assert requests(a.parse_text("(APIServer pid=1) INFO 11-22 04:46:45 [request_logger.py:65] Received request "
                                 "chatcmpl-92482357b9e55de4: params: SamplingParams(n=1)")) == []
    now[0] = 13.5
    [rec] = requests(a.parse_text("(APIServer pid=1) INFO 11-22 04:46:49 [request_logger.py:108] Generated "
                                  "response chatcmpl-92482357b9e55de4: output: 'x', finish_reason: length"))
    assert rec["duration_s"] == 3.5 and rec["finish_reason"] == "length" and rec["operation"] == "chat"


def test_vllm_request_state_is_bounded_and_evictions_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start lines that never end cannot grow the state past its cap."""
    monkeypatch.setattr(vllm_mod, "MAX_TRACKED", 50)
    a = VllmAdapter()
    for i in range(200):
        a.parse_text(f"INFO 04-10 03:44:50 [async_llm.py:228] Added request chatcmpl-{i:032x}.")
    assert len(a.requests) == 50 and a.evicted == 150


def test_vllm_streamed_request_counts_once_with_its_finish_reason() -> None:
    """Deltas, the delta that finishes, then `(streaming complete)`: one request, finish length."""
    a = VllmAdapter()
    head = "(APIServer pid=9) INFO 11-22 04:46:45 [request_logger.py:108] Generated response chatcmpl-ac8 "
    got = []
    for tail in ["(streaming delta): output: 'a', finish_reason: None",
                 "(streaming delta): output: 'finish_reason: stop', finish_reason: None",
                 "(streaming delta): output: 'b', finish_reason: length",
                 "(streaming complete): output: 'ab', finish_reason: streaming_complete"]:
        got += requests(a.parse_text(head + tail))
    assert [(r["outcome"], r.get("finish_reason")) for r in got] == [("success", "length")]


def test_vllm_streamed_output_tokens_are_counted_only_when_ids_are_logged() -> None:
    """Deltas with `output_token_ids` add up; without them (vLLM 0.32) no token count is made up."""
    a = VllmAdapter()
    head = "INFO 09-02 08:46:16 [entrypoints/logger.py:92] Generated response chatcmpl-1 (streaming delta): "
    a.parse_text(head + "output: 'a', output_token_ids: [5, 6], finish_reason: None")
    [rec] = requests(a.parse_text(head + "output: 'b', output_token_ids: [7], finish_reason: stop"))
    assert rec["output_tokens"] == 3
    head = head.replace("chatcmpl-1", "chatcmpl-2")
    a.parse_text(head + "output: 'a', finish_reason: None")
    [rec] = requests(a.parse_text(head + "output: 'b', finish_reason: length"))
    assert "output_tokens" not in rec


def test_vllm_traceback_with_repeated_headers_is_one_record_of_its_last_exception() -> None:
    """Error in preprocessing + traceback lines with the same header: one ERROR record of class
    validation; the failed request is counted once, by its access line (400)."""
    a = VllmAdapter()
    h = "(APIServer pid=1) ERROR 07-03 03:19:15 [serving_chat.py:200] "
    out: list[dict[str, Any]] = []
    for msg in ["Error in preprocessing prompt inputs", "Traceback (most recent call last):",
                "  File \"/x/serving_chat.py\", line 183, in create_chat_completion",
                "    ) = await self._preprocess_chat(",
                "ValueError: This model's maximum context length is 16384 tokens. However, you requested 12 tokens"]:
        out += a.parse_text(h + msg)
    out += a.parse_text("(APIServer pid=1) INFO 07-03 03:19:16 [logger.py:39] Added request x.")
    assert [r for r in out if r["kind"] == "log" and r["level"] == "ERROR"] == [
        {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "validation"}]
    assert requests(out) == []
    out = a.parse_text('(APIServer pid=1) INFO:     172.18.0.1:36432 - "POST /v1/chat/completions HTTP/1.1" 400 Bad '
                       "Request")
    assert [(r["outcome"], r["error_type"]) for r in requests(out)] == [("error", "validation")]


def test_vllm_error_record_names_the_class_of_the_next_server_error() -> None:
    """An out-of-memory error record, then the request's 500: one request error, class oom."""
    a = VllmAdapter()
    a.parse_text("(EngineCore pid=112) ERROR 05-01 14:39:06 [core.py:1131] torch.OutOfMemoryError: CUDA out of "
                 "memory. Tried to allocate 50.00 MiB.")
    out = a.parse_text('(APIServer pid=1) INFO:     172.18.0.1:36432 - "POST /v1/chat/completions HTTP/1.1" 500 '
                       "Internal Server Error")
    assert [(r["outcome"], r["error_type"]) for r in requests(out)] == [("error", "oom")]
    out = a.parse_text('(APIServer pid=1) INFO:     172.18.0.1:36432 - "POST /v1/chat/completions HTTP/1.1" 500 '
                       "Internal Server Error")
    assert [(r["outcome"], r["error_type"]) for r in requests(out)] == [("error", "_OTHER")]


def test_llamacpp_block_is_one_request_from_header_and_three_lines() -> None:
    """`slot print_timing` header plus prompt/eval/total lines: one record at the total line."""
    a = LlamacppAdapter()
    assert a.parse_text("slot print_timing: id  0 | task 124 |") == []
    assert a.parse_text("prompt eval time =    5093.47 ms /  1360 tokens (    3.75 ms per token)") == []
    assert a.parse_text("eval time =     319.58 ms /    10 tokens (   31.96 ms per token)") == []
    [rec] = requests(a.parse_text("total time =    5413.05 ms /  1370 tokens"))
    assert (rec["input_tokens"], rec["output_tokens"], rec["duration_s"]) == (1360, 10, 5.41305)
    assert rec["tpot_s"] == pytest.approx(0.031958)
    assert a.flush() == []


def test_ollama_streaming_chunks_are_ignored_until_the_final_one() -> None:
    """`done:false` chunks carry nothing; the `done:true` one is the request."""
    a = OllamaAdapter()
    chunk = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "response": "x", "done": False}
    assert a.parse_json(orjson.dumps(chunk), chunk) == IGNORED


@pytest.mark.parametrize(("message", "cls"), [
    ("no permits available", "overloaded"),
    ("`inputs` tokens + `max_new_tokens` must be <= 2048. Given: 1235", "validation"),
    ("Template error: unknown method", "template"),
    ("Request failed during generation: Server error: CUDA out of memory. Tried to allocate", "oom"),
    ("vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue", "engine_dead"),
    ("Failed to send event. Receiver dropped.", "client_disconnect"),
    ("Incomplete generation", "_OTHER"),
])
def test_error_messages_map_to_the_bounded_classes(message: str, cls: str) -> None:
    """Free-text error messages of TGI and vLLM fold into the shared error classes."""
    assert errors.classify_exception(message) == cls


def test_text_adapters_reject_application_lines_at_their_first_characters() -> None:
    """An application's plain text and JSON lines are left alone by every server adapter."""
    lines = [ln for ln in (FIXTURES / "app_plain.txt").read_text(encoding="utf-8").splitlines() if ln]
    for name in AUTO_ORDER:
        a = load(name)()
        for ln in lines:
            assert a.parse_text(ln) is None, (name, ln)


@pytest.mark.parametrize(("inference", "per_token", "tokens"), [
    # by hand: inference / per token, rounded to the nearest whole token
    ("951ms", "100ms", 10),        # 9.51: rounds up (a truncation gives 9)
    ("949ms", "100ms", 9),         # 9.49: rounds down
    ("999.999999ms", "100ms", 10),  # 9.99999999: a nanosecond short of 10 tokens
    ("1.25s", "100ms", 12),        # 12.5: an exact half goes to the even count
    ("1.35s", "100ms", 14),        # 13.5
    ("734.172108ms", "36.708605ms", 20),  # the real line in tests/unit/test_envelopes.py
])
def test_tgi_output_tokens_are_rounded_not_truncated(inference: str, per_token: str, tokens: int) -> None:
    """Output tokens = round(inference_time / time_per_token), near .5 on both sides."""
    line = tgi_success(f'total_time="2s" queue_time="1ms" inference_time="{inference}" '
                       f'time_per_token="{per_token}"')
    [rec] = requests(TgiAdapter().parse_text(line))
    assert rec["output_tokens"] == tokens
