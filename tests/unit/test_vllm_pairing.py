"""vLLM: access lines paired with the requests their id lines track, in the orders concurrent requests
really print them.

Each scenario is a handful of concurrent requests whose lines are interleaved the way vLLM writes them
(a non-streamed response's access line after its output line, a stream's right after its start, V0's
`Finished request` after a stream's access line); the expected records are worked out by hand from
the requests sent. Line shapes are those of test_vllm_accounting.py (vLLM 0.32) and, for V0, of
vllm-project/vllm#2752 (`INFO 02-05 04:53:20 async_llm_engine.py:111] Finished request cmpl-...`,
after the streams' `POST /v1/chat/completions HTTP/1.1" 200 OK`). Where the table's state is asserted,
it is what decides how a later line is counted (a request still open takes the next access line, one
waiting for its end line is counted by it or after the grace time).
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_exporter import errors
from llm_exporter.adapters import vllm as v
from llm_exporter.adapters.vllm import VllmAdapter
from tests.unit.test_vllm_lines import SP, Clock, H, feed, reqs

ARGS = (H + "[api_utils.py:286] non-default args: {'enable_log_outputs': True, 'host': '127.0.0.1', "
        "'enable_log_requests': True}")
CHAT = "/v1/chat/completions"
#: V0 (vLLM before 0.8, requests logged by default)
V0 = "INFO 02-05 04:53:20 async_llm_engine.py:"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(VllmAdapter, "clock", staticmethod(c))
    return c






def brief(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(request id, outcome, error class, finish reason, duration) of each request record."""
    return [(r.get("request_id", ""), r["outcome"], r["error_type"], r.get("finish_reason"), r.get("duration_s"))
            for r in reqs(recs)]


def acc(code: int, path: str = "/v1/completions") -> str:
    reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}[code]
    return f'INFO:     127.0.0.1:35022 - "POST {path} HTTP/1.1" {code} {reason}'


def recv(rid: str) -> str:
    return H + f"[request_logger.py:65] Received request {rid}: {SP}"


def gen(rid: str, tail: str = ": output: 'x y', finish_reason: length") -> str:
    return H + f"[request_logger.py:108] Generated response {rid}{tail}"


def delta(rid: str, reason: str = "None") -> str:
    return gen(rid, f" (streaming delta): output: 'a', finish_reason: {reason}")


def done(rid: str) -> str:
    return gen(rid, " (streaming complete): output: 'ab', finish_reason: streaming_complete")


def line(rid: str, what: str) -> str:
    return H + f"[async_llm.py:800] Request {rid} {what}"


def state(a: VllmAdapter, *keys: str) -> list[int]:
    return [a.requests[k].state for k in keys]


# -- V0: `Finished request` says nothing of which access line was its own ----------------------------


def v0_recv(rid: str) -> str:
    return (V0 + f"529] Received request {rid}: prompt: 'hi', params: SamplingParams(n=1, max_tokens=5), "
            "prompt_token_ids: [1, 2, 3], lora_request: None.")


def v0_fin(rid: str) -> str:
    return V0 + f"111] Finished request {rid}."


def test_v0_stream_finished_after_its_access_line_is_counted_once(clock: Clock) -> None:
    """A V0 stream: its access line is printed when the response starts, `Finished request` when the
    last token is out. One request, counted at its access line (which ends it, as V0 logs no output)."""
    a = VllmAdapter()
    out = feed(a, v0_recv("chat-s1"), V0 + "173] Added request chat-s1.", acc(200, CHAT))
    clock.t += 2.0
    out += feed(a, v0_fin("chat-s1"))
    assert brief(out) == [("chat-s1", "success", "", None, None)]
    assert reqs(a.flush()) == []


def test_v0_concurrent_stream_and_non_streamed_request_are_two(clock: Clock) -> None:
    """A non-streamed chat A and a stream B, B's access line (its start) before A's output is done:
    recv A, recv B, B's 200, A finished, A's 200, B finished. Truth: two successes. The first access
    line pairs with the oldest open request (A): details swap, the count does not."""
    a = VllmAdapter()
    out = feed(a, v0_recv("chat-a"), v0_recv("chat-b"), acc(200, CHAT), v0_fin("chat-a"), acc(200, CHAT),
               v0_fin("chat-b"))
    assert brief(out) == [("chat-a", "success", "", None, None), ("chat-b", "success", "", None, None)]
    # the non-streamed order (output, then its access line) keeps its duration
    clock.t += 1.5
    out = feed(a, v0_recv("chat-c"))
    clock.t += 1.5
    out += feed(a, v0_fin("chat-c"), acc(200, CHAT))
    assert brief(out) == [("chat-c", "success", "", None, 1.5)]
    assert reqs(a.flush()) == []


