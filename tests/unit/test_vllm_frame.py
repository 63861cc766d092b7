"""The frame of a vLLM line, read to the exact outcome: where the header ends, which process prefix
it carries, and the forms an access line comes in.

The outcome of a line is what a user sees in `llm_exporter_lines_total`: `None` (not vLLM's: the
next reader tries it, else it is unparsed), `IGNORED` (vLLM's, nothing to count), or its records.
Every expected value is worked out by hand from the line. The access line of vLLM's own sample is
tests/fixtures/samples/vllm.log (line 24); the others are built from uvicorn's access format
(`%(client_addr)s - "%(request_line)s" %(status_code)s`, where the client address is empty when the
server listens on a UNIX socket).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_exporter import errors
from llm_exporter.adapters import vllm as v
from llm_exporter.adapters.base import IGNORED
from llm_exporter.adapters.vllm import VllmAdapter
from tests.unit.test_vllm_lines import feed

LOG = {"kind": "log", "provider": "vllm", "level": "INFO"}
ERR = {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"}
TAIL = '127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200'
STATS = ("Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 44.9 tokens/s, Running: 2 reqs, "
         "Swapped: 0 reqs, Pending: 3 reqs, GPU KV cache usage: 82.1%, CPU KV cache usage: 0.0%")
STATS_REC = {"kind": "stats", "provider": "vllm", "model": "", "engine": "", "prompt_tps": 0.0,
             "generation_tps": 44.9, "running": 2.0, "swapped": 0.0, "waiting": 3.0, "kv_cache_usage": 0.821}




def http(path: str = "/v1/completions", code: str = "200", provider: str = "vllm") -> dict[str, Any]:
    return {"kind": "http", "provider": provider, "method": "POST", "path": path, "code": code}


def completion(outcome: str = "success", error_type: str = "") -> dict[str, Any]:
    return {"kind": "request", "provider": "vllm", "operation": "text_completion", "model": "",
            "outcome": outcome, "error_type": error_type}


def named() -> VllmAdapter:
    """An adapter that has seen a vLLM line (so a bare access line is vLLM's request)."""
    a = VllmAdapter()
    assert feed(a, "INFO 01-22 18:27:20 [api_server.py:1] vLLM API server version 0.8.5") == [LOG]
    return a


# -- access lines under a custom logging format ----------------------------------------------------------

REAL = ('2025-05-14 17:45:10.901 uvicorn.access INFO:     127.0.0.1:42226 1647689 - '
        '"POST /openai/v1/chat/completions HTTP/1.1" 200 OK')


def test_a_custom_format_access_line_names_no_server_until_a_vllm_line_does() -> None:
    a = VllmAdapter()
    # the real line (samples/vllm.log): not an inference path of vLLM, an http record alone
    assert feed(a, REAL) == [http("_OTHER", provider="")]  # an unknown path is no label
    line = "2025-05-14 17:45:10.901 uvicorn.access " + TAIL
    assert feed(a, line) == [http(provider="")]  # nothing says it is vLLM's yet
    assert feed(a, "uvicorn.access " + TAIL) == [http(provider="")]
    assert len(a.unknown) == 2
    # the first vLLM line claims both as vLLM's requests
    assert feed(a, "INFO 01-22 18:27:20 [metrics.py:449] " + STATS) == [
        completion(), completion(), STATS_REC, LOG]
    hint = {"kind": "hint", "provider": "vllm", "hint": "vllm_access_log_only"}  # the third with no id line
    assert feed(a, line) == [http(), completion(), hint]
    assert feed(a, "uvicorn.access " + TAIL) == [http(), completion()]
    assert feed(a, REAL) == [http("_OTHER")]


@pytest.mark.parametrize(("head", "read"), [
    ("2025-05-14", True),  # the logger name right after a date: at 10, the first place looked at
    ("2025-05-14 17:45:10.901", True),
    ("2025-05-14T17:45:10.901Z", True),  # ends at 40, the last place looked at
    ("5/14/2025 17:45:10", True),  # a one-digit month
    ("2025-05-14T17:45:10.9012Z", False),  # one character further: past the place a logger name sits
    ("1", False),  # too short to be a timestamp
    ("12 requests in the last minute were logged by", False),  # deep in a message
])
def test_a_custom_format_access_line_is_read_where_a_logger_name_sits(head: str, read: bool) -> None:
    a = named()
    out = feed(a, f"{head} uvicorn.access {TAIL}")
    assert out == ([http(), completion()] if read else []), head


def test_access_lines_with_no_client_address_are_read() -> None:
    """Over a UNIX socket uvicorn has no client address: ` - "POST ..."` right after the level."""
    a = named()
    assert feed(a, 'INFO:      - "POST /v1/completions HTTP/1.1" 200 OK') == [http(), completion()]
    assert feed(a, 'uvicorn.access  - "POST /v1/completions HTTP/1.1" 200') == [http(), completion()]
    assert feed(named(), '2025-05-14 uvicorn.access  - "POST /v1/completions HTTP/1.1" 500') == [
        http(code="500"), completion("error", errors.OTHER)]


def test_a_custom_format_line_that_is_no_access_line_is_not_vllms() -> None:
    a = named()
    assert a.parse_text('2025-05-14 17:45:10.901 uvicorn.access 127.0.0.1:1 - "POST /v1/completions') is None
    assert a.parse_text('uvicorn.access 127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 2000') is None


def test_a_bare_access_line_before_any_vllm_line_names_no_server() -> None:
    a = VllmAdapter()
    assert feed(a, 'INFO:     127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200 OK') == [http(provider="")]
    # behind vLLM's process prefix it is vLLM's at once
    assert feed(a, '(APIServer pid=1) INFO:     127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200 OK') == [
        http(), completion()]


# -- the process prefix ------------------------------------------------------------------------------

H = "INFO 01-22 18:27:20 [metrics.py:449] " + STATS


@pytest.mark.parametrize(("prefix", "want"), [
    ("(pid=2445) ", [STATS_REC, LOG]),  # Ray's prefix for a process with no actor name
    ("(RayWorkerWrapper pid=2445, ip=10.0.0.1) ", [STATS_REC, LOG]),
    ("(" + "a" * 111 + " pid=1) ", [STATS_REC, LOG]),  # its `) ` ends at 120, the last place looked at
    ("(" + "a" * 112 + " pid=1) ", None),  # one further: no process prefix, no vLLM header
    ("(" + "a" * 300 + " pid=1) ", None),
    ("() pid=3) ", None),  # an empty `()` is no process prefix
    ("(no pid here) ", None),
])
def test_process_prefixes(prefix: str, want: list[dict[str, Any]] | None) -> None:
    a = VllmAdapter()
    res = a.parse_text(prefix + H)
    assert res == want


@pytest.mark.parametrize("rest", [
    "(raylet) [2025-01-01 10:00:00,000 I 1 1] stray output",  # a second `(...)` that is no process
    "ERROR:",  # a level word with no space after it
    "WARNING:",
    "INFO",
])
def test_stray_lines_behind_a_process_prefix_are_ignored(rest: str) -> None:
    assert VllmAdapter().parse_text("(APIServer pid=1) " + rest) is IGNORED


def test_two_processes_are_two_records_even_with_pids_that_differ_in_their_last_digit() -> None:
    a = VllmAdapter()
    head = " ERROR 01-22 18:27:20 [serving_chat.py:200] "
    assert feed(a, "(APIServer pid=4001)" + head + "Error in preprocessing prompt inputs") == []
    # another process's traceback line, at the same place: a record of its own
    assert feed(a, "(APIServer pid=4002)" + head + "Traceback (most recent call last):") == [
        {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": errors.OTHER}]
    assert feed(a, "(APIServer pid=4002)" + head + "torch.OutOfMemoryError: CUDA out of memory.") == []
    assert a.flush() == [ERR]


def test_uvicorn_warning_and_error_lines_inside_a_traceback_are_ignored_and_keep_it() -> None:
    a = VllmAdapter()
    assert feed(a, "(APIServer pid=1) Traceback (most recent call last):") == []
    assert a.parse_text("(APIServer pid=1) WARNING:  Invalid HTTP request received.") is IGNORED
    assert a.parse_text("(APIServer pid=1) ERROR:    Exception in ASGI application") is IGNORED
    assert feed(a, "(APIServer pid=1) torch.OutOfMemoryError: CUDA out of memory.") == []
    assert a.flush() == [ERR]


# -- the header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "want"), [
    ("INFO 01-22 18:27:20 [metrics.py:449] " + STATS, [STATS_REC, LOG]),
    ("INFO 01-22 18:27:20 metrics.py:449] " + STATS, [STATS_REC, LOG]),  # before ~0.8: no `[`
    ("INFO 01-22 18:27:20] " + STATS, [STATS_REC, LOG]),  # the `] ` right after the time
    ("INFO x1-22 18:27:20 [metrics.py:449] " + STATS, None),  # no month
    ("INFO 01-22 18:27:20 " + "x" * 182 + "] " + STATS, [STATS_REC, LOG]),  # `] ` ends at 200 past the level
    ("INFO 01-22 18:27:20 " + "x" * 183 + "] " + STATS, None),  # one further: no header end
    ("INFO 01-22 18:27:20 " + "x" * 300 + "] " + STATS, None),
])
def test_the_message_starts_after_the_first_bracket_past_the_time(line: str, want: Any) -> None:
    assert VllmAdapter().parse_text(line) == want


def test_a_prompt_with_brackets_does_not_move_the_header_end() -> None:
    """Mistral's `[INST] ... [/INST]` template puts `] ` in the prompt, within the first 200 characters."""
    a = named()
    line = ("INFO 01-22 18:27:20 [logger.py:39] Received request cmpl-b1: prompt: '[INST] hi [/INST]', "
            "params: SamplingParams(n=1), prompt_token_ids: [1, 2, 3], lora_request: None.")
    assert feed(a, line) == [LOG]
    assert feed(a, 'INFO:     127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200 OK') == [
        http(), {**completion(), "request_id": "cmpl-b1", "input_tokens": 3}]


def test_a_record_with_an_empty_first_line_takes_its_traceback() -> None:
    a = VllmAdapter()
    assert feed(a, "ERROR 01-22 18:27:20 [serving_chat.py:200]") == []
    assert feed(a, "ERROR 01-22 18:27:20 [serving_chat.py:200] Traceback (most recent call last):") == []
    assert feed(a, "ERROR 01-22 18:27:20 [serving_chat.py:200] torch.OutOfMemoryError: CUDA out of memory.") == []
    assert a.flush() == [ERR]


def test_the_first_vllm_line_after_unclaimed_access_lines_keeps_its_traceback() -> None:
    a = VllmAdapter()
    assert feed(a, 'INFO:     127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200 OK') == [http(provider="")]
    head = "ERROR 01-22 18:27:20 [serving_chat.py:200] "
    assert feed(a, head + "Error in preprocessing prompt inputs") == [completion()]
    assert feed(a, head + "Traceback (most recent call last):") == []
    assert feed(a, head + "torch.OutOfMemoryError: CUDA out of memory.") == []
    assert a.flush() == [ERR]



# -- JSON records: whose they are ------------------------------------------------------------------

ACC = {"levelname": "INFO", "name": "uvicorn.access", "message": TAIL}
MSG = {"levelname": "INFO", "name": "vllm.v1.metrics.loggers", "message": STATS}


def jfeed(a: VllmAdapter, obj: dict[str, Any]) -> Any:
    return a.parse_json(orjson.dumps(obj), obj)


def test_the_first_vllm_json_record_names_the_server_and_claims_earlier_access_lines() -> None:
    a = VllmAdapter()
    assert jfeed(a, ACC) == http(provider="")  # only logging fields: whose, nothing says yet
    assert "server" not in a.shared
    assert jfeed(a, MSG) == [completion(), STATS_REC, LOG]
    assert a.shared["server"] == "vllm" and a.unknown == []
    # from now on uvicorn's records with only logging fields are vLLM's requests
    assert jfeed(a, ACC) == [http(), completion()]
    assert jfeed(a, MSG) == [STATS_REC, LOG]  # claimed once


@pytest.mark.parametrize(("obj", "want"), [
    # vLLM's formatter marks its records with the process name: vLLM's, whatever else they carry
    ({**ACC, "vllm_process_name": "APIServer", "trace_id": "a1"}, [http(), completion()]),
    ({"levelname": "INFO", "name": "transformers.tokenization", "message": "hello",
      "vllm_process_name": "APIServer"}, [LOG]),
    ({"levelname": "INFO", "name": "transformers.tokenization", "message": "hello",
      "vllm_process_name": "APIServer", "trace_id": "a1"}, [LOG]),
    # a vLLM logger's record with a field of the user's formatter
    ({**MSG, "trace_id": "a1"}, [STATS_REC, LOG]),
    ({"levelname": "INFO", "name": "vllm.entrypoints", "message": "hello", "trace_id": "a1"}, [LOG]),
    # another program's records
    ({**ACC, "trace_id": "a1"}, None),
    ({"levelname": "INFO", "name": "myapp", "message": "hello"}, None),
    ({"levelname": "INFO", "name": "myapp", "message": STATS, "trace_id": "a1"}, None),
])
def test_json_records_of_vllm_and_of_others(obj: dict[str, Any], want: Any) -> None:
    assert jfeed(VllmAdapter(), obj) == want


def test_an_engine_index_is_read_whole() -> None:
    """vLLM writes `Engine %03d`: four digits from the 1,000th engine on."""
    for num, engine in (("000", "0"), ("012", "12"), ("1234", "1234")):
        out = VllmAdapter().parse_text(f"INFO 01-22 18:27:20 [loggers.py:1] Engine {num}: " + STATS)
        assert out == [{**STATS_REC, "engine": engine}, LOG]


def test_json_aborts_are_counted_once_their_window_of_lines_passes() -> None:
    """Under a JSON logging config as in text: an abort waits three lines for its 5xx access line."""
    a = VllmAdapter()
    abort = {"levelname": "INFO", "name": "vllm.v1.engine.async_llm", "message": "Aborted request chat-46."}
    other = {"levelname": "INFO", "name": "vllm.v1.engine.async_llm", "message": "something else"}
    assert jfeed(a, abort) == [LOG]
    assert jfeed(a, other) == [LOG]
    assert jfeed(a, other) == [LOG]
    aborted = {"kind": "request", "provider": "vllm", "operation": "chat", "model": "", "outcome": "aborted",
               "error_type": "", "request_id": "chat-46"}
    assert jfeed(a, other) == [LOG, aborted]  # three lines on: no 5xx came, the client went away
    assert jfeed(a, other) == [LOG]


def test_json_records_hand_out_what_a_full_table_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 1)
    a = VllmAdapter()
    name = "vllm.entrypoints.logger"
    first = {"levelname": "INFO", "name": name,
             "message": "Received request cmpl-a1-0: prompt: 'p', params: X, lora_request: None."}
    assert jfeed(a, first) == [LOG]
    # an end line for an id not tracked starts it; the table then drops the open request (its
    # access line would count it)
    end = {"levelname": "INFO", "name": name, "message": "Finished request cmpl-b1-0."}
    assert jfeed(a, end) == [{**completion(), "request_id": "cmpl-b1"}, LOG,
                             {"kind": "evicted", "provider": "vllm", "n": 1}]


