"""Golden tests: every real sample file gives the metrics worked out by hand from its lines.

Each expected value below is derived from the sample lines themselves (the arithmetic is written
out, with line numbers of tests/fixtures/samples/*), never copied from the exporter's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.framing import LineFramer
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from tests.helpers import FIXTURES, parse_metrics, total

SAMPLES = FIXTURES / "samples"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def replay(name: str, fmt: str = "auto") -> tuple[Samples, dict[str, int]]:
    """Run one sample file through the real pipeline; the exposition's samples and line outcomes."""
    m = LLMMetrics()
    p = Pipeline(m, fmt=fmt)
    framer = LineFramer(1 << 20)
    lines, _ = framer.feed(Path(SAMPLES / name).read_bytes())
    rest, _ = framer.flush()
    p.process("f", [*lines, *rest])
    p.flush("f")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    outcomes = {o: n for (_s, o), n in m.internal.lines.items() if n}
    return parse_metrics(generate_latest(reg).decode()), outcomes


def v(s: Samples, name: str, **labels: str) -> float:
    return total(s, name, **labels)


def count(s: Samples, name: str, **labels: str) -> int:
    """How many series match (a value of 0 proves nothing when the series is missing)."""
    return sum(1 for (n, lb) in s if n == name and all(dict(lb).get(k) == x for k, x in labels.items()))


# -- TGI -----------------------------------------------------------------------------------------

def test_tgi_text_success_lines_give_durations_and_output_tokens() -> None:
    """The five `Success` lines of tgi.log (lines 2, 5, 6, 7, 8) are five finished requests."""
    s, out = replay("tgi.log")
    # line 2 chat_completions: total 735.200735ms, inference 734.172108ms, time_per_token 36.708605ms
    assert v(s, "llm_requests_total", gen_ai_provider_name="tgi", gen_ai_operation_name="chat",
             outcome="success") == 1
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="chat") == \
        pytest.approx(0.735200735)
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_operation_name="chat", gen_ai_token_type="output") == \
        round(734.172108 / 36.708605)  # = 20
    # lines 5 (generate), 6 (HTTP request > generate), 7 (generate), 8 (compat_generate > generate)
    assert v(s, "llm_requests_total", gen_ai_operation_name="text_completion", outcome="success") == 4
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="text_completion") == \
        pytest.approx(4.065504959 + 0.986532642 + 0.357867572 + 2.458150804)
    assert v(s, "llm_request_queue_duration_seconds_sum", gen_ai_operation_name="text_completion") == \
        pytest.approx((94.981 + 188.125 + 49.382 + 184.26) * 1e-6)  # µs values (U+00B5)
    assert v(s, "llm_request_inference_duration_seconds_sum", gen_ai_operation_name="text_completion") == \
        pytest.approx(3.625371193 + 0.98566325 + 0.355849981 + 2.444288229)
    assert v(s, "gen_ai_server_time_per_output_token_seconds_sum", gen_ai_operation_name="text_completion") == \
        pytest.approx(0.038982485 + 0.049283162 + 0.014827082 + 0.061107205)
    tokens = (round(3.625371193 / 0.038982485) + round(0.98566325 / 0.049283162)
              + round(0.355849981 / 0.014827082) + round(2.444288229 / 0.061107205))
    assert tokens == 93 + 20 + 24 + 40
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_operation_name="text_completion",
             gen_ai_token_type="output") == tokens
    # 29 lines; 18, 25 and 28 are empty
    assert out == {"record": 26, "ignored": 3}


def test_tgi_text_errors_are_classified_and_tracebacks_count_once() -> None:
    """`no permits available` in a request span is an overloaded request; shard errors are logs."""
    s, _ = replay("tgi.log")
    # line 9: generate_stream{...}: text_generation_router::infer: ...: no permits available
    assert v(s, "llm_requests_total", gen_ai_provider_name="tgi", outcome="error") == 1
    assert v(s, "llm_request_errors_total", error_type="overloaded", gen_ai_operation_name="text_completion") == 1
    # ERROR records: 9, 10, 11 (+ traceback 12-14), 15 (+ CUDA text 16-17), 19 -> 5, not 10
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="tgi", level="ERROR") == 5
    # INFO: 1-8, 20, 21, 26, 27, 29 (29 behind a CloudWatch timestamp and #033[ colour codes)
    assert v(s, "llm_log_messages_total", level="INFO") == 13
    assert v(s, "llm_log_messages_total", level="DEBUG") == 1  # 22, with the prompt on 23-24


