"""vLLM's lines one by one: what each kind of line says, read to the exact record.

The stats lines are real vLLM output (tests/fixtures/samples/vllm.log and the issues cited in its
README); request lines are built from the 0.32 lines of test_vllm_accounting.py with other ids. Every
expected record is worked out by hand from the line.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_exporter import errors
from llm_exporter.adapters import vllm as v
from llm_exporter.adapters.base import IGNORED
from llm_exporter.adapters.vllm import VllmAdapter
from llm_exporter.records import validate_record

H = "(APIServer pid=16381) INFO 11-30 06:56:50 "
SP = "params: SamplingParams(n=1, temperature=1.0, max_tokens=5), lora_request: None."
LOG = {"kind": "log", "provider": "vllm", "level": "INFO"}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(VllmAdapter, "clock", staticmethod(c))
    return c


def feed(a: VllmAdapter, *lines: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ln in lines:
        res = a.parse_text(ln)
        if isinstance(res, dict):
            res = [res]
        if isinstance(res, list):
            out.extend(res)
    for r in out:
        validate_record(r)
    return out


def reqs(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["kind"] == "request"]


def req(op: str, outcome: str = "success", error_type: str = "", **kw: Any) -> dict[str, Any]:
    return {"kind": "request", "provider": "vllm", "operation": op, "model": "", "outcome": outcome,
            "error_type": error_type, **kw}


# -- the figures of a line ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("87.7%", 0.877), ("0.0%", 0.0), (" 2.0%.", 0.02), ("100%", 1.0), ("100.5%", None), ("-1.0%", None),
    ("12.5", None), ("abc%", None), ("%", None), ("50% ", 0.5), ("50%X.", None),
])
def test_percentages(text: str, want: float | None) -> None:
    assert v._pct(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("12068.8 tokens/s", 12068.8), ("18 reqs", 18.0), (" 3 reqs.", 3.0), ("0.0 tokens/s", 0.0),
    ("7.", 7.0), ("-1 reqs", None), ("many reqs", None),
    # the first word only, split at spaces alone; only closing dots are dropped
    ("1 2 3", 1.0), ("3\treqs", None), ("7..", 7.0), (".5 reqs", 0.5), ("7X", None),
])
def test_figures(text: str, want: float | None) -> None:
    assert v._num(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("[1, 2, 3]", 3), ("  [6313]", 1), ("[]", 0), ("[ ]", 0), ("[1,2], more [3]", 2), ("1, 2]", None),
    ("[1, 2", None), ("", None),
])
def test_id_lists(text: str, want: int | None) -> None:
    assert v._count_ids(text) == want


def test_prompt_tokens_are_read_from_the_right() -> None:
    assert v._prompt_tokens("prompt: 'a', params: X, prompt_token_ids: [1, 2, 3], lora_request: None") == 3
    # a prompt that quotes the field cannot fake the count: the last one is vLLM's
    assert v._prompt_tokens("prompt: 'prompt_token_ids: [9]', prompt_token_ids: [4, 5], lora") == 2
    assert v._prompt_tokens("prompt: 'x', params: SamplingParams(n=1), lora_request: None") is None


@pytest.mark.parametrize(("text", "want"), [
    ("x, lora_request: LoRARequest(lora_name='sql-lora', lora_int_id=1, lora_path='/tmp/l')", "sql-lora"),
    ('x, lora_request: LoRARequest(lora_name="dq", lora_int_id=1)', "dq"),
    ("x, lora_request: None.", None),
    ("x, lora_request: LoRARequest(lora_name='', lora_int_id=1)", None),
    ("x, lora_request: LoRARequest(lora_name=sql, lora_int_id=1)", None),
    ("x, lora_request: LoRARequest(lora_name='never-closed", None),
    ("x, lora_request: LoRARequest(lora_name='', lora_int_id=1, lora_path='/tmp/l')", None),
    # a name that itself holds `lora_name=`: the field right after `LoRARequest(` is read
    ("x, lora_request: LoRARequest(lora_name='lora_name=x', lora_int_id=1)", "lora_name=x"),
    # the prompt's own `lora_name='...'` before vLLM's repr is never read
    ("prompt: 'lora_name='p'', params: X, lora_request: LoRARequest(lora_int_id=1, lora_name='real')", "real"),
    # `lora_name=` is looked for in the repr's first 32 characters (so within 22 after the first field)
    ("x, lora_request: LoRARequest(" + "a" * 22 + "lora_name='x')", "x"),
    ("x, lora_request: LoRARequest(" + "a" * 23 + "lora_name='x')", None),
    # the name must be read within the repr's first fields, not from a path much later
    ("x, lora_request: LoRARequest(lora_int_id=1, lora_path='/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', "
     "lora_name='late')", None),
    # user text before the repr that looks like one is not read: the last repr is vLLM's
    ("prompt: ', lora_request: LoRARequest(lora_name='fake')', params: X, lora_request: None.", None),
    # only vLLM's LoRARequest repr names an adapter, not another value that mentions a `lora_name`
    ("x, lora_request: None, other_request: Req(lora_name='not-lora')", None),
])
def test_lora_names(text: str, want: str | None) -> None:
    assert v._lora_name(text) == want


def test_lora_name_of_256_characters_or_more_is_not_read() -> None:
    assert v._lora_name(f"x, lora_request: LoRARequest(lora_name='{'a' * 255}', lora_int_id=1)") == "a" * 255
    assert v._lora_name(f"x, lora_request: LoRARequest(lora_name='{'a' * 256}', lora_int_id=1)") is None


@pytest.mark.parametrize(("rid", "want"), [
    ("cmpl-8aa8d4648611ba23-0", "cmpl-8aa8d4648611ba23"), ("cmpl-8aa8d4648611ba23-12", "cmpl-8aa8d4648611ba23"),
    ("cmpl-8aa8d4648611ba23-x", "cmpl-8aa8d4648611ba23-x"), ("cmpl-0", "cmpl-0"), ("cmpl-a-1", "cmpl-a"),
    ("chatcmpl-abc-0", "chatcmpl-abc-0"), ("cmpl-" + "a" * 200, "cmpl-" + "a" * 123), ("cmpl--1", "cmpl--1"),
])
def test_request_keys(rid: str, want: str) -> None:
    assert v._key(rid) == want


@pytest.mark.parametrize(("rid", "want"), [
    ("chatcmpl-1", "chat"), ("chat-1", "chat"), ("cmpl-1", "text_completion"), ("resp_1", "chat"),
    ("resp-1", "chat"), ("embd-1", "embeddings"), ("score-1", "score"), ("rerank-1", "rerank"),
    ("pooling-1", "pooling"), ("classify-1", "classify"), ("transcribe-1", "transcription"),
    ("translate-1", "translation"), ("tokenize-1", None), ("detokenize-1", None), ("be67046b8432", ""),
])
def test_operations_by_id_prefix(rid: str, want: str | None) -> None:
    assert v._operation(rid) == want


def test_ids_and_hex() -> None:
    assert v._id("chat-4656e70d011f4049913ba3b1ab64a702.") == "chat-4656e70d011f4049913ba3b1ab64a702"
    assert v._id("abc def.") == "abc"
    assert v._id("abc. ") == "abc"
    assert v._id("abc def ghi") == "abc"
    assert v._id("req-X.") == "req-X"  # a client's own id: only the closing dot goes
    assert v._id("abc\tdef") == "abc\tdef"  # split at spaces, as vLLM writes them
    assert v._is_hex("809c990e") and not v._is_hex("809c990g") and not v._is_hex("809C990E")
    assert not v._is_hex("809c990X")


@pytest.mark.parametrize(("msg", "want"), [
    ("", True), ("  File \"x.py\", line 1", True), ("\tat x", True), (")", True), ("]", True), ("}x", True),
    ("Traceback (most recent call last):", True), ("^^^^", True), ("ValueError: bad", True),
    ("Xformers is not available", False), ("slow tokenizer", False),
])
def test_traceback_continuation_lines(msg: str, want: bool) -> None:
    assert v._is_continuation(msg) is want


# -- stats lines -----------------------------------------------------------------------------------

V0 = ("INFO 02-28 21:48:18 metrics.py:161] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: "
      "44.9 tokens/s, Running: 2 reqs, Swapped: 0 reqs, Pending: 3 reqs, GPU KV cache usage: 82.1%, "
      "CPU KV cache usage: 0.0%")
V1 = ("(APIServer pid=719) INFO 06-05 14:58:46 [loggers.py:271] Engine 000: Avg prompt throughput: 410.1 "
      "tokens/s, Avg generation throughput: 0.2 tokens/s, Running: 8 reqs, Waiting: 0 reqs, GPU KV cache "
      "usage: 16.6%, Prefix cache hit rate: 0.0%")
AGG = ("(APIServer pid=66) INFO 09-02 08:46:23 [v1/metrics/loggers.py:271] 2 Engines Aggregated: Avg prompt "
       "throughput: 0.0 tokens/s, Avg generation throughput: 11.5 tokens/s, Running: 0 reqs, Waiting: 0 reqs, "
       "GPU KV cache usage: 0.0%, Prefix cache hit rate: 50.0%")


def stats(engine: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "stats", "provider": "vllm", "model": "", "engine": engine, **kw}


def test_v0_stats_line() -> None:
    assert feed(VllmAdapter(), V0) == [
        stats("", prompt_tps=0.0, generation_tps=44.9, running=2.0, swapped=0.0, waiting=3.0,
              kv_cache_usage=0.821), LOG]


def test_v1_engine_stats_line() -> None:
    assert feed(VllmAdapter(), V1) == [
        stats("0", prompt_tps=410.1, generation_tps=0.2, running=8.0, waiting=0.0, kv_cache_usage=0.166,
              prefix_cache_hit=0.0), LOG]
    one = V1.replace("Engine 000:", "Engine 012:")
    assert feed(VllmAdapter(), one)[0]["engine"] == "12"


def test_aggregated_stats_line() -> None:
    assert feed(VllmAdapter(), AGG) == [
        stats("all", prompt_tps=0.0, generation_tps=11.5, running=0.0, waiting=0.0, kv_cache_usage=0.0,
              prefix_cache_hit=0.5), LOG]


def test_lines_that_only_look_like_stats_are_logs() -> None:
    a = VllmAdapter()
    for msg in ("Engine x: Avg prompt throughput: 1.0 tokens/s", "Engine 000 Avg prompt throughput: 1.0",
                "Engine 000: started", "2 Engines Aggregated: done", "3 engines up",
                # the same figures behind another start
                "Engine:000: Avg prompt throughput: 1.0 tokens/s", "Prefix cache hit rate (GPU):50.0%"):
        assert feed(a, H + "[x.py:1] " + msg) == [LOG], msg


def test_cpu_kv_cache_counts_when_the_gpu_one_is_absent() -> None:
    line = "INFO 02-28 21:48:18 metrics.py:161] Avg prompt throughput: 1.0 tokens/s, CPU KV cache usage: 5.0%"
    assert feed(VllmAdapter(), line)[0] == stats("", prompt_tps=1.0, kv_cache_usage=0.05)
    line = "INFO 02-28 21:48:18 metrics.py:161] Avg prompt throughput: 1.0 tokens/s, Running 2 reqs, Other: 1"
    assert feed(VllmAdapter(), line)[0] == stats("", prompt_tps=1.0)
    # a part with no figure is passed over, the parts after it still read
    line = "INFO 02-28 21:48:18 metrics.py:161] Avg prompt throughput: 1.0 tokens/s, Running 2 reqs, Waiting: 3 reqs"
    assert feed(VllmAdapter(), line)[0] == stats("", prompt_tps=1.0, waiting=3.0)


def test_v0_prefix_cache_line() -> None:
    line = "INFO 08-20 02:39:37 metrics.py:427] Prefix cache hit rate: GPU: 12.50%, CPU: 0.00%"
    assert feed(VllmAdapter(), line) == [stats("", prefix_cache_hit=0.125), LOG]
    more = "INFO 08-20 02:39:37 metrics.py:427] Prefix cache hit rate: GPU: 12.50%, CPU: 0.00%, other: 1"
    assert feed(VllmAdapter(), more)[0] == stats("", prefix_cache_hit=0.125)
    bad = "INFO 08-20 02:39:37 metrics.py:427] Prefix cache hit rate: GPU: n/a, CPU: 0.00%"
    assert feed(VllmAdapter(), bad) == [LOG]


def test_stats_with_traffic_and_no_request_lines_hint_once_on_the_third() -> None:
    a = VllmAdapter()
    idle = V0.replace("44.9 tokens/s", "0.0 tokens/s")
    assert [r["kind"] for r in feed(a, idle, idle, idle, idle)] == ["stats", "log"] * 4
    assert a.busy_stats == 0
    kinds = [r["kind"] for r in feed(a, V0, V0, V0, V0)]
    assert kinds == ["stats", "log", "stats", "log", "stats", "hint", "log", "stats", "log"]
    assert a.busy_stats == 4
    prompt_only = V0.replace("44.9 tokens/s", "0.0 tokens/s").replace("throughput: 0.0 tokens/s, Avg",
                                                                       "throughput: 5.0 tokens/s, Avg", 1)
    b = VllmAdapter()
    feed(b, prompt_only)
    assert b.busy_stats == 1
    # one advice per stream: access lines with no request line that follow say nothing more
    acc_line = 'INFO:     127.0.0.1:35022 - "POST /v1/completions HTTP/1.1" 200 OK'
    assert [r for r in feed(a, acc_line, acc_line, acc_line) if r["kind"] == "hint"] == []


def test_served_model_name_names_the_model_of_later_records() -> None:
    a = VllmAdapter()
    init = (H + "[core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='/m/tiny', "
            "speculative_config=None, served_model_name=tiny-llama, enable_prefix_caching=True")
    assert feed(a, init) == [LOG]
    assert a.model == "tiny-llama"
    assert feed(a, V0)[0]["model"] == "tiny-llama"
    feed(a, init.replace("served_model_name=tiny-llama", "served_model_name=None"))
    assert a.model == "tiny-llama"
    feed(a, init.replace("served_model_name=tiny-llama, enable", "served_model_name=" + "m" * 250))
    assert a.model == "m" * 200
    feed(a, H + "[x.py:1] Initializing served_model_name=other")
    assert a.model == "other"
    feed(a, H + "[x.py:1] Loading served_model_name=third")
    assert a.model == "other"


def test_non_default_args_say_whether_outputs_are_logged() -> None:
    a = VllmAdapter()
    args = H + "[api_utils.py:286] non-default args: {'host': '127.0.0.1', 'enable_log_requests': True}"
    assert feed(a, args) == [LOG]
    assert not a.outputs_logged
    feed(a, args.replace("'host'", "'enable_log_outputs': True, 'host'"))
    assert a.outputs_logged
    # only the message's first 4000 characters are read: the flag's last character at 3999, then at 4000
    head = "non-default args: {'x': '"
    flag = "', 'enable_log_outputs': True"
    for n, seen in ((4000, True), (4001, False)):
        late = VllmAdapter()
        feed(late, H + "[api_utils.py:286] " + head + "y" * (n - len(head) - len(flag)) + flag + "}")
        assert late.outputs_logged is seen, n


# -- request lines ---------------------------------------------------------------------------------


def recv(rid: str, tail: str = SP) -> str:
    return H + f"[request_logger.py:65] Received request {rid}: {tail}"


def gen(rid: str, tail: str) -> str:
    return H + f"[request_logger.py:108] Generated response {rid}{tail}"


def test_received_then_generated_is_one_request_with_its_duration(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-a209332297da4135"
    tail = ("prompt: 'hi', params: X, prompt_token_ids: [1, 2, 3, 4], lora_request: "
            "LoRARequest(lora_name='sql-lora', lora_int_id=1)")
    assert reqs(feed(a, recv(rid, tail))) == []
    clock.t += 2.5
    out = reqs(feed(a, gen(rid, ": output: 'x y', output_token_ids: [7, 8], finish_reason: length")))
    assert out == [req("chat", request_id=rid, input_tokens=4, adapter="sql-lora", finish_reason="length",
                       output_tokens=2, duration_s=2.5)]
    assert a.outputs_logged and a.id_lines


def test_generated_without_token_ids_or_finish_reason(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-8a85c7cd1c9e9ae8"
    feed(a, recv(rid))
    clock.t += 1.0
    out = reqs(feed(a, gen(rid, ": output: 'x y', finish_reason: None")))
    assert out == [req("chat", request_id=rid, duration_s=1.0)]
    # a second output line of the same request (n>1) counts nothing more
    assert reqs(feed(a, gen(rid, ": output: 'z', finish_reason: stop"))) == []


def test_generated_abort_is_an_aborted_request() -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-1"))
    out = feed(a, gen("chatcmpl-1", ": output: '', finish_reason: abort"))
    assert reqs(out) == [] and a.aborting  # held: a 5xx access line may follow
    rest = a.flush()
    assert [(r["outcome"], r.get("finish_reason")) for r in reqs(rest)] == [("aborted", "abort")]


def test_streamed_deltas_add_their_token_ids(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-ba7c746153081a9d"
    feed(a, recv(rid))
    assert feed(a, gen(rid, " (streaming delta): output: '! ', output_token_ids: [6313], finish_reason: None")) \
        == [LOG]
    feed(a, gen(rid, " (streaming delta): output: 'a b', output_token_ids: [1, 2], finish_reason: None"))
    clock.t += 4.0
    out = reqs(feed(a, gen(rid, " (streaming delta): output: 'c', output_token_ids: [3], finish_reason: stop")))
    assert out == [req("chat", request_id=rid, finish_reason="stop", output_tokens=4, duration_s=4.0)]
    assert a.requests[rid].stream
    done = gen(rid, " (streaming complete): output: '! a bc', output_token_ids: [6313, 1, 2, 3], "
                    "finish_reason: streaming_complete")
    assert reqs(feed(a, done)) == []


def test_a_delta_of_an_unknown_id_starts_its_request(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-0c1d"
    feed(a, gen(rid, " (streaming delta): output: 'a', output_token_ids: [5, 6], finish_reason: None"))
    assert a._resolve(rid) == rid and a.requests[rid].out_tokens == 2
    out = reqs(feed(a, gen(rid, " (streaming delta): output: 'b', finish_reason: length")))
    assert out == [req("chat", request_id=rid, finish_reason="length", output_tokens=2, duration_s=0.0)]


def test_debug_output_token_ids_lines(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-d0"
    feed(a, recv(rid))
    dbg = "(APIServer pid=1) DEBUG 11-30 06:56:50 [request_logger.py:120] Generated response "
    assert reqs(feed(a, dbg + rid + " details: output_token_ids: [1, 2, 3]")) == []
    assert a.requests[rid].out_tokens == 3
    feed(a, dbg + rid + " (streaming delta) details: output_token_ids: [4, 5]")
    assert a.requests[rid].out_tokens == 5
    feed(a, dbg + rid + " (streaming complete) details: output_token_ids: [1, 2, 3, 4, 5]")
    assert a.requests[rid].out_tokens == 5
    feed(a, dbg + rid + " no details here")
    out = reqs(feed(a, gen(rid, ": output: 'x', finish_reason: stop")))
    assert out == [req("chat", request_id=rid, finish_reason="stop", output_tokens=5, duration_s=0.0)]


def test_finished_and_aborted_lines_end_requests(clock: Clock) -> None:
    a = VllmAdapter()
    feed(a, recv("cmpl-f1-0"), recv("cmpl-f2-0"))
    clock.t += 3.0
    fin = "INFO 04-10 03:35:51 [async_llm.py:1] Finished request cmpl-f1-0."
    assert reqs(feed(a, fin)) == [req("text_completion", request_id="cmpl-f1", duration_s=3.0)]
    ab = "INFO 04-10 03:35:51 [async_llm_engine.py:134] Aborted request(s) cmpl-f2-0, cmpl-f3-0."
    assert reqs(feed(a, ab)) == []
    assert list(a.aborting) == ["cmpl-f2", "cmpl-f3"]
    later = reqs(a.flush())
    assert [(r["request_id"], r["outcome"], "duration_s" in r) for r in later] == \
        [("cmpl-f2", "aborted", True), ("cmpl-f3", "aborted", False)]


def _abort_line(ids: list[str]) -> str:
    return "INFO 04-10 03:35:51 [async_llm_engine.py:134] Aborted request(s) " + ",".join(ids) + "."


LONGEST = [f"chatcmpl-{i:03d}" + "a" * (v.MAX_ID - 12) for i in range(41)]
#: vLLM's own ids: `chatcmpl-` and 32 hex digits, 41 characters (42 with the comma after them)
SHORT = [f"chatcmpl-{i:032x}" for i in range(130)]


@pytest.mark.parametrize(("ids", "read"), [
    (LONGEST[:40], 40),  # 40 ids of the longest length, 5,160 characters with their commas: all read
    ([*LONGEST[:40], "chatcmpl-z"], 40),  # past those, a short 41st is not
    # 122 ids take 5,124 characters; the 123rd is cut by the bound at 5,160: neither it nor a
    # request under its cut id is counted (its own end line or access line counts it)
    (SHORT, 122),
])
def test_an_abort_line_is_read_up_to_a_bound_and_only_in_whole_ids(ids: list[str], read: int) -> None:
    a = VllmAdapter()
    feed(a, *[recv(rid) for rid in ids])
    assert reqs(feed(a, _abort_line(ids))) == []
    assert [(r["request_id"], r["outcome"]) for r in reqs(a.flush())] == [(rid, "aborted") for rid in ids[:read]]
    assert sorted(a.requests) == sorted(ids)
    assert [k for k in ids if a.requests[k].state == v._OPEN] == ids[read:]


def test_an_aborted_request_is_counted_once_its_window_passes() -> None:
    a = VllmAdapter()
    feed(a, "INFO 12-05 09:57:05 async_llm_engine.py:180] Aborted request chat-4656e70d011f4049913ba3b1ab64a702.")
    assert len(a.aborting) == 1
    other = "INFO 12-05 09:57:06 x.py:1] something else"
    assert reqs(feed(a, other, other)) == []
    out = reqs(feed(a, other))  # three lines on: no 5xx came, the client went away
    assert out == [req("chat", "aborted", request_id="chat-4656e70d011f4049913ba3b1ab64a702")]
    assert not a.aborting


def test_an_abort_then_its_500_is_one_failed_request() -> None:
    a = VllmAdapter()
    a.seen = True
    feed(a, "INFO 12-05 09:57:05 async_llm_engine.py:180] Aborted request chat-46.")
    out = feed(a, 'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error')
    assert [(r["outcome"], r["error_type"]) for r in reqs(out)] == [("error", errors.OTHER)]
    assert reqs(a.flush()) == []


@pytest.mark.parametrize(("msg", "want"), [
    ("Request cmpl-r1-0 aborted.", ("aborted", "")),
    ("Request cmpl-r1-0 failed (engine dead).", ("error", "engine_dead")),
    ("Request cmpl-r1-0 failed (bad request): This model's maximum context length is 512 tokens.",
     ("error", "validation")),
    ("Request cmpl-r1-0 failed (bad request): something odd.", ("error", "validation")),
    ("Request cmpl-r1-0 failed (other): something odd.", ("error", errors.OTHER)),
    ("Request cmpl-r1-0 failed (other): CUDA out of memory.", ("error", "oom")),
])
def test_request_lines_of_asyncllm(msg: str, want: tuple[str, str]) -> None:
    a = VllmAdapter()
    feed(a, recv("cmpl-r1-0"))
    out = reqs(feed(a, H + "[async_llm.py:1] " + msg)) + reqs(a.flush())
    assert [(r["outcome"], r["error_type"], r["request_id"]) for r in out] == [(*want, "cmpl-r1")]


def test_request_lines_of_the_longest_id_read() -> None:
    a = VllmAdapter()
    rid = "cmpl-" + "b" * (v.MAX_ID - 5)
    feed(a, recv(rid))
    out = reqs(feed(a, H + f"[async_llm.py:1] Request {rid} aborted.")) + reqs(a.flush())
    assert [(r["outcome"], r["request_id"]) for r in out] == [("aborted", rid)]
    assert list(a.requests) == [rid]


def test_request_details_line_gives_the_prompt_tokens() -> None:
    a = VllmAdapter()
    feed(a, recv("cmpl-d1-0"))
    d = "(APIServer pid=1) DEBUG 11-30 06:56:50 [async_llm.py:1] Request cmpl-d1-0 details: prompt: 'a', "
    assert reqs(feed(a, d + "prompt_token_ids: [1, 2, 3, 4, 5], params: X")) == []
    assert a.requests["cmpl-d1"].in_tokens == 5
    feed(a, d + "params: X")  # no ids: nothing changes
    assert a.requests["cmpl-d1"].in_tokens == 5
    assert reqs(feed(a, d.replace("cmpl-d1-0", "cmpl-zz-0") + "prompt_token_ids: [1]")) == []
    assert reqs(feed(a, H + "[async_llm.py:1] Request cmpl-d1-0 is being processed")) == []


def test_engine_ids_fold_into_the_serving_id() -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-9e87"))
    assert a._resolve("chatcmpl-9e87-87ed70e1") == "chatcmpl-9e87"
    assert a._resolve("0_chatcmpl-9e87-87ed70e1") == "chatcmpl-9e87"
    assert a._resolve("12_chatcmpl-9e87") == "chatcmpl-9e87"
    assert a._resolve("chatcmpl-9e87-87ed70eg") is None  # not vLLM's hex suffix
    assert a._resolve("chatcmpl-9e87-87ed70e") is None
    assert a._resolve("x_chatcmpl-9e87") is None
    feed(a, recv("cmpl-b4-0"))
    assert a._resolve("cmpl-b4-1-90ce1094") == "cmpl-b4"
    assert a._resolve("cmpl-b4-1") == "cmpl-b4"
    added = "INFO 11-30 06:56:50 [async_llm.py:578] Added request chatcmpl-9e87-87ed70e1."
    assert reqs(feed(a, added)) == [] and len(a.requests) == 2


def test_added_request_alone_starts_a_request() -> None:
    a = VllmAdapter()
    feed(a, "INFO 11-30 06:56:50 [async_llm.py:578] Added request chatcmpl-5.")
    assert list(a.requests) == ["chatcmpl-5"]


def test_received_id_is_cut_at_its_colon_or_space() -> None:
    a = VllmAdapter()
    feed(a, H + "[request_logger.py:65] Received request chatcmpl-77: prompt: 'x: y'")
    feed(a, H + "[request_logger.py:65] Received request chatcmpl-78 prompt: 'x'")
    feed(a, H + "[request_logger.py:65] Received request chatcmpl-79 with prompt: 'x'")
    assert list(a.requests) == ["chatcmpl-77", "chatcmpl-78", "chatcmpl-79"]


def test_an_id_of_the_longest_length_read_is_one_request(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-" + "a" * (v.MAX_ID - 9)
    feed(a, recv(rid))
    clock.t += 1.0
    assert reqs(feed(a, gen(rid, ": output: 'x', finish_reason: stop"))) == [
        req("chat", request_id=rid, finish_reason="stop", duration_s=1.0)]


def test_messages_that_start_like_request_lines_are_logs() -> None:
    """A message is read by its whole fixed start, not by its first letter."""
    a = VllmAdapter()
    for msg in ("Flash attention is not available on this GPU", "GPU KV cache size: 1,234 tokens",
                "note: {'enable_log_outputs': True} is ignored here"):
        assert feed(a, H + "[x.py:1] " + msg) == [LOG], msg
    assert not a.requests and not a.outputs_logged


def test_tokenize_requests_are_no_inference() -> None:
    a = VllmAdapter()
    feed(a, H + "[request_logger.py:65] Received request tokenize-86: params: None, lora_request: None.")
    assert not a.requests and not a.id_lines


# -- the line's frame ------------------------------------------------------------------------------


def test_headers_with_and_without_the_bracket_and_prefixes() -> None:
    for line in ("INFO 01-22 18:27:20 metrics.py:449] Running: 1 reqs",
                 "INFO 01-22 18:27:20 [metrics.py:449] Running: 1 reqs",
                 "(EngineCore_DP0 pid=9) INFO 01-22 18:27:20 [metrics.py:449] Running: 1 reqs",
                 "(APIServer pid=1) (EngineCore pid=9) INFO 01-22 18:27:20 [metrics.py:449] Running: 1 reqs"):
        a = VllmAdapter()
        assert feed(a, line) == [LOG], line
        assert a.seen
    for line in ("INFO 01-22 18 [metrics.py:449] x", "INFO 01-22", "INFO 2024-01-22 18:27:20 x] y",
                 "INFO 0x-22 18:27:20 x] y",
                 "INFO 01-22T18:27:20 [x.py:1] y", "INFO 01-22 18-27-20 [x.py:1] y", "INFO 01/22 18:27:20 [x.py:1] y",
                 "NOTICE 01-22 18:27:20 [x.py:1] y", "INFO 01-22 18:27:20 no closing bracket here",
                 "(no pid here) INFO 01-22 18:27:20 [x.py:1] y", "(APIServer pid=1) plain words"):
        assert VllmAdapter().parse_text(line) in (None, IGNORED), line
    assert feed(VllmAdapter(), "INFO 01-22 18:27:20 [x.py:1]") == [LOG]


def test_a_warning_is_one_log_record_when_the_next_record_starts() -> None:
    a = VllmAdapter()
    w = "WARNING 01-22 18:27:20 [x.py:1] slow tokenizer"
    assert feed(a, w) == []
    assert feed(a, V0)[0] == {"kind": "log", "provider": "vllm", "level": "WARNING"}


def test_critical_records_and_worker_processes() -> None:
    a = VllmAdapter()
    feed(a, "CRITICAL 01-22 18:27:20 [x.py:1] torch.OutOfMemoryError: CUDA out of memory.")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "CRITICAL", "error_type": "oom"}]
    # a worker process's error is a server incident
    feed(a, "(VllmWorker rank=0 pid=9) ERROR 01-22 18:27:20 [x.py:1] RuntimeError: boom")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]
    # the API server saying the engine died, on the record's first line
    feed(a, "(APIServer pid=1) ERROR 01-22 18:27:20 [x.py:1] EngineCore encountered a fatal error.")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]


def test_uvicorn_lines_behind_timestamps_are_access_lines() -> None:
    a = VllmAdapter()
    a.seen = True
    line = '2025-01-01 10:00:00,123 uvicorn.access 127.0.0.1:1 - "POST /v1/completions HTTP/1.1" 200'
    out = feed(a, line)
    assert [r["kind"] for r in out] == ["http", "request"]
    out = feed(a, 'uvicorn.access 127.0.0.1:1 - "POST /v1/embeddings HTTP/1.1" 200')
    assert reqs(out) == [req("embeddings")]
    assert a.parse_text("2025-01-01 10:00:00,123 other.logger hello") is None


def test_uvicorn_own_lines_are_ignored_and_close_a_held_record() -> None:
    a = VllmAdapter()
    assert a.parse_text("(APIServer pid=1) INFO:     Started server process [1]") is IGNORED
    feed(a, "ERROR 01-22 18:27:20 [x.py:1] boom")
    out = feed(a, '(APIServer pid=1) INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK')
    assert [r["kind"] for r in out] == ["log", "http"]


def test_stderr_traceback_behind_a_prefix_is_one_error_record() -> None:
    a = VllmAdapter()
    assert feed(a, "(EngineCore pid=9) Traceback (most recent call last):") == []
    assert feed(a, '(EngineCore pid=9)   File "x.py", line 1, in f') == []
    assert feed(a, "(EngineCore pid=9) torch.OutOfMemoryError: CUDA out of memory.") == []
    out = a.flush()
    assert out[0] == {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"}
    assert out[1] == {"kind": "server_error", "provider": "vllm", "error_type": "oom"}
    assert a.parse_text("(EngineCore pid=9) some stray stderr") is IGNORED


def test_json_record_behind_a_prefix() -> None:
    a = VllmAdapter()
    line = '(APIServer pid=3646) {"message": "' + V1.split("[loggers.py:271] ")[1] + '"}'
    out = feed(a, line)
    assert out[0] == stats("0", prompt_tps=410.1, generation_tps=0.2, running=8.0, waiting=0.0,
                           kv_cache_usage=0.166, prefix_cache_hit=0.0)
    assert a.parse_text('(APIServer pid=1) {"other": 1}') is IGNORED
    # behind vLLM's prefix, any record with a message is vLLM's own
    assert feed(a, '(APIServer pid=1) {"message": "hello", "levelname": "INFO"}') == [LOG]


# -- access lines and the requests they pair with ----------------------------------------------------


def acc(code: int, path: str = "/v1/completions") -> str:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}[code]
    return f'INFO:     127.0.0.1:35022 - "POST {path} HTTP/1.1" {code} {reason}'


def started() -> VllmAdapter:
    a = VllmAdapter()
    feed(a, H + "[api_server.py:1] vLLM API server version 0.32.0")
    return a


def test_access_line_ends_the_request_vllm_prints_no_end_line_for() -> None:
    a = started()
    feed(a, recv("cmpl-a1-0"), recv("cmpl-a2-0"))
    assert reqs(feed(a, acc(200))) == [req("text_completion", request_id="cmpl-a1")]  # the oldest first
    assert a.requests["cmpl-a1"].by_access and a.requests["cmpl-a1"].state == v._DONE
    assert reqs(feed(a, acc(200))) == [req("text_completion", request_id="cmpl-a2")]
    assert reqs(feed(a, acc(200))) == [req("text_completion")]  # one with no id line: no request_id


def test_access_lines_with_no_request_tracked() -> None:
    a = started()
    assert reqs(feed(a, acc(500))) == [req("text_completion", "error", errors.OTHER)]
    assert reqs(feed(a, acc(404))) == [req("text_completion", "error", "not_found")]
    assert a.orphan is None  # an error opens no stream
    assert reqs(feed(a, acc(200, "/v1/embeddings"))) == [req("embeddings")]
    assert a.orphan == ("embeddings", a.lines)
    kinds = [r["kind"] for r in feed(a, acc(200, "/health"))]
    assert kinds == ["http"]


def test_access_only_hint_comes_once_on_the_third_request() -> None:
    a = started()
    hints = [r for ln in [acc(200)] * 5 for r in feed(a, ln) if r["kind"] == "hint"]
    assert hints == [{"kind": "hint", "provider": "vllm", "hint": "vllm_access_log_only"}]
    assert a.access_only == 5 and a.hinted
    b = started()
    feed(b, recv("cmpl-h-0"))
    assert not [r for ln in [acc(200)] * 5 for r in feed(b, ln) if r["kind"] == "hint"]
    assert b.access_only == 0


def test_a_log_that_begins_inside_a_stream_counts_it_once() -> None:
    """The stream's access line (2xx, counted) comes just before the first line of its request."""
    a = started()
    assert len(reqs(feed(a, acc(200, "/v1/chat/completions")))) == 1
    feed(a, recv("chatcmpl-s1"))
    assert a.requests["chatcmpl-s1"].state == v._DONE and a.requests["chatcmpl-s1"].by_access
    out = feed(a, gen("chatcmpl-s1", " (streaming delta): output: 'x', finish_reason: stop"))
    assert reqs(out) == [] and a.orphan is None
    # further away than two lines, the next request is a new one
    b = started()
    feed(b, acc(200, "/v1/chat/completions"), V0, V0, recv("chatcmpl-s2"))
    assert b.requests["chatcmpl-s2"].state == v._OPEN