# -- a refused request gives back the stream's access line it was paired with -------------------------


def test_a_refused_request_hands_the_2xx_it_was_paired_with_to_the_stream(clock: Clock) -> None:
    """Outputs logged. Stream A and request B start; A's 200 comes (paired with the newest open request,
    B); B is refused (`failed (bad request)`) and its 400 follows; A streams and ends. Truth: A success
    `stop`, B error `validation`; A's end line counts it, no stream is left waiting."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a1"), recv("chatcmpl-b1"))
    assert reqs(feed(a, acc(200, CHAT))) == []
    assert state(a, "chatcmpl-a1", "chatcmpl-b1") == [v._OPEN, v._WAIT]
    clock.t += 1.0
    out = feed(a, line("chatcmpl-b1", "failed (bad request): This model's maximum context length is 512 tokens. "
                             "However, you requested 1034 tokens (10 in the messages, 1024 in the completion). "
                             "Please reduce the length of the messages or completion."))
    assert brief(out) == [("chatcmpl-b1", "error", "validation", None, 1.0)]
    # the 200 was A's: A now waits for its end line
    assert state(a, "chatcmpl-a1", "chatcmpl-b1") == [v._WAIT, v._ENDED]
    assert reqs(feed(a, acc(400, CHAT))) == []
    assert state(a, "chatcmpl-b1") == [v._DONE]
    clock.t += 1.0
    out = feed(a, delta("chatcmpl-a1"), delta("chatcmpl-a1", "stop"), done("chatcmpl-a1"))
    assert brief(out) == [("chatcmpl-a1", "success", "", "stop", 2.0)]
    clock.t += v.STREAM_GRACE
    assert reqs(a.flush()) == []
    assert not a.waiting["chat"] and not a.unpaired["chat"]


def test_a_stream_failing_after_its_200_is_one_error(clock: Clock) -> None:
    """Outputs logged. Stream A's 200 comes, then the engine dies (`failed (engine dead)`) before any
    output; later a request refused before vLLM logs it gets its 400 (no id line). Truth: two errors,
    `engine_dead` and `validation`, no success."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-d1"), acc(200, CHAT))
    out = feed(a, line("chatcmpl-d1", "failed (engine dead)."))
    assert brief(out) == [("chatcmpl-d1", "error", "engine_dead", None, 0.0)]
    assert state(a, "chatcmpl-d1") == [v._DONE]
    out = feed(a, acc(400, CHAT))
    assert brief(out) == [("", "error", "validation", None, None)]
    assert reqs(a.flush()) == []


# -- a stream's first output line takes back its access line ------------------------------------------


def test_a_streams_first_output_takes_the_earliest_access_line_another_request_holds(clock: Clock) -> None:
    """Outputs logged. Streams a, b, c start; a's and b's 200s come (paired with the newest open
    requests: c, then b). a's first delta shows the first 200 was a's: c gives it back and is open
    again, so c's own 200 is c's. Truth: three successes, each with its own finish reason."""
    a = VllmAdapter()
    ka, kb, kc = "chatcmpl-a", "chatcmpl-b", "chatcmpl-c"
    feed(a, ARGS, recv(ka), recv(kb), recv(kc), acc(200, CHAT), acc(200, CHAT))
    assert state(a, ka, kb, kc) == [v._OPEN, v._WAIT, v._WAIT]
    assert reqs(feed(a, delta(ka))) == []
    assert state(a, ka, kb, kc) == [v._WAIT, v._WAIT, v._OPEN]
    feed(a, acc(200, CHAT))
    assert state(a, ka, kb, kc) == [v._WAIT, v._WAIT, v._WAIT]
    clock.t += 3.0
    out = feed(a, delta(kb, "stop"), delta(ka, "length"), delta(kc, "stop"), done(ka), done(kb), done(kc))
    assert brief(out) == [(kb, "success", "", "stop", 3.0), (ka, "success", "", "length", 3.0),
                          (kc, "success", "", "stop", 3.0)]
    clock.t += v.STREAM_GRACE
    assert reqs(a.flush()) == []