def test_tgi_json_success_and_validation_lines() -> None:
    """tgi.reconstructed.log: two JSON Success lines and one validation error."""
    s, out = replay("tgi.reconstructed.log")
    assert v(s, "llm_requests_total", gen_ai_operation_name="chat", outcome="success") == 1
    assert v(s, "llm_requests_total", gen_ai_operation_name="text_completion", outcome="success") == 1
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="text_completion") == \
        pytest.approx(0.611286748)
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
        round(734.172108 / 36.708605) + round(610.405028 / 43.600359)  # 20 + 14
    assert v(s, "llm_request_errors_total", error_type="validation", gen_ai_operation_name="text_completion") == 1
    assert out == {"record": 3}


def test_tgi_json_launcher_and_router_lines_are_counted_by_level() -> None:
    """tgi_json.log: both JSON shapes are TGI's; 9 INFO and 7 WARN records, no requests."""
    s, out = replay("tgi_json.log")
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="tgi", level="INFO") == 9
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="tgi", level="WARNING") == 7
    assert v(s, "llm_requests_total") == 0
    assert out == {"record": 16}


# -- vLLM ----------------------------------------------------------------------------------------

def test_vllm_stats_lines_become_gauges_per_engine() -> None:
    """The last stats line of each engine label sets the gauges (percent / 100)."""
    s, _ = replay("vllm.log")
    # engine "": last is line 25 (V0): 2.4 / 0.2 tokens/s, Running 1, Pending 0, GPU KV 0.0%;
    # the prefix-cache gauge keeps line 19's 80.0%
    assert v(s, "llm_prompt_throughput_tokens_per_second", engine="") == 2.4
    assert v(s, "llm_generation_throughput_tokens_per_second", engine="") == 0.2
    assert v(s, "llm_requests_running", engine="") == 1
    assert v(s, "llm_requests_waiting", engine="") == 0 and count(s, "llm_requests_waiting", engine="") == 1
    assert v(s, "llm_prefix_cache_hit_ratio", engine="") == pytest.approx(0.80)
    # engine "0": last `Engine 000:` line is 54: 410.1 tokens/s, Running 8, GPU KV 16.6%
    assert v(s, "llm_prompt_throughput_tokens_per_second", engine="0") == 410.1
    assert v(s, "llm_requests_running", engine="0") == 8
    assert v(s, "llm_kv_cache_usage_ratio", engine="0") == pytest.approx(0.166)
    # engine "all": line 59 `1 Engines Aggregated:` 11.5 tokens/s generation
    assert v(s, "llm_generation_throughput_tokens_per_second", engine="all") == 11.5


def test_vllm_request_lines_access_lines_and_error_records() -> None:
    """Aborted requests, uvicorn access lines, error records once each with their class."""
    s, out = replay("vllm.log")
    # line 3 (no start seen) and line 8 (chatcmpl-, added on line 7) are aborted
    assert v(s, "llm_requests_total", gen_ai_provider_name="vllm", outcome="aborted") == 2
    assert v(s, "llm_requests_total", gen_ai_operation_name="chat", outcome="aborted") == 1
    # access lines on /v1/chat/completions end requests: line 16 (200) pairs with no chat request in
    # flight (line 7's was aborted on 8) and counts itself; 23 and 35 (200) end the chat requests
    # received on 20 and added on 22 (no output lines: the access line ends them); 36 (400) has no
    # failed request to pair with and counts itself. Line 1's completion never gets an access line.
    # Line 57 is a streaming delta with finish_reason None: not yet finished.
    assert v(s, "llm_requests_total", outcome="success") == 3
    assert v(s, "llm_requests_total", gen_ai_operation_name="chat", outcome="success") == 3
    # line 36 (HTTP 400) is the one failed request; the error records (38 VLLMValidationError, 41
    # torch.OutOfMemoryError, ...) come after it and are log records only: a failed request is
    # counted by its access line, never again by its error record
    assert v(s, "llm_request_errors_total", error_type="validation") == 1
    assert v(s, "llm_request_errors_total", error_type="oom") == 0
    assert v(s, "llm_requests_total", outcome="error") == 1
    # line 41's OOM is in the EngineCore process: the engine failing, one server incident
    assert v(s, "llm_server_errors_total", gen_ai_provider_name="vllm", error_type="oom") == 1
    # ERROR records: 26, 27-29, 30, 31, 37, 38, 40, 41, 42-44, 46-47
    assert v(s, "llm_log_messages_total", level="ERROR") == 10
    assert v(s, "llm_log_messages_total", level="WARNING") == 2  # 32, 39
    assert v(s, "llm_log_messages_total", level="DEBUG") == 2  # 17, 56
    info = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 18, 19, 20, 21, 22, 25, 34, 48, 49, 50, 51, 52, 54, 55, 57,
            58, 59]
    assert v(s, "llm_log_messages_total", level="INFO") == len(info)
    # access lines 16, 23, 35 (200) and 36 (400) on /v1/chat/completions; 13, 33 GETs; 24 a foreign path
    assert v(s, "llm_http_requests_total", method="POST", path="/v1/chat/completions", code="200") == 3
    assert v(s, "llm_http_requests_total", path="/v1/chat/completions", code="400") == 1
    assert v(s, "llm_http_requests_total", method="GET", path="/v1/models") == 1
    assert v(s, "llm_http_requests_total", method="GET", path="/health") == 1
    assert v(s, "llm_http_requests_total", path="_OTHER") == 1
    # ignored: 11, 12 (uvicorn start-up), 45 (`Process EngineCore:`), 53 (NCCL chatter)
    assert out == {"record": 59 - 4, "ignored": 4}