def test_an_output_line_with_no_id_ends_nothing() -> None:
    a = named()
    line = "INFO 01-22 18:27:20 [request_logger.py:108] Generated response  x: output: 'a', finish_reason: stop"
    assert feed(a, line) == [LOG]
    assert len(a.requests) == 0


def test_only_a_lora_request_repr_names_an_adapter() -> None:
    assert v._lora_name("prompt: 'p', lora_request: PromptAdapterX(lora_name='x', id=1)") is None
    assert v._lora_name("prompt: 'p', lora_request: LoRARequest(lora_name='x', lora_int_id=1)") == "x"


def test_a_stream_counted_after_its_grace_time_keeps_its_prompt_tokens_and_adapter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(VllmAdapter, "clock", staticmethod(lambda: now[0]))
    a = named()
    a.outputs_logged = True
    feed(a, "INFO 01-22 18:27:20 [logger.py:39] Received request chatcmpl-g1: prompt: 'p', params: X, "
            "prompt_token_ids: [1, 2, 3], lora_request: LoRARequest(lora_name='l1', lora_int_id=1).")
    assert feed(a, 'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK') == [
        http("/v1/chat/completions")]  # a stream: its end line is awaited
    now[0] += v.STREAM_GRACE
    assert a.flush() == [{"kind": "request", "provider": "vllm", "operation": "chat", "model": "",
                          "outcome": "success", "error_type": "", "request_id": "chatcmpl-g1",
                          "input_tokens": 3, "adapter": "l1"}]