def test_access_lines_before_any_vllm_line_are_claimed_once_one_names_the_server() -> None:
    a = VllmAdapter()
    out = feed(a, acc(200), acc(400, "/v1/chat/completions"))
    assert [r["kind"] for r in out] == ["http", "http"]  # not yet known to be vLLM's
    assert len(a.unknown) == 2
    claimed = feed(a, V0)
    assert reqs(claimed) == [req("text_completion"), req("chat", "error", "validation")]
    assert [r["kind"] for r in claimed] == ["request", "request", "stats", "log"]  # their http records came
    assert a.unknown == [] and a.shared["server"] == "vllm"
    b = VllmAdapter()
    for _ in range(v.MAX_UNKNOWN + 5):
        b.parse_text(acc(200))
    assert len(b.unknown) == v.MAX_UNKNOWN


def test_failed_request_with_its_error_access_line_is_counted_once(clock: Clock) -> None:
    a = started()
    feed(a, recv("cmpl-e1-0"))
    out = feed(a, H + "[async_llm.py:1] Request cmpl-e1-0 failed (bad request): max_tokens must be < 512.")
    assert reqs(out) == [req("text_completion", "error", "validation", request_id="cmpl-e1", duration_s=0.0)]
    assert reqs(feed(a, acc(400))) == []  # its own access line: counted already
    assert a.requests["cmpl-e1"].state == v._DONE
    assert reqs(feed(a, acc(400))) == [req("text_completion", "error", "validation")]  # another request