def test_vllm_json_logging_records() -> None:
    """vllm.reconstructed.log: JSON stats lines (bare, prefixed, with levelname), exc_info, Finished."""
    s, out = replay("vllm.reconstructed.log")
    assert v(s, "llm_requests_running", engine="0") == 18
    assert v(s, "llm_requests_waiting", engine="0") == 33
    assert v(s, "llm_kv_cache_usage_ratio", engine="0") == pytest.approx(0.877)
    # line 4: exc_info ends in `ValueError: This model's maximum context length is 16384 tokens`: an
    # ERROR record (the request it failed is counted by its access line, absent here)
    assert v(s, "llm_log_messages_total", level="ERROR") == 1
    assert v(s, "llm_request_errors_total") == 0
    # line 5 `Finished request cmpl-...` (V0)
    assert v(s, "llm_requests_total", gen_ai_operation_name="text_completion", outcome="success") == 1
    assert out == {"record": 6}


# -- SGLang --------------------------------------------------------------------------------------

def test_sglang_batch_lines_become_gauges() -> None:
    """Prefill/Decode batch lines of every version; `token usage` is already a fraction."""
    s, out = replay("sglang.log")
    # engine "" (no rank tag): last batch line is 12 (Prefill, python logging): #running-req 0, usage 0.00;
    # its gen throughput stays from line 7 (1635.11)
    assert v(s, "llm_requests_running", engine="") == 0 and count(s, "llm_requests_running", engine="") == 1
    assert v(s, "llm_generation_throughput_tokens_per_second", engine="") == 1635.11
    # engine TP0: last line 13: #running-req 40, full token usage 0.74, gen throughput 155.34
    assert v(s, "llm_requests_running", engine="TP0") == 40
    assert v(s, "llm_kv_cache_usage_ratio", engine="TP0") == pytest.approx(0.74)
    assert v(s, "llm_generation_throughput_tokens_per_second", engine="TP0") == 155.34
    # line 4: cache hit rate 2.76% (the last prefill line with one)
    assert v(s, "llm_prefix_cache_hit_ratio", engine="TP0") == pytest.approx(0.0276)
    # access lines 6, 8 and 11 (bare: the stream is SGLang's by then), all on inference paths: SGLang
    # prints no other per-request line, so each is one finished request
    assert v(s, "llm_http_requests_total", gen_ai_provider_name="sglang") == 3
    assert v(s, "llm_requests_total", gen_ai_provider_name="sglang", outcome="success") == 3
    assert v(s, "llm_requests_total", gen_ai_operation_name="text_completion") == 1  # 6: POST /generate
    assert v(s, "llm_requests_total", gen_ai_operation_name="speech") == 1  # 11
    # prompt tokens of the Prefill lines: #new-token + #cached-token; 3 and 4 (TP0), 12 (no rank tag)
    assert v(s, "llm_prompt_tokens_total", engine="TP0") == (2062 + 0) + (8192 + 291)
    assert v(s, "llm_prompt_cached_tokens_total", engine="TP0") == 0 + 291
    assert v(s, "llm_prompt_tokens_total", engine="") == 1 + 7
    assert v(s, "llm_prompt_cached_tokens_total", engine="") == 7
    assert out == {"record": 13}  # 10: `The server is fired up` is a start-up record (ready)


# -- llama.cpp -----------------------------------------------------------------------------------

