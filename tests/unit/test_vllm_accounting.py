"""vLLM request accounting: each request counted once, at default settings and with request logging.

Lines marked `0.32` are real output of vLLM 0.32.0 (the CPU build the real-server test runs, the same
requests as that test); the expected counts are worked out by hand from the requests that were sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.adapters import vllm as vllm_mod
from llm_exporter.adapters.vllm import VllmAdapter
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.records import validate_record
from tests.helpers import parse_metrics, total

H = "(APIServer pid=16381) INFO 11-30 06:56:50 "
BANNER = (H + "[core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='.tools/tiny-llama', "
          "served_model_name=tiny-llama, enable_prefix_caching=True")
ARGS = (H + "[api_utils.py:286] non-default args: {'enable_log_outputs': True, 'host': '127.0.0.1', "
        "'model': '.tools/tiny-llama', 'max_model_len': 512, 'enable_log_requests': True}")
SP = "params: SamplingParams(n=1, temperature=1.0, max_tokens=5), lora_request: None."


def acc(code: int, path: str = "/v1/completions", method: str = "POST") -> str:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}[code]
    return f'INFO:     127.0.0.1:35022 - "{method} {path} HTTP/1.1" {code} {reason}'


def recv(rid: str) -> str:
    return H + f"[request_logger.py:65] Received request {rid}: {SP}"


def added(rid: str) -> str:
    return H + f"[async_llm.py:578] Added request {rid}."


def gen(rid: str, tail: str = ": output: 'x y', finish_reason: length") -> str:
    return H + f"[request_logger.py:108] Generated response {rid}{tail}"


def run(lines: list[str], start: tuple[str, ...] = (BANNER,)) -> tuple[list[dict[str, Any]], VllmAdapter]:
    """Every record the adapter hands out for `lines` after the start-up lines (validated), and the adapter."""
    a = VllmAdapter()
    out: list[dict[str, Any]] = []
    for ln in [*start, *lines]:
        res = a.parse_json(ln.encode(), orjson.loads(ln)) if ln.startswith("{") else a.parse_text(ln)
        if isinstance(res, dict):
            res = [res]
        if isinstance(res, list):
            out.extend(res)
    out.extend(a.flush())
    for r in out:
        validate_record(r)
    return out, a


def tally(recs: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """(operation, outcome, error_type) -> requests."""
    t: dict[tuple[str, str, str], int] = {}
    for r in recs:
        if r["kind"] == "request":
            k = (r["operation"], r["outcome"], r["error_type"])
            t[k] = t.get(k, 0) + 1
    return t


def test_default_settings_access_lines_are_the_requests() -> None:
    """No request logging (vLLM's default): each access line on an inference path is one request, its
    outcome by status; health, metrics, tokenize and unknown paths are HTTP requests only."""
    recs, _ = run([
        acc(200, "/health", "GET"), acc(200), acc(200), acc(200, "/v1/chat/completions"),
        acc(200, "/v1/chat/completions"), acc(404), acc(400), acc(400, "/v1/chat/completions"),
        acc(200, "/tokenize"), acc(200, "/metrics", "GET"), acc(200, "/v1/embeddings"),
        acc(500, "/v1/chat/completions"), acc(200, "/v1/responses"),
    ])
    assert tally(recs) == {("text_completion", "success", ""): 2, ("chat", "success", ""): 3,
                           ("text_completion", "error", "not_found"): 1,
                           ("text_completion", "error", "validation"): 1, ("chat", "error", "validation"): 1,
                           ("chat", "error", "_OTHER"): 1, ("embeddings", "success", ""): 1}
    assert sum(r["kind"] == "http" for r in recs) == 13
    assert all("duration_s" not in r for r in recs if r["kind"] == "request")  # an access line has no latency
    assert all(r["model"] == "tiny-llama" for r in recs if r["kind"] == "request")
    # said once: why there is no latency, with the flag that adds it
    assert [r["hint"] for r in recs if r["kind"] == "hint"] == ["vllm_access_log_only"]


def test_request_logging_0_32_counts_each_request_once() -> None:
    """0.32 with --enable-log-requests --enable-log-outputs (lines as vLLM wrote them, prompts omitted by
    vLLM itself): 2 completions, a 2-prompt batch, an n=2 completion, 2 chats, an n=2 chat, 2 streamed
    chats, a streamed completion, then 404 (unknown model), 400 (max_tokens), 400 (prompt too long),
    /tokenize. Truth: 10 successes (5 + 5), 1 not_found, 2 validation errors."""
    lines = [
        recv("cmpl-8aa8d4648611ba23-0"), added("cmpl-8aa8d4648611ba23-0-809c990e"), acc(200),
        recv("cmpl-898c3dd5e96a37ad-0"), added("cmpl-898c3dd5e96a37ad-0-ab1b13c0"), acc(200),
        recv("cmpl-9251c23d3fdeca98-0"), recv("cmpl-9251c23d3fdeca98-1"),
        added("cmpl-9251c23d3fdeca98-0-90ce1094"), added("cmpl-9251c23d3fdeca98-1-a9ee0a01"), acc(200),
        recv("cmpl-849db9376d9938c3-0"), added("0_cmpl-849db9376d9938c3-0-87067691"),
        added("1_cmpl-849db9376d9938c3-0-87067691"), acc(200),
        recv("chatcmpl-a209332297da4135"), added("chatcmpl-a209332297da4135-a3382a75"),
        gen("chatcmpl-a209332297da4135", ": output: '�// mode o raise', finish_reason: length"),
        acc(200, "/v1/chat/completions"),
        recv("chatcmpl-8a85c7cd1c9e9ae8"), added("chatcmpl-8a85c7cd1c9e9ae8-b0c5813a"),
        gen("chatcmpl-8a85c7cd1c9e9ae8", ": output: '\") callstanceiv', finish_reason: length"),
        acc(200, "/v1/chat/completions"),
        recv("chatcmpl-9e8723b2397f1587"), added("0_chatcmpl-9e8723b2397f1587-87ed70e1"),
        added("1_chatcmpl-9e8723b2397f1587-87ed70e1"),
        gen("chatcmpl-9e8723b2397f1587", ": output: 'igobj set de', finish_reason: length"),
        gen("chatcmpl-9e8723b2397f1587", ": output: ' #ifNst', finish_reason: length"),
        acc(200, "/v1/chat/completions"),
        recv("chatcmpl-a7b2e7b2a57717b7"), acc(200, "/v1/chat/completions"),
        added("chatcmpl-a7b2e7b2a57717b7-94d9afbd"),
        gen("chatcmpl-a7b2e7b2a57717b7", " (streaming delta): output: '� string', finish_reason: None"),
        gen("chatcmpl-a7b2e7b2a57717b7", " (streaming delta): output: '885', finish_reason: length"),
        gen("chatcmpl-a7b2e7b2a57717b7",
            " (streaming complete): output: '� stringill datacheck885', finish_reason: streaming_complete"),
        recv("chatcmpl-87a7882e7510591b"), acc(200, "/v1/chat/completions"),
        added("chatcmpl-87a7882e7510591b-bf76d85e"),
        gen("chatcmpl-87a7882e7510591b", " (streaming delta): output: ' Return', finish_reason: length"),
        gen("chatcmpl-87a7882e7510591b",
            " (streaming complete): output: '4 andnew12 t Return', finish_reason: streaming_complete"),
        recv("cmpl-aef3c0149e3a65d9-0"), acc(200), added("cmpl-aef3c0149e3a65d9-0-8d1378d7"),
        acc(404), acc(400), acc(400, "/v1/chat/completions"),
        H + "[request_logger.py:65] Received request tokenize-8691ed3b03ae6c04: params: None, lora_request: None.",
        acc(200, "/tokenize"),
    ]
    recs, a = run(lines)
    assert tally(recs) == {("text_completion", "success", ""): 5, ("chat", "success", ""): 5,
                           ("text_completion", "error", "not_found"): 1,
                           ("text_completion", "error", "validation"): 1, ("chat", "error", "validation"): 1}
    reqs = [r for r in recs if r["kind"] == "request"]
    # the chat requests ended by their own lines carry the finish reason and a duration; the
    # completions (vLLM prints no output line for them) and refused requests carry neither
    assert sorted(r.get("finish_reason") or "" for r in reqs if r["operation"] == "chat") == \
        ["", "length", "length", "length", "length", "length"]
    assert sum("duration_s" in r for r in reqs) == 5
    assert not [r for r in recs if r["kind"] == "hint"]
    assert not a.unpaired.get("chat") and not a.unpaired.get("text_completion")  # nothing left waiting


def test_json_logging_gives_the_same_counts() -> None:
    """--logging-config.formatter json (0.32): vLLM's and uvicorn's records are JSON objects."""
    def j(name: str, msg: str) -> str:
        return orjson.dumps({"asctime": "2026-11-30 07:01:07,104", "levelname": "INFO", "name": name,
                           "processName": "MainProcess", "process": 23772, "message": msg,
                           "vllm_process_name": "APIServer"}).decode()
    rl = "vllm.entrypoints.serve.utils.request_logger"
    lines = [
        j("uvicorn.error", "Application startup complete."),
        j(rl, "Received request cmpl-b200b351206f45b8-0: " + SP),
        j("vllm.v1.engine.async_llm", "Added request cmpl-b200b351206f45b8-0-826adb89."),
        j("uvicorn.access", '127.0.0.1:57678 - "POST /v1/completions HTTP/1.1" 200'),
        j(rl, "Received request chatcmpl-a94374a9b6a184e1: " + SP),
        j(rl, "Generated response chatcmpl-a94374a9b6a184e1: output: 'x', finish_reason: length"),
        j("uvicorn.access", '127.0.0.1:57720 - "POST /v1/chat/completions HTTP/1.1" 200'),
        j("uvicorn.access", '127.0.0.1:57721 - "POST /v1/completions HTTP/1.1" 404'),
    ]
    recs, _ = run(lines)
    assert tally(recs) == {("text_completion", "success", ""): 1, ("chat", "success", ""): 1,
                           ("text_completion", "error", "not_found"): 1}
    assert sum(r["kind"] == "http" for r in recs) == 3


def test_output_logging_off_the_access_line_ends_each_logged_request() -> None:
    """--enable-log-requests alone: no output lines, so every access line ends the request it pairs
    with; a stream is counted at its access line (no duration: the stream had only begun)."""
    recs, _ = run([recv("chatcmpl-1"), acc(200, "/v1/chat/completions"), recv("chatcmpl-2"),
                   recv("cmpl-3-0"), acc(200), acc(200, "/v1/chat/completions")])
    assert tally(recs) == {("chat", "success", ""): 2, ("text_completion", "success", ""): 1}
    assert all("duration_s" not in r for r in recs)


def test_failures_and_aborts_by_id_are_not_counted_again_by_their_access_lines() -> None:
    """`Request ID failed (bad request)` then its 400; `failed (engine dead)` then its 500; a client
    that went away (`Request ID aborted.`, the engine's `Aborted request(s) ID-suffix.`): once each."""
    recs, _ = run([
        recv("chatcmpl-a"), H + "[async_llm.py:800] Request chatcmpl-a failed (bad request): max_tokens must "
        "be at least 1, got 0.", acc(400, "/v1/chat/completions"),
        recv("chatcmpl-b"), added("chatcmpl-b-0123abcd"),
        H + "[async_llm.py:789] Request chatcmpl-b failed (engine dead).", acc(500, "/v1/chat/completions"),
        recv("chatcmpl-c"), added("chatcmpl-c-89abcdef"), H + "[async_llm.py:760] Request chatcmpl-c aborted.",
        H + "[async_llm.py:922] Aborted request(s) chatcmpl-c-89abcdef.",
    ])
    assert tally(recs) == {("chat", "error", "validation"): 1, ("chat", "error", "engine_dead"): 1,
                           ("chat", "aborted", ""): 1}


def test_a_stream_that_never_ends_is_counted_once_after_the_grace_time(monkeypatch: Any) -> None:
    """Output logging on, access line seen, no end line (a chat answer with no text): counted
    STREAM_GRACE seconds later at the next idle flush, and a late end line counts nothing."""
    now = [0.0]
    monkeypatch.setattr(VllmAdapter, "clock", staticmethod(lambda: now[0]))
    a = VllmAdapter()
    a.parse_text(recv("chatcmpl-0"))
    a.parse_text(gen("chatcmpl-0"))  # output logging is on
    a.parse_text(acc(200, "/v1/chat/completions"))
    a.parse_text(recv("chatcmpl-1"))
    a.parse_text(acc(200, "/v1/chat/completions"))
    assert [r for r in a.flush() if r["kind"] == "request"] == []
    now[0] = vllm_mod.STREAM_GRACE + 1
    assert tally(a.flush()) == {("chat", "success", ""): 1}
    assert a.flush() == [] and tally(a.parse_text(gen("chatcmpl-1"))) == {}


def test_request_state_is_bounded_and_a_waiting_stream_is_counted_when_dropped(monkeypatch: Any) -> None:
    monkeypatch.setattr(vllm_mod, "MAX_TRACKED", 50)
    a = VllmAdapter()
    a.parse_text(ARGS)  # output logging on
    a.parse_text(recv("chatcmpl-s"))
    a.parse_text(acc(200, "/v1/chat/completions"))  # the stream chatcmpl-s waits for its end line
    out: list[dict[str, Any]] = []
    for i in range(200):
        out += a.parse_text(recv(f"chatcmpl-{i:032x}"))
    assert len(a.requests) == 50 and a.evicted == 151
    assert sum(len(q) for q in a.unpaired.values()) <= 50
    assert tally(out) == {("chat", "success", ""): 1}


def test_stats_lines_with_traffic_and_no_request_lines_say_why_nothing_is_counted() -> None:
    """Access log off and no request logging: three busy stats lines, then the advice, once."""
    busy = ("(APIServer pid=1) INFO 11-18 06:44:41 [loggers.py:236] Engine 000: Avg prompt throughput: 1.9 "
            "tokens/s, Avg generation throughput: 0.5 tokens/s, Running: 1 reqs, Waiting: 0 reqs, "
            "GPU KV cache usage: 0.5%, Prefix cache hit rate: 0.0%")
    recs, _ = run([busy] * 5)
    assert [r["hint"] for r in recs if r["kind"] == "hint"] == ["vllm_stats_only"]
    recs, _ = run([acc(200), busy, busy, busy, acc(200), acc(200)])
    assert [r["hint"] for r in recs if r["kind"] == "hint"] == ["vllm_access_log_only"]
    # a log cut right after a request's own lines: its first access lines say nothing yet
    recs, _ = run([acc(200), acc(200), recv("chatcmpl-1"), acc(200, "/v1/chat/completions"), acc(200)])
    assert [r for r in recs if r["kind"] == "hint"] == []


def test_hint_reaches_the_metrics_once() -> None:
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("s", [BANNER.encode(), *[acc(200).encode()] * 3])
    p.process("t", [BANNER.encode(), *[acc(404).encode()] * 4])
    assert m.hints.seen == {"vllm_access_log_only": "vllm"}


# -- any interleaving of concurrent requests: the counts never change ------------------------------

KINDS = ("cmpl", "chat", "stream", "cmpl_stream", "404", "400", "bad_request", "n2_chat", "abort", "dead")
#: with --enable-log-requests alone (no output lines)
KINDS_NO_OUTPUT = ("cmpl", "chat_no_output", "stream_no_output", "cmpl_stream", "404", "400", "bad_request")
SUCCESS = frozenset({"cmpl", "chat", "stream", "cmpl_stream", "n2_chat", "chat_no_output", "stream_no_output"})


def request_lines(kind: str, i: int) -> list[str]:
    """The lines one request makes, in the order vLLM writes them (0.32, log requests and outputs)."""
    c, ch = f"cmpl-{i:016x}", f"chatcmpl-{i:016x}"
    cpath = "/v1/chat/completions"
    if kind == "cmpl":
        return [recv(c + "-0"), added(c + "-0-1a2b3c4d"), acc(200)]
    if kind == "cmpl_stream":
        return [recv(c + "-0"), acc(200), added(c + "-0-1a2b3c4d")]
    if kind == "chat":
        return [recv(ch), added(ch + "-1a2b3c4d"), gen(ch), acc(200, cpath)]
    if kind == "n2_chat":
        return [recv(ch), added("0_" + ch + "-1a2b3c4d"), added("1_" + ch + "-1a2b3c4d"), gen(ch), gen(ch),
                acc(200, cpath)]
    if kind == "stream":
        return [recv(ch), acc(200, cpath), added(ch + "-1a2b3c4d"),
                gen(ch, " (streaming delta): output: 'a', finish_reason: None"),
                gen(ch, " (streaming delta): output: 'b', finish_reason: stop"),
                gen(ch, " (streaming complete): output: 'ab', finish_reason: streaming_complete")]
    if kind == "chat_no_output":
        return [recv(ch), added(ch + "-1a2b3c4d"), acc(200, cpath)]
    if kind == "stream_no_output":
        return [recv(ch), acc(200, cpath), added(ch + "-1a2b3c4d")]
    if kind == "abort":  # a stream whose client went away
        return [recv(ch), acc(200, cpath), added(ch + "-1a2b3c4d"),
                gen(ch, " (streaming delta): output: 'a', finish_reason: None"),
                H + f"[async_llm.py:922] Aborted request(s) {ch}-1a2b3c4d.",
                H + f"[async_llm.py:760] Request {ch} aborted."]
    if kind == "dead":
        return [recv(ch), added(ch + "-1a2b3c4d"), H + f"[async_llm.py:789] Request {ch} failed (engine dead).",
                acc(500, cpath)]
    if kind == "404":
        return [acc(404)]
    if kind == "400":
        return [acc(400, cpath)]
    return [recv(ch), H + f"[async_llm.py:800] Request {ch} failed (bad request): prompt is too long.",
            acc(400, cpath)]


def interleave(kinds: list[str], data: st.DataObject) -> list[str]:
    queues = [request_lines(k, i) for i, k in enumerate(kinds)]
    lines: list[str] = []
    while any(queues):
        live = [q for q in queues if q]
        q = live[data.draw(st.integers(0, len(live) - 1))]
        lines.append(q.pop(0))
    return lines


def outcomes(recs: list[dict[str, Any]]) -> dict[str, int]:
    got: dict[str, int] = {}
    for r in recs:
        if r["kind"] == "request":
            got[r["outcome"]] = got.get(r["outcome"], 0) + 1
    return got


def expected(kinds: list[str]) -> dict[str, int]:
    ok = sum(k in SUCCESS for k in kinds)
    ab = kinds.count("abort")
    return {k: n for k, n in (("success", ok), ("aborted", ab), ("error", len(kinds) - ok - ab)) if n}


@settings(max_examples=300, deadline=None)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6), data=st.data())
def test_counts_are_exact_under_any_interleaving(kinds: list[str], data: st.DataObject) -> None:
    """Concurrent requests interleave their lines in any order that keeps each request's own order;
    the access lines pair with other requests then, but the totals per outcome stay exact."""
    recs, _ = run(interleave(kinds, data), (ARGS, BANNER))
    assert outcomes(recs) == expected(kinds)