def test_ended_requests_paired_with_their_access_lines_are_remembered_boundedly() -> None:
    a = started()
    for i in range(70):
        rid = f"chatcmpl-p{i}"
        feed(a, recv(rid), gen(rid, ": output: 'x', finish_reason: stop"), acc(200, "/v1/chat/completions"))
    p = a.paired_ended["chat"]
    assert len(p) == 64 and next(iter(p)) == "chatcmpl-p6" and next(reversed(p)) == "chatcmpl-p69"
    assert all(a.requests[f"chatcmpl-p{i}"].state == v._DONE for i in range(70))


def test_a_stream_waits_for_its_end_line_when_outputs_are_logged(clock: Clock) -> None:
    a = started()
    a.outputs_logged = True
    feed(a, recv("chatcmpl-w1"))
    assert reqs(feed(a, acc(200, "/v1/chat/completions"))) == []
    assert a.requests["chatcmpl-w1"].state == v._WAIT and a.requests["chatcmpl-w1"].waiting_since == 100.0
    clock.t += 2.0
    out = reqs(feed(a, gen("chatcmpl-w1", " (streaming delta): output: 'x', finish_reason: stop")))
    assert out == [req("chat", request_id="chatcmpl-w1", finish_reason="stop", duration_s=2.0)]
    # one whose end line never comes is counted after the grace time, at the next flush
    feed(a, recv("chatcmpl-w2"), acc(200, "/v1/chat/completions"))
    clock.t += v.STREAM_GRACE - 1
    assert reqs(a.flush()) == []
    clock.t += 1
    assert reqs(a.flush()) == [req("chat", request_id="chatcmpl-w2")]
    assert reqs(a.flush()) == []