def test_an_abort_dropped_from_a_full_table_within_its_window_is_still_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 1)
    a = named()
    assert feed(a, "INFO 12-05 09:57:05 async_llm_engine.py:180] Aborted request chat-46.") == [LOG]
    # the next request, on the next line, drops it from the table before a 5xx could say more
    out = feed(a, "INFO 12-05 09:57:05 [logger.py:39] Received request cmpl-n1-0: prompt: 'p', lora_request: None.")
    assert out == [{"kind": "request", "provider": "vllm", "operation": "chat", "model": "", "outcome": "aborted",
                    "error_type": "", "request_id": "chat-46"}, {"kind": "evicted", "provider": "vllm", "n": 1}, LOG]
    assert not a.aborting
    assert [r for r in a.flush() if r["kind"] == "request"] == []  # counted once


# -- an access line handed back to the request that ended before it -------------------------------------

RH = "INFO 11-30 06:56:50 [request_logger.py:1] "
CHAT_OK = 'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 200 OK'


def chat_ids(recs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r.get("request_id", ""), r["outcome"], r["error_type"]) for r in recs if r["kind"] == "request"]


def interleaved(a: VllmAdapter) -> None:
    """A non-streamed chat `a` ends by its output line, then two access lines come: `a`'s, and one
    taken for the open chat `b`; then stream `c` starts and its first delta claims the access line
    `a` had taken (a stream's access line comes before its output), so `a` awaits one again."""
    a.outputs_logged = True
    for rid in ("chatcmpl-a", "chatcmpl-b"):
        assert feed(a, RH + f"Received request {rid}: prompt: 'p', params: X, lora_request: None.") == [LOG]
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-a: output: 'x', finish_reason: stop")) == [
        ("chatcmpl-a", "success", "")]
    assert chat_ids(feed(a, CHAT_OK, CHAT_OK)) == []
    feed(a, RH + "Received request chatcmpl-c: prompt: 'p', params: X, lora_request: None.")
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-c (streaming delta): output: 'x', "
                              "finish_reason: None")) == []