@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.sampled_from(KINDS_NO_OUTPUT), min_size=1, max_size=8), data=st.data())
def test_counts_are_exact_under_any_interleaving_without_output_lines(kinds: list[str],
                                                                      data: st.DataObject) -> None:
    recs, _ = run(interleave(kinds, data))
    assert outcomes(recs) == expected(kinds)


def test_replay_summary_says_why_there_is_no_latency(tmp_path: Any, capsys: Any) -> None:
    """`llm-exporter replay` of a default-settings vLLM log: the requests, and the advice once."""
    from llm_exporter.commands import replay

    log = tmp_path / "vllm.log"
    log.write_text("\n".join([BANNER, *[acc(200)] * 4, acc(404)]) + "\n")
    assert replay([str(log)]) == 0
    out, err = capsys.readouterr()
    assert 'outcome="success"} 4.0' in out and 'error_type="not_found"' in out
    assert err.count("--enable-log-requests") == 1


def test_a_weight_loading_bar_does_not_make_vllm_access_lines_sglang_requests() -> None:
    """vLLM 0.32 prints the same bare `Loading safetensors checkpoint shards` bar as SGLang, and
    bare access lines: after vLLM's own lines they stay vLLM's requests (the real-vLLM test's log)."""
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("s", [BANNER.encode(), b"Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]",
                    acc(200).encode(), acc(404).encode()])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    s = parse_metrics(generate_latest(reg).decode())
    assert total(s, "llm_requests_total", gen_ai_provider_name="vllm") == 2
    assert total(s, "llm_requests_total", gen_ai_provider_name="sglang") == 0