def test_the_newest_open_chat_takes_a_stream_access_line() -> None:
    a = started()
    a.outputs_logged = True
    feed(a, recv("chatcmpl-n1"), recv("chatcmpl-n2"), acc(200, "/v1/chat/completions"))
    assert a.requests["chatcmpl-n2"].state == v._WAIT and a.requests["chatcmpl-n1"].state == v._OPEN


# -- error records and JSON logging ------------------------------------------------------------------

ERR = "(APIServer pid=1) ERROR 11-30 06:56:50 [serving_chat.py:1] "
CORE = "(EngineCore_DP0 pid=9) ERROR 11-30 06:56:50 [core.py:1] "


def test_an_engine_process_error_is_a_server_incident() -> None:
    a = started()
    assert feed(a, CORE + "EngineCore encountered a fatal error.", CORE + "Traceback (most recent call last):",
                CORE + '  File "core.py", line 1, in run', CORE + "ValueError: boom") == []
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]


def test_an_engine_process_error_takes_the_class_its_first_line_says() -> None:
    a = started()
    feed(a, CORE + "EngineCore failed to start: deadline exceeded", CORE + "RuntimeError: gave up")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "timeout"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "timeout"}]


def test_an_engine_process_oom_keeps_its_class() -> None:
    a = started()
    feed(a, CORE + "EngineCore encountered a fatal error.", CORE + "torch.OutOfMemoryError: CUDA out of memory.")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "oom"}]