def test_llamacpp_timing_blocks_of_every_era() -> None:
    """Each timing block is one request: library, 2024 JSON, mid-2024 text, slot blocks."""
    s, out = replay("llamacpp.log")
    # blocks: 1-4 (library: eval 484 runs, total 22575.28 ms), 6-7 (JSON: prompt 27 tokens, total 6243.66),
    # 9-10 (mid-2024: eval 783, total 3209.84), 16-17 (unprefixed: prompt 1360, eval 10, cut before its
    # total), 25-27 ([42027]: eval 192, total 16901.53), 35-37 (prefixed: prompt 2244, eval 186, no total)
    # The journald block 12-14 lost its timing lines to `[100B blob data]`: nothing to count.
    # A block without its `total time` line gives no duration (none is made up from its parts).
    assert v(s, "llm_requests_total", gen_ai_provider_name="llamacpp", outcome="success") == 6
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_provider_name="llamacpp") == pytest.approx(
        (22575.28 + 6243.66 + 3209.84 + 16901.53) / 1000)
    assert v(s, "gen_ai_server_request_duration_seconds_count", gen_ai_provider_name="llamacpp") == 4
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 484 + 783 + 10 + 192 + 186
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 27 + 1360 + 2244
    assert v(s, "gen_ai_server_time_to_first_token_seconds_count") == 3  # the blocks with a prompt line
    # access lines 15 (journald), 18, 19
    assert v(s, "llm_http_requests_total", method="POST", path="/chat/completions", code="200") == 1
    assert v(s, "llm_http_requests_total", method="GET", path="/favicon.ico", code="404") == 1
    assert out.get("unparsed", 0) == 0 and sum(out.values()) == 37


def test_llamacpp_response_timings_object() -> None:
    """A response body's `timings` object is one request in milliseconds."""
    s, _ = replay("llamacpp_timings.jsonl")
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 35
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 1
    assert v(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx((30.958 + 661.064) / 1000)
    assert v(s, "gen_ai_server_time_per_output_token_seconds_sum") == pytest.approx(661.064 / 35 / 1000)


# -- Ollama --------------------------------------------------------------------------------------

def test_ollama_gin_lines_with_go_durations() -> None:
    """GIN lines: every one an access record; POSTs to inference paths are requests."""
    s, out = replay("ollama.log")
    # lines 2 (HEAD /), 3 (403 generate), 6 (404 chat), 7, 8, 9, 10 (500 chat), 11 (200 pull)
    assert v(s, "llm_http_requests_total", gen_ai_provider_name="ollama") == 8
    assert v(s, "llm_http_requests_total", path="/api/chat", code="500") == 4
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama", outcome="error") == 6  # 3, 6, 7-10
    chat = 414.019e-6 + (29 * 60 + 59) + 4.709180529 + 49.968259888 + 5.257673085  # 414.019µs, 29m59s ...
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="chat") == pytest.approx(chat)
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="text_completion") == 0.0
    assert v(s, "gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="text_completion") == 1  # 0s
    # slog lines: `time=... level=INFO` on 4 and 5, `level=ERROR` on 12
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="ollama", level="INFO") == 2
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="ollama", level="ERROR") == 1
    assert out == {"record": 11, "ignored": 1}  # 1: pre-slog `routes.go:572: Listening`


def test_ollama_api_objects_with_nanosecond_durations() -> None:
    """`done:true` responses: tokens, total_duration in ns, eval_duration per output token."""
    s, _ = replay("ollama_api.jsonl")
    assert v(s, "llm_requests_total", gen_ai_request_model="deepseek-r1:1.5b",
             gen_ai_operation_name="text_completion") == 1
    assert v(s, "llm_requests_total", gen_ai_request_model="llama3.2:latest", gen_ai_operation_name="chat") == 1
    assert v(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx((256103089 + 872113375) / 1e9)
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 10 + 29
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output",
             gen_ai_request_model="llama3.2:latest") == 25
    assert v(s, "gen_ai_server_time_per_output_token_seconds_sum", gen_ai_request_model="llama3.2:latest") == \
        pytest.approx(321374542 / 1e9 / 25)
    assert v(s, "llm_request_finish_reasons_total", gen_ai_response_finish_reason="stop") == 2
    assert v(s, "llm_requests_total", gen_ai_provider_name="app") == 0


# -- OpenAI usage --------------------------------------------------------------------------------

def test_openai_usage_objects_anywhere_in_app_json() -> None:
    """A full chat.completion, bare usage objects (details null or absent) and a nested usage."""
    s, out = replay("openai_usage.jsonl")
    assert v(s, "llm_requests_total", gen_ai_provider_name="app") == 4
    assert v(s, "llm_requests_total", gen_ai_operation_name="chat") == 1  # object: chat.completion
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 38 + 516 + 516 + 2006
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 23 + 4 + 4 + 300
    assert v(s, "llm_request_finish_reasons_total", gen_ai_response_finish_reason="stop") == 1
    assert out == {"record": 4}