def test_a_non_streamed_output_gives_its_access_line_back_to_a_request_already_ended() -> None:
    a = named()
    interleaved(a)
    # `b`'s output was not streamed: the access line it held follows another's output, `a`'s
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-b: output: 'x', finish_reason: stop")) == [
        ("chatcmpl-b", "success", "")]
    # a second output of `a` (n=2) counts nothing more
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-a: output: 'y', finish_reason: stop")) == []
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-c (streaming delta): output: 'x', "
                              "finish_reason: stop")) == [("chatcmpl-c", "success", "")]
    assert chat_ids(a.flush()) == []  # three requests, each once


def test_a_failed_request_gives_its_access_line_back_and_takes_its_own_5xx() -> None:
    a = named()
    interleaved(a)
    assert chat_ids(feed(a, RH + "Request chatcmpl-b failed (engine dead).")) == [
        ("chatcmpl-b", "error", "engine_dead")]
    # the 500 that follows is `b`'s own: counted already
    assert chat_ids(feed(a, CHAT_OK.replace("200 OK", "500 Internal Server Error"))) == []
    assert chat_ids(a.flush()) == []


def test_a_stream_after_the_table_dropped_the_request_that_took_an_access_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 2)
    a = named()
    a.outputs_logged = True
    feed(a, RH + "Received request chatcmpl-a: prompt: 'p', params: X, lora_request: None.")
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-a: output: 'x', finish_reason: stop",
                         CHAT_OK)) == [("chatcmpl-a", "success", "")]
    feed(a, RH + "Received request chatcmpl-b: prompt: 'p', params: X, lora_request: None.")
    out = feed(a, RH + "Received request chatcmpl-c: prompt: 'p', params: X, lora_request: None.")
    assert [r for r in out if r["kind"] == "evicted"] == [{"kind": "evicted", "provider": "vllm", "n": 1}]
    assert "chatcmpl-a" not in a.requests
    # the first delta of `c` finds the access line's taker gone: nothing to take back
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-c (streaming delta): output: 'x', "
                              "finish_reason: None")) == []
    assert chat_ids(feed(a, RH + "Generated response chatcmpl-c (streaming delta): output: 'x', "
                              "finish_reason: stop")) == [("chatcmpl-c", "success", "")]


def test_an_abort_counted_after_its_window_is_not_counted_again_when_the_table_drops_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 1)
    a = named()
    other = "INFO 12-05 09:57:06 x.py:1] something else"
    assert feed(a, "INFO 12-05 09:57:05 async_llm_engine.py:180] Aborted request chat-47.", other, other) == [
        LOG, LOG, LOG]
    assert chat_ids(feed(a, other)) == [("chat-47", "aborted", "")]
    out = feed(a, "INFO 12-05 09:57:07 [logger.py:39] Received request cmpl-n2-0: prompt: 'p', lora_request: None.")
    assert out == [{"kind": "evicted", "provider": "vllm", "n": 1}, LOG]