def test_a_long_non_streamed_request_given_back_its_access_line_is_not_counted_early(clock: Clock) -> None:
    """Outputs logged. Stream a and a long non-streamed request b start; a's 200 goes to b (the newest);
    a's first delta takes it back. b is then open, not a stream past its grace time: when the exporter
    goes idle long after, b is not counted without its finish reason; its own output line counts it."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"), acc(200, CHAT), delta("chatcmpl-a"))
    out = feed(a, delta("chatcmpl-a", "stop"))
    assert brief(out) == [("chatcmpl-a", "success", "", "stop", 0.0)]
    clock.t += v.STREAM_GRACE + 10
    assert reqs(a.flush()) == []
    out = feed(a, gen("chatcmpl-b"), acc(200, CHAT))
    assert brief(out) == [("chatcmpl-b", "success", "", "length", v.STREAM_GRACE + 10)]
    assert reqs(a.flush()) == []


def test_a_streams_first_output_takes_back_an_access_line_an_ended_request_took(clock: Clock) -> None:
    """Outputs logged. Non-streamed a and stream b start; a's output line ends a; b's 200 comes (paired
    with a, ended and awaiting its access line); b's first delta shows it was b's: a awaits its own
    again, which comes next. Truth: two successes."""
    a = VllmAdapter()
    out = feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"), gen("chatcmpl-a"), acc(200, CHAT))
    assert brief(out) == [("chatcmpl-a", "success", "", "length", 0.0)]
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._DONE, v._OPEN]
    feed(a, delta("chatcmpl-b"))
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._ENDED, v._WAIT]
    assert reqs(feed(a, acc(200, CHAT))) == []
    assert state(a, "chatcmpl-a") == [v._DONE]
    out = feed(a, delta("chatcmpl-b", "stop"), done("chatcmpl-b"))
    assert brief(out) == [("chatcmpl-b", "success", "", "stop", 0.0)]
    clock.t += v.STREAM_GRACE
    assert reqs(a.flush()) == []


# -- outputs not logged: the access line ends a request; a later abort moves it --------------------------


def test_an_abort_moves_the_access_line_to_the_request_it_belonged_to(clock: Clock) -> None:
    """--enable-log-requests alone. Completion a (not streamed) and stream b start; b's 200 comes and
    ends the oldest open request (a, counted); then a's client goes away (`Request a aborted.`, the
    engine's `Aborted request(s)`): the 200 was b's, and a is one aborted request. A third request c
    then pairs with its own 200. Truth: b and c successes, a aborted."""
    a = VllmAdapter()
    out = feed(a, recv("cmpl-a-0"), recv("cmpl-b-0"), acc(200))
    assert brief(out) == [("cmpl-a", "success", "", None, None)]  # b's, carrying a's details
    assert state(a, "cmpl-a", "cmpl-b") == [v._DONE, v._OPEN]
    clock.t += 2.0
    out = feed(a, line("cmpl-a-0", "aborted."), H + "[async_llm.py:922] Aborted request(s) cmpl-a-0-1a2b3c4d.")
    assert reqs(out) == []
    assert state(a, "cmpl-a", "cmpl-b") == [v._ENDED, v._DONE]
    out = feed(a, recv("cmpl-c-0"), acc(200))
    # a's abort is held three lines (a 500 may follow), then counted
    assert brief(out) == [("cmpl-c", "success", "", None, None), ("cmpl-a", "aborted", "", None, 2.0)]
    assert reqs(a.flush()) == []


def test_an_abort_of_a_stream_counted_at_its_200_counts_nothing_more() -> None:
    """--enable-log-requests alone: a stream whose client goes away after its 200 is already counted as
    a success (the known limit); its abort lines count nothing more."""
    a = VllmAdapter()
    out = feed(a, recv("chatcmpl-s"), acc(200, CHAT), line("chatcmpl-s", "aborted."))
    assert brief(out) == [("chatcmpl-s", "success", "", None, None)]
    assert reqs(a.flush()) == []


# -- aborts and the 5xx that may follow them ------------------------------------------------------------

FOREIGN = "some other program's output"


def test_a_500_within_three_lines_of_an_abort_is_that_request_failing(clock: Clock) -> None:
    """vLLM before 0.8 aborts a request the engine failed, then answers 500. Lines of another program
    between them still count as lines."""
    a = VllmAdapter()
    feed(a, recv("chatcmpl-f"))
    out = feed(a, line("chatcmpl-f", "aborted."), FOREIGN, FOREIGN, acc(500, CHAT))
    assert brief(out) == [("chatcmpl-f", "error", errors.OTHER, None, 0.0)]
    b = VllmAdapter()
    feed(b, recv("chatcmpl-g"))
    out = feed(b, line("chatcmpl-g", "aborted."), FOREIGN, FOREIGN, FOREIGN, acc(500, CHAT))
    assert brief(out) == [("", "error", errors.OTHER, None, None), ("chatcmpl-g", "aborted", "", None, 0.0)]


def test_a_held_abort_comes_with_the_next_line_that_carries_records(clock: Clock) -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-h"), line("chatcmpl-h", "aborted."), FOREIGN, FOREIGN)
    assert a.parse_text(FOREIGN) is None  # its window passed, but a line of nothing carries nothing
    assert a.parse_text("(APIServer pid=1) INFO:     Shutting down") == "ignored"
    assert brief(feed(a, H + "[x.py:1] next")) == [("chatcmpl-h", "aborted", "", None, 0.0)]


def test_a_2xx_passes_over_an_aborted_request_to_the_ended_one() -> None:
    """Outputs logged. Stream a's client goes away before its response (no access line); b's output
    line ends b and its 200 follows. Truth: a aborted, b success."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"))
    out = feed(a, line("chatcmpl-a", "aborted."), gen("chatcmpl-b"), acc(200, CHAT))
    assert [(r["request_id"], r["outcome"]) for r in reqs(out)] == [("chatcmpl-b", "success")]
    out = feed(a, H + "[x.py:1] next") + a.flush()
    assert [(r["request_id"], r["outcome"]) for r in reqs(out)] == [("chatcmpl-a", "aborted")]