def test_an_engine_process_error_about_one_request_is_no_server_incident() -> None:
    """The engine's process saying one request was too long: that request's class, for its failed
    access line; the engine itself is fine."""
    a = started()
    feed(a, CORE + "ValueError: This model's maximum context length is 512 tokens. However, you requested "
                   "1034 tokens (10 in the messages, 1024 in the completion).")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "validation"}]
    assert a.error_class == "validation"


def test_a_request_error_record_gives_its_class_to_the_next_failed_access_line() -> None:
    a = started()
    feed(a, ERR + "Error in chat completion", ERR + "torch.OutOfMemoryError: CUDA out of memory.")
    out = feed(a, acc(500, "/v1/chat/completions"))
    assert out[0] == {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"}
    assert reqs(out) == [req("chat", "error", "oom")]
    # the class is used once; the next 500 says only "server error"
    assert reqs(feed(a, acc(500, "/v1/chat/completions"))) == [req("chat", "error", errors.OTHER)]
    # a class that is older than ERROR_CLASS_LINES lines is not used
    feed(a, ERR + "torch.OutOfMemoryError: CUDA out of memory.", V0)
    for _ in range(v.ERROR_CLASS_LINES):
        feed(a, V0)
    assert reqs(feed(a, acc(500, "/v1/chat/completions"))) == [req("chat", "error", errors.OTHER)]
    # a 4xx keeps its own class
    feed(a, ERR + "torch.OutOfMemoryError: CUDA out of memory.", V0)
    assert reqs(feed(a, acc(400, "/v1/chat/completions"))) == [req("chat", "error", "validation")]


def test_a_request_error_with_no_known_class_is_one_error_log() -> None:
    a = started()
    feed(a, ERR + "something went wrong", V0)
    assert a.error_class == ""
    assert feed(a, ERR + "ValueError: prompt too long for the model's maximum context length", V0)[0] == \
        {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "validation"}


def j(**kw: Any) -> dict[str, Any]:
    return {"asctime": "2025-05-19 10:13:31,418", "name": "vllm.entrypoints", **kw}


def jfeed(a: VllmAdapter, obj: dict[str, Any]) -> Any:
    return a.parse_json(orjson.dumps(obj), obj)


def test_json_records_levels() -> None:
    a = VllmAdapter()
    msg = V1.split("[loggers.py:271] ")[1]
    out = jfeed(a, j(levelname="INFO", message=msg))
    assert out[0]["kind"] == "stats" and out[1:] == [LOG]
    assert jfeed(a, j(levelname="warning", message="slow")) == [{"kind": "log", "provider": "vllm",
                                                                 "level": "WARNING"}]
    assert jfeed(a, j(levelname="NOTICE", message="x")) == []
    assert jfeed(a, j(message="x")) == []
    other = {"levelname": "INFO", "message": "x", "name": "myapp"}
    assert jfeed(a, other) is None  # a record that is not vLLM's
    # only logging fields (vLLM's formatter, no logger name): vLLM's when its message is one vLLM writes
    assert jfeed(a, {"levelname": "INFO", "message": "x"}) is None
    assert jfeed(a, {"levelname": "INFO", "message": msg})[0]["kind"] == "stats"
    assert jfeed(a, {"levelname": "INFO", "message": 3}) is None
    assert a.parse_json(b"{}", None) is None


def test_json_record_with_a_traceback_is_one_error_record() -> None:
    a = VllmAdapter()
    exc = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
           "torch.OutOfMemoryError: CUDA out of memory.")
    assert jfeed(a, j(levelname="ERROR", message="Error in chat completion", exc_info=exc)) == \
        [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"}]
    # no level but a traceback: an error
    assert jfeed(a, j(message="Error in chat completion", exc_info=exc)) == \
        [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "oom"}]
    # a traceback at INFO is no error record
    assert jfeed(a, j(levelname="INFO", message="x", exc_info=exc)) == [LOG]
    assert jfeed(a, j(levelname="CRITICAL", message="x", exc_info=exc)) == \
        [{"kind": "log", "provider": "vllm", "level": "CRITICAL", "error_type": "oom"}]
    # only the traceback's last 20 lines are read
    deep = "torch.OutOfMemoryError: CUDA out of memory.\n" + "\n".join(["  File \"x.py\", line 1"] * 20)
    assert jfeed(a, j(levelname="ERROR", message="worker failed", exc_info=deep))[0]["error_type"] == errors.OTHER
    deep19 = "torch.OutOfMemoryError: CUDA out of memory.\n" + "\n".join(["  File \"x.py\", line 1"] * 19)
    assert jfeed(a, j(levelname="ERROR", message="worker failed", exc_info=deep19))[0]["error_type"] == "oom"