# -- the engine's ids --------------------------------------------------------------------------------


def test_engine_suffixes_fold_into_short_and_indexed_ids() -> None:
    a = VllmAdapter()
    feed(a, recv("r"), recv("chatcmpl-9e87"))  # `r`: a client's own X-Request-Id
    assert a._resolve("r-87ed70e1") == "r"
    assert a._resolve("-87ed70e1") is None
    assert a._resolve("chatcmpl-9e87x87ed70e1") is None  # hex at the end, but no `-` before it
    assert a._resolve("12345_chatcmpl-9e87-87ed70e1") == "chatcmpl-9e87"
    assert a._resolve("123456_chatcmpl-9e87") is None  # an index is read within the first 6 characters
    assert a._resolve("_chatcmpl-9e87") is None


# -- records of several lines --------------------------------------------------------------------------


def test_an_api_server_error_whose_traceback_says_the_engine_died_is_an_incident() -> None:
    err = "(APIServer pid=1) ERROR 11-30 06:56:50 [serving_chat.py:1] "
    a = VllmAdapter()
    feed(a, err + "Error in chat completion", err + "Traceback (most recent call last):",
         err + '  File "serving_chat.py", line 1, in create', err + "vllm.v1.engine.exceptions.EngineDeadError: "
         "EngineCore encountered an issue. See stack trace (above) for the root cause.")
    assert a.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
                         {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]
    b = VllmAdapter()
    feed(b, err + "Error in chat completion", err + "Traceback (most recent call last):", err + "RuntimeError: boom")
    assert b.flush() == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": errors.OTHER}]


# -- the bounded table ----------------------------------------------------------------------------------


def test_each_end_line_of_an_untracked_id_brings_what_it_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "MAX_TRACKED", 2)
    a = VllmAdapter()
    kinds = [[r["kind"] for r in feed(a, V0 + f"111] Finished request cmpl-u{i}-0.")] for i in range(4)]
    assert kinds == [["request", "log"], ["request", "log"], ["request", "log", "evicted"],
                     ["request", "log", "evicted"]]
    assert a.evicted == 2


def test_two_refused_requests_and_a_stream(clock: Clock) -> None:
    """Outputs logged. Stream a, requests b and c start; c is refused at once; a's 200 comes (paired
    with the newest open request, b); b is refused: the 200 goes back to a, not to c (c, refused
    before that 200, awaits its own 400). Truth: a success, b and c `validation` errors."""
    a = VllmAdapter()
    out = feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"), recv("chatcmpl-c"),
               line("chatcmpl-c", "failed (bad request): prompt is too long."), acc(200, CHAT),
               line("chatcmpl-b", "failed (bad request): prompt is too long."))
    assert brief(out) == [("chatcmpl-c", "error", "validation", None, 0.0),
                          ("chatcmpl-b", "error", "validation", None, 0.0)]
    assert state(a, "chatcmpl-a", "chatcmpl-b", "chatcmpl-c") == [v._WAIT, v._ENDED, v._ENDED]
    assert reqs(feed(a, acc(400, CHAT), acc(400, CHAT))) == []
    out = feed(a, delta("chatcmpl-a", "stop"), done("chatcmpl-a"))
    assert brief(out) == [("chatcmpl-a", "success", "", "stop", 0.0)]
    assert reqs(a.flush()) == []


def test_a_refused_request_counted_at_a_2xx_of_a_request_with_no_id_line(clock: Clock) -> None:
    """Request logging on, outputs not: b starts; a 200 comes of a request whose own lines came before
    the log began (it ends b, the only open request, counted); then b is refused and its 400 follows.
    Truth: one success (that earlier request, carrying b's id) and b's `validation` error by its own
    line, with its duration."""
    a = VllmAdapter()
    out = feed(a, recv("chatcmpl-b"), acc(200, CHAT))
    assert brief(out) == [("chatcmpl-b", "success", "", None, None)]
    clock.t += 0.5
    out = feed(a, line("chatcmpl-b", "failed (bad request): max_tokens must be at least 1, got 0."))
    assert brief(out) == [("chatcmpl-b", "error", "validation", None, 0.5)]
    assert reqs(feed(a, acc(400, CHAT))) == []
    assert reqs(a.flush()) == []


def test_a_non_streamed_output_gives_back_the_2xx_that_came_before_it(clock: Clock) -> None:
    """Outputs logged. Stream a and non-streamed b start; a's 200 comes (paired with the newest open
    request, b); b's output line (a response's access line follows its output) shows that 200 was
    not b's: a waits for its end line, b for its own 200. Truth: two successes."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"), acc(200, CHAT))
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._OPEN, v._WAIT]
    out = feed(a, gen("chatcmpl-b"))
    assert brief(out) == [("chatcmpl-b", "success", "", "length", 0.0)]
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._WAIT, v._ENDED]
    assert reqs(feed(a, acc(200, CHAT))) == []
    out = feed(a, delta("chatcmpl-a", "stop"), done("chatcmpl-a"))
    assert brief(out) == [("chatcmpl-a", "success", "", "stop", 0.0)]
    assert reqs(a.flush()) == []


def test_two_clients_going_away_before_their_responses(clock: Clock) -> None:
    """--enable-log-requests alone. Completions a, b, c start; b's 200 (a stream) comes and ends the
    oldest open request, a; then a's and c's clients go away before any response. Each abort hands
    the 200 on to a request still open. Truth: b success, a and c aborted."""
    a = VllmAdapter()
    out = feed(a, recv("cmpl-a-0"), recv("cmpl-b-0"), recv("cmpl-c-0"), acc(200),
               line("cmpl-a-0", "aborted."), line("cmpl-c-0", "aborted."))
    assert brief(out) == [("cmpl-a", "success", "", None, None)]
    assert state(a, "cmpl-a", "cmpl-b", "cmpl-c") == [v._ENDED, v._DONE, v._ENDED]
    out = feed(a, *[H + "[x.py:1] next"] * 3)
    assert brief(out) == [("cmpl-a", "aborted", "", None, 0.0), ("cmpl-c", "aborted", "", None, 0.0)]
    assert reqs(a.flush()) == []


def test_the_engines_abort_line_after_the_abort_was_counted_counts_nothing(clock: Clock) -> None:
    """--enable-log-requests alone. Completions a, b, c start; c's 200 ends a; a's client goes away
    (`Request a aborted.`), other lines pass (a is counted aborted), then the engine's own `Aborted
    request(s) a-suffix.` comes; b's 200 last. Truth: b and c successes, a aborted once."""
    a = VllmAdapter()
    out = feed(a, recv("cmpl-a-0"), recv("cmpl-b-0"), recv("cmpl-c-0"), acc(200), line("cmpl-a-0", "aborted."),
               *[H + "[x.py:1] next"] * 3, H + "[async_llm.py:922] Aborted request(s) cmpl-a-0-1a2b3c4d.",
               acc(200))
    assert brief(out) == [("cmpl-a", "success", "", None, None), ("cmpl-a", "aborted", "", None, 0.0),
                          ("cmpl-b", "success", "", None, None)]
    assert reqs(a.flush()) == []


def test_a_2xx_held_by_a_refused_request_with_nothing_open_is_a_request_of_its_own(clock: Clock) -> None:
    """Outputs logged. b starts; a 200 comes of a request whose lines came before the log began (paired
    with b, the only open one, to wait for its end line); b is refused, or b's non-streamed output
    shows the 200 came before it: that 200 was a request with no id line, counted then."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-b"), acc(200, CHAT))
    out = feed(a, line("chatcmpl-b", "failed (bad request): This model's maximum context length is 512 tokens. "
                            "However, you requested 1034 tokens (10 in the messages, 1024 in the completion)."))
    assert brief(out) == [("", "success", "", None, None), ("chatcmpl-b", "error", "validation", None, 0.0)]
    assert reqs(feed(a, acc(400, CHAT))) == []
    # the next failure hands out its own record alone
    out = feed(a, recv("chatcmpl-f"), line("chatcmpl-f", "failed (engine dead)."))
    assert brief(out) == [("chatcmpl-f", "error", "engine_dead", None, 0.0)]
    c = VllmAdapter()
    feed(c, ARGS, recv("chatcmpl-c"), acc(200, CHAT))
    out = feed(c, gen("chatcmpl-c"))
    assert brief(out) == [("chatcmpl-c", "success", "", "length", 0.0), ("", "success", "", None, None)]
    assert reqs(feed(c, acc(200, CHAT))) == []
    # the next output line hands out its own record alone
    assert brief(feed(c, recv("chatcmpl-e"), gen("chatcmpl-e"))) == [("chatcmpl-e", "success", "", "length", 0.0)]
    assert reqs(a.flush() + c.flush()) == []


def test_a_streams_first_output_takes_no_access_line_older_than_its_start() -> None:
    """Outputs logged. Stream k starts and its 200 comes; then non-streamed b and stream r start, b's
    output line ends b, and r's 200 comes (paired with b, ended). r's first delta takes back the 200
    b holds, not k's, which came before r began."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-k"), acc(200, CHAT), recv("chatcmpl-b"), recv("chatcmpl-r"), gen("chatcmpl-b"),
         acc(200, CHAT))
    assert state(a, "chatcmpl-k", "chatcmpl-b", "chatcmpl-r") == [v._WAIT, v._DONE, v._OPEN]
    feed(a, delta("chatcmpl-r"))
    assert state(a, "chatcmpl-k", "chatcmpl-b", "chatcmpl-r") == [v._WAIT, v._ENDED, v._WAIT]


def test_a_stream_that_showed_its_output_keeps_the_access_line_it_holds() -> None:
    """Outputs logged. Streams r, m, k start; r's 200 (paired with k, the newest) and k's 200 (paired
    with m) come; k's first delta (k waits already); then r's: r takes back the 200 m holds, not
    the one k holds (k's own output showed it is a stream)."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-r"), recv("chatcmpl-m"), recv("chatcmpl-k"), acc(200, CHAT), acc(200, CHAT))
    assert state(a, "chatcmpl-r", "chatcmpl-m", "chatcmpl-k") == [v._OPEN, v._WAIT, v._WAIT]
    feed(a, delta("chatcmpl-k"), delta("chatcmpl-r"))
    assert state(a, "chatcmpl-r", "chatcmpl-m", "chatcmpl-k") == [v._WAIT, v._OPEN, v._WAIT]


def test_a_log_that_begins_inside_a_stream_looks_two_lines_back() -> None:
    """The first request line two lines after a 2xx is that stream's own (counted at its 2xx)."""
    a = VllmAdapter()
    a.seen = True
    feed(a, acc(200, CHAT), H + "[x.py:1] next", recv("chatcmpl-s"))
    assert state(a, "chatcmpl-s") == [v._DONE]


def test_client_ids_with_underscores_fold_with_their_index() -> None:
    a = VllmAdapter()
    feed(a, recv("a_b"))  # a client's own X-Request-Id
    assert a._resolve("0_a_b-87ed70e1") == "a_b"


def test_an_empty_request_id_is_not_tracked() -> None:
    a = VllmAdapter()
    feed(a, H + "[request_logger.py:65] Received request : " + SP)
    assert not a.requests
    assert reqs(feed(a, gen("", " : output: 'a', finish_reason: stop"))) == []
    assert not a.requests


def test_an_abort_then_its_503_takes_the_status_class(clock: Clock) -> None:
    a = VllmAdapter()
    feed(a, recv("chatcmpl-o"))
    out = feed(a, line("chatcmpl-o", "aborted."),
               'INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 503 Service Unavailable')
    assert brief(out) == [("chatcmpl-o", "error", "overloaded", None, 0.0)]


def test_an_error_records_class_reaches_a_500_up_to_200_lines_later() -> None:
    """Counted from the line the record closed on, however far into the log."""
    err = "(APIServer pid=1) ERROR 11-30 06:56:50 [serving_chat.py:1] torch.OutOfMemoryError: CUDA out of memory."
    filler = H + "[x.py:1] next"
    for gap, want in ((200, "oom"), (201, errors.OTHER)):
        a = VllmAdapter()
        feed(a, *[filler] * 150, err, filler)
        at = a.error_class_at
        assert at == 152
        feed(a, *[filler] * (gap - 1))
        out = feed(a, acc(500, CHAT))
        assert a.lines - at == gap
        assert brief(out) == [("", "error", want, None, None)]


def test_a_delta_of_an_untracked_id_brings_what_it_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full table: the first delta of an id not tracked (its `Received request` line came before the
    log began) starts it, and the waiting stream it drops is counted with that line."""
    monkeypatch.setattr(v, "MAX_TRACKED", 2)
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-x"), acc(200, CHAT), recv("chatcmpl-y"))
    assert state(a, "chatcmpl-x") == [v._WAIT]
    out = feed(a, gen("chatcmpl-u", " (streaming delta): output: 'a', output_token_ids: [5], finish_reason: None"))
    assert [r for r in out if r["kind"] in ("request", "evicted")] == [
        {"kind": "request", "provider": "vllm", "operation": "chat", "model": "", "outcome": "success",
         "error_type": "", "request_id": "chatcmpl-x"}, {"kind": "evicted", "provider": "vllm", "n": 1}]
    assert a.requests["chatcmpl-u"].out_tokens == 1


def test_a_stream_given_back_its_access_line_is_the_newest_open_request_again() -> None:
    """Outputs logged. Streams a and c start; a's 200 comes (paired with c, the newest); d starts; a's
    first delta takes the 200 back, c is open again, now the request that moved last: c's own 200,
    coming next, is c's, not d's."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-c"), acc(200, CHAT), recv("chatcmpl-d"), delta("chatcmpl-a"))
    assert state(a, "chatcmpl-a", "chatcmpl-c", "chatcmpl-d") == [v._WAIT, v._OPEN, v._OPEN]
    feed(a, acc(200, CHAT))
    assert state(a, "chatcmpl-a", "chatcmpl-c", "chatcmpl-d") == [v._WAIT, v._WAIT, v._OPEN]


# -- an access line handed back to the request it was taken from ------------------------------------------


@pytest.mark.parametrize("ending", ["output", "failure"])
def test_an_access_line_taken_back_from_a_stream_returns_to_the_ended_request_it_was_taken_from(
        clock: Clock, ending: str) -> None:
    """Outputs logged; the log shows stream S's 200 before S's own first line (lines written out of
    order). Non-streamed K and k start; k's output ends it and k's 200 comes (paired with k); S's 200
    comes (paired with K, the only open request); S starts, and its first delta takes back the access
    line k took (S is a stream), so k awaits one again. K then ends by its non-streamed output (its
    200 follows it) or fails (its 500 follows): the 200 K held was not K's and goes back to k, the
    ended request that lost its own. K's own access line comes next; k's output line, delivered a
    second time, counts nothing. Truth: three requests, one each, each by its own end line."""
    a = VllmAdapter()
    out = feed(a, ARGS, recv("chatcmpl-K"), recv("chatcmpl-k"), gen("chatcmpl-k"), acc(200, CHAT), acc(200, CHAT))
    assert brief(out) == [("chatcmpl-k", "success", "", "length", 0.0)]
    assert state(a, "chatcmpl-K", "chatcmpl-k") == [v._WAIT, v._DONE]
    feed(a, recv("chatcmpl-S"), delta("chatcmpl-S"))
    assert state(a, "chatcmpl-K", "chatcmpl-k", "chatcmpl-S") == [v._WAIT, v._ENDED, v._WAIT]
    clock.t += 1.0
    if ending == "output":
        out = feed(a, gen("chatcmpl-K", ": output: 'z', finish_reason: stop"))
        assert brief(out) == [("chatcmpl-K", "success", "", "stop", 1.0)]
    else:
        out = feed(a, line("chatcmpl-K", "failed (engine dead)."))
        assert brief(out) == [("chatcmpl-K", "error", "engine_dead", None, 1.0)]
    assert state(a, "chatcmpl-K", "chatcmpl-k", "chatcmpl-S") == [v._ENDED, v._DONE, v._WAIT]
    out = feed(a, acc(200 if ending == "output" else 500, CHAT), gen("chatcmpl-k"))
    assert reqs(out) == []
    assert state(a, "chatcmpl-K", "chatcmpl-k") == [v._DONE, v._DONE]
    out = feed(a, delta("chatcmpl-S", "stop"), done("chatcmpl-S"))
    assert brief(out) == [("chatcmpl-S", "success", "", "stop", 1.0)]
    clock.t += v.STREAM_GRACE
    assert reqs(a.flush()) == []


def test_a_200_before_two_non_streamed_outputs_is_a_request_of_its_own(clock: Clock) -> None:
    """Outputs logged. a and b start; a 200 comes of a request whose lines came before the log began
    (paired with b, the newest open request); a's output ends a, then b's output shows that 200 came
    before it, so was not b's, nor a's (a ended after it): a request with no id line, counted then.
    a's and b's own 200s follow. Truth: three successes."""
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-a"), recv("chatcmpl-b"), acc(200, CHAT))
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._OPEN, v._WAIT]
    out = feed(a, gen("chatcmpl-a"))
    assert brief(out) == [("chatcmpl-a", "success", "", "length", 0.0)]
    out = feed(a, gen("chatcmpl-b"))
    assert brief(out) == [("chatcmpl-b", "success", "", "length", 0.0), ("", "success", "", None, None)]
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._ENDED, v._ENDED]
    assert reqs(feed(a, acc(200, CHAT), acc(200, CHAT))) == []
    assert state(a, "chatcmpl-a", "chatcmpl-b") == [v._DONE, v._DONE]
    assert reqs(a.flush()) == []


def test_a_stream_the_log_began_inside_then_aborted_counts_nothing_more() -> None:
    """The log begins with a stream's 200 (counted), then that stream's first line, and another
    request b; the stream's client goes away. Its 200 was its own: b still takes its own access line.
    Truth: two successes."""
    a = VllmAdapter()
    a.seen = True
    out = feed(a, acc(200, CHAT), recv("chatcmpl-s"), recv("chatcmpl-b"), line("chatcmpl-s", "aborted."))
    assert brief(out) == [("", "success", "", None, None)]
    assert state(a, "chatcmpl-s", "chatcmpl-b") == [v._DONE, v._OPEN]
    assert brief(feed(a, acc(200, CHAT)) + a.flush()) == [("chatcmpl-b", "success", "", None, None)]


def test_a_streams_first_output_after_the_request_that_took_its_200_was_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs logged, a table of two. k ends by its output and takes the next 200 (stream s's); s
    and c start, and k is dropped from the full table; s's first delta finds no request to take the
    200 back from: s is counted by its own lines. Truth: k and s successes; c still open."""
    monkeypatch.setattr(v, "MAX_TRACKED", 2)
    a = VllmAdapter()
    feed(a, ARGS, recv("chatcmpl-k"), gen("chatcmpl-k"), acc(200, CHAT))
    out = feed(a, recv("chatcmpl-s"), recv("chatcmpl-c"))
    assert [r["kind"] for r in out if r["kind"] in ("request", "evicted")] == ["evicted"]
    assert list(a.requests) == ["chatcmpl-s", "chatcmpl-c"]
    assert reqs(feed(a, delta("chatcmpl-s"))) == []
    assert state(a, "chatcmpl-s") == [v._OPEN]
    out = feed(a, delta("chatcmpl-s", "stop"), done("chatcmpl-s"))
    assert [(r["request_id"], r["finish_reason"]) for r in reqs(out)] == [("chatcmpl-s", "stop")]


def awaiting_only(a: VllmAdapter) -> None:
    """The per-operation queues every access line and end line scans hold only the requests still
    awaiting a line: open or ended ones awaiting their access line, streams awaiting their end line."""
    for op, q in a.unpaired.items():
        assert all(a.requests[k].state in (v._OPEN, v._ENDED) for k in q), op
    for op, w in a.waiting.items():
        assert all(a.requests[k].state == v._WAIT for k in w), op


def test_a_counted_request_leaves_the_queues_each_line_scans(clock: Clock) -> None:
    """A request counted and paired is no longer scanned by every later access line (left there, the
    queues would grow to the table's size): when the log began inside its stream, when an abort hands
    its access line to an open request, and when a request's output hands one back to an ended one."""
    a = VllmAdapter()
    a.seen = True
    feed(a, acc(200, CHAT), recv("chatcmpl-s"))
    assert state(a, "chatcmpl-s") == [v._DONE]
    awaiting_only(a)
    b = VllmAdapter()
    feed(b, recv("cmpl-a-0"), recv("cmpl-b-0"), acc(200), line("cmpl-a-0", "aborted."))
    assert state(b, "cmpl-a", "cmpl-b") == [v._ENDED, v._DONE]
    awaiting_only(b)
    c = VllmAdapter()
    feed(c, ARGS, recv("chatcmpl-K"), recv("chatcmpl-k"), gen("chatcmpl-k"), acc(200, CHAT), acc(200, CHAT),
         recv("chatcmpl-S"), delta("chatcmpl-S"), gen("chatcmpl-K", ": output: 'z', finish_reason: stop"))
    assert state(c, "chatcmpl-K", "chatcmpl-k", "chatcmpl-S") == [v._ENDED, v._DONE, v._WAIT]
    awaiting_only(c)