def test_json_uvicorn_records() -> None:
    a = VllmAdapter()
    acc_obj = {"levelname": "INFO", "name": "uvicorn.access",
               "message": '127.0.0.1:35022 - "POST /v1/completions HTTP/1.1" 200'}
    out = jfeed(a, {**acc_obj, "vllm_process_name": "APIServer"})
    assert [r["kind"] for r in out] == ["http", "request"]
    assert jfeed(a, {"levelname": "INFO", "name": "uvicorn.error", "message": "Started server process"}) \
        is IGNORED
    assert jfeed(a, {**acc_obj, "message": "not an access line"}) is IGNORED
    b = VllmAdapter()
    assert jfeed(b, acc_obj)["provider"] == ""  # nothing says it is vLLM's yet: an http record alone
    assert len(b.unknown) == 1
    assert jfeed(b, {**acc_obj, "extra_field": 1}) is None  # another app's uvicorn record


# -- output lines read from the right ----------------------------------------------------------------


def test_output_text_cannot_fake_the_finish_reason_or_the_token_ids(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-f1"
    feed(a, recv(rid))
    fake = (": output: 'x, output_token_ids: [1], finish_reason: abort', output_token_ids: [5, 6, 7], "
            "finish_reason: stop")
    assert reqs(feed(a, gen(rid, fake))) == [req("chat", request_id=rid, finish_reason="stop", output_tokens=3,
                                                duration_s=0.0)]


def test_token_ids_only_when_the_line_ends_with_them(clock: Clock) -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-f2"))
    out = reqs(feed(a, gen("chatcmpl-f2", ": output: 'x', output_token_ids: [5, 6], finish_reason: stop")))
    assert out[0]["output_tokens"] == 2
    feed(a, recv("chatcmpl-f3"))
    out = reqs(feed(a, gen("chatcmpl-f3", ": output: 'x', output_token_ids: 5, finish_reason: stop")))
    assert "output_tokens" not in out[0]


def test_streaming_complete_alone_ends_the_request(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-c1"
    feed(a, recv(rid))
    done = gen(rid, " (streaming complete): output: 'ab', output_token_ids: [1, 2], "
                    "finish_reason: streaming_complete")
    assert reqs(feed(a, done)) == [req("chat", request_id=rid, output_tokens=2, duration_s=0.0)]
    assert a.requests[rid].stream


def test_a_delta_without_a_finish_reason_ends_nothing(clock: Clock) -> None:
    a = VllmAdapter()
    rid = "chatcmpl-c2"
    feed(a, recv(rid))
    for fr in ("", "None", "streaming_complete"):
        line = gen(rid, f" (streaming delta): output: 'a', output_token_ids: [1], finish_reason: {fr}")
        assert reqs(feed(a, line)) == []
    assert a.requests[rid].out_tokens == 3 and a.requests[rid].state == v._OPEN
    # on an output line that is no delta, an empty or None reason ends the request without one
    assert reqs(feed(a, gen(rid, ": output: 'a', finish_reason: None"))) == \
        [req("chat", request_id=rid, output_tokens=3, duration_s=0.0)]


def test_output_lines_of_unknown_shape_end_nothing() -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-c3"))
    assert reqs(feed(a, gen("chatcmpl-c3", ": output: 'a'"))) == []
    assert a.requests["chatcmpl-c3"].state == v._OPEN
    assert a.outputs_logged  # still: vLLM logs outputs


def test_an_end_line_for_an_unknown_id_counts_it_and_marks_id_lines() -> None:
    a = started()
    out = reqs(feed(a, "INFO 04-10 03:35:51 [async_llm.py:1] Finished request cmpl-u9-0."))
    assert out == [req("text_completion", request_id="cmpl-u9")]
    assert a.id_lines
    assert reqs(feed(a, "INFO 04-10 03:35:51 [async_llm.py:1] Finished request cmpl-u9-0.")) == []
    assert reqs(feed(a, "INFO 04-10 03:35:51 [async_llm.py:1] Finished request tokenize-1.")) == []
    assert reqs(feed(a, "INFO 04-10 03:35:51 [async_llm.py:1] Finished request .")) == []


def test_a_full_table_drops_the_oldest_and_counts_a_waiting_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 3)
    a = started()
    a.outputs_logged = True
    x = "chatcmpl-x1"
    feed(a, recv(x, "prompt: 'p', prompt_token_ids: [1, 2], lora_request: LoRARequest(lora_name='l1', lora_int_id=1)"))
    feed(a, acc(200, "/v1/chat/completions"))
    assert a.requests[x].state == v._WAIT
    feed(a, recv("cmpl-y1-0"), recv("cmpl-y2-0"))
    out = feed(a, recv("cmpl-y3-0"))
    assert [r for r in out if r["kind"] in ("request", "evicted")] == [
        req("chat", request_id=x, input_tokens=2, adapter="l1"), {"kind": "evicted", "provider": "vllm", "n": 1}]
    assert x not in a.requests and x not in a.waiting["chat"] and a.evicted == 1
    out = feed(a, recv("cmpl-y4-0"))  # an open request is dropped uncounted: its access line counts it
    assert [r for r in out if r["kind"] in ("request", "evicted")] == [{"kind": "evicted", "provider": "vllm", "n": 1}]
    assert "cmpl-y1" not in a.unpaired["text_completion"] and a.evicted == 2
    # an end line for an id not tracked starts one, and what that drops comes with the line
    out = feed(a, "INFO 04-10 03:35:51 [async_llm.py:1] Finished request cmpl-z1-0.")
    assert [r["kind"] for r in out if r["kind"] in ("request", "evicted")] == ["request", "evicted"]


def test_a_line_with_no_finish_reason_cannot_fake_token_ids_far_in_its_output() -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-c4"))
    assert reqs(feed(a, gen("chatcmpl-c4", ": output: '" + "x" * 400 + " details: output_token_ids: [1, 2]'"))) == []
    assert a.requests["chatcmpl-c4"].out_tokens is None


@pytest.mark.parametrize("fr", ["", "None", "streaming_complete"])
def test_a_delta_of_an_unknown_id_without_a_reason_starts_it_with_its_tokens(fr: str) -> None:
    a = VllmAdapter()
    feed(a, gen("chatcmpl-c5", f" (streaming delta): output: 'a', output_token_ids: [5, 6, 7], finish_reason: {fr}"))
    assert a.requests["chatcmpl-c5"].out_tokens == 3


def test_a_client_id_ending_in_x_is_read_whole(clock: Clock) -> None:
    a = VllmAdapter()
    feed(a, recv("req-X"))
    assert reqs(feed(a, gen("req-X", ": output: 'a', finish_reason: stop"))) == [
        req("", request_id="req-X", finish_reason="stop", duration_s=0.0)]


def test_debug_token_id_lines_count_deltas_and_ignore_the_complete_line() -> None:
    a = VllmAdapter()
    rid = "chatcmpl-d1"
    dbg = "(APIServer pid=1) DEBUG 11-30 06:56:50 [request_logger.py:120] Generated response "
    feed(a, recv(rid), dbg + rid + " (streaming delta) details: output_token_ids: [4, 5]")
    assert a.requests[rid].out_tokens == 2
    # the complete line repeats the ids vLLM streamed; the deltas' sum stands
    feed(a, dbg + rid + " (streaming complete) details: output_token_ids: [4, 5, 6]")
    assert a.requests[rid].out_tokens == 2
    # a details line of an id not tracked counts nothing
    assert reqs(feed(a, dbg + "chatcmpl-zz details: output_token_ids: [1]")) == []
    assert list(a.requests) == [rid]


def test_a_non_streamed_responses_token_id_line_gives_its_whole_count(clock: Clock) -> None:
    """The DEBUG line of a response that is not streamed lists all its output ids: delivered twice
    (a log shipper's retry), its count stands, not their sum."""
    a = VllmAdapter()
    rid = "chatcmpl-d2"
    dbg = "(APIServer pid=1) DEBUG 11-30 06:56:50 [request_logger.py:120] Generated response "
    ids = dbg + rid + " details: output_token_ids: [4, 5, 6]"
    feed(a, recv(rid), ids, ids)
    assert reqs(feed(a, gen(rid, ": output: 'abc', finish_reason: stop"))) == [
        req("chat", request_id=rid, finish_reason="stop", output_tokens=3, duration_s=0.0)]


def test_a_stream_with_an_id_far_longer_than_the_part_tracked_is_read_as_a_stream(clock: Clock) -> None:
    """A client's X-Request-Id can make the id long: what follows it (`(streaming delta)`, the DEBUG
    token ids) is read where it ends. Tracked under its first MAX_ID characters; counted by its last
    delta, with its finish reason, duration and the deltas' token ids."""
    a = VllmAdapter()
    rid = "chatcmpl-" + "a" * 291
    a.outputs_logged = True  # --enable-log-outputs: the stream's 200 waits for its end line
    dbg = "(APIServer pid=1) DEBUG 11-30 06:56:50 [request_logger.py:120] Generated response "
    assert reqs(feed(a, recv(rid), acc(200, "/v1/chat/completions"))) == []
    clock.t += 2.0
    out = feed(a, dbg + rid + " (streaming delta) details: output_token_ids: [4, 5]",
               gen(rid, " (streaming delta): output: 'ab', finish_reason: None"),
               dbg + rid + " (streaming delta) details: output_token_ids: [6]",
               gen(rid, " (streaming delta): output: 'c', finish_reason: stop"))
    assert reqs(out) == [req("chat", request_id=rid[:v.MAX_ID], finish_reason="stop", output_tokens=3,
                             duration_s=2.0)]
    assert reqs(feed(a, gen(rid, " (streaming complete): output: 'abc', finish_reason: streaming_complete"))) == []
    assert reqs(a.flush()) == []


def test_a_delta_of_an_unknown_id_without_token_ids_starts_nothing() -> None:
    a = VllmAdapter()
    feed(a, gen("chatcmpl-c6", " (streaming delta): output: 'a', finish_reason: None"))
    assert not a.requests
