"""Python tracebacks on a server's stream: which lines belong to one, its class, whether it says the
engine itself failed, and the one ERROR record (plus the server incident) it becomes.

The truths are worked out by hand from the lines: a traceback takes its `File` lines, the source
line after each, markers, blank lines and chain headers, and its exception lines (`Name: message`,
or a bare `Name` raised with no message); the first other line ends it. The class is the last
exception line's that names one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_exporter.adapters.pytrace import MAX_LINES, PyTraceAdapter, TraceTail

FIXTURES = Path(__file__).parent.parent / "fixtures"


def lines_of(path: Path) -> list[str]:
    """The file's lines as adapters get them: indentation stripped."""
    return [line.strip() for line in path.read_text().splitlines()]


def fed(lines: list[str]) -> tuple[TraceTail, list[bool]]:
    t = TraceTail()
    return t, [t.feed(line) for line in lines]


def test_a_chained_traceback_with_a_bare_exception_name_is_one_engine_death() -> None:
    """vLLM 0.4.1: `asyncio.exceptions.TimeoutError` (no message) is part of the traceback, so the
    chain header, the second traceback and the AsyncEngineDeadError line are too; the vLLM line after
    it is not. Timeout first, then engine_dead: the last class wins, and engine death is an incident."""
    lines = lines_of(FIXTURES / "tracebacks" / "vllm_issue4293.log")
    t, took = fed(lines)
    assert took == [True] * 16 + [False]
    assert (t.cls, t.scope, t.lines) == ("engine_dead", "incident", 16)


def test_bare_cancelled_errors_and_chain_headers_stay_in_one_traceback() -> None:
    lines = lines_of(FIXTURES / "tracebacks" / "vllm_issue5729.log")
    t, took = fed(lines)
    assert all(took) and t.lines == len(lines) == 21
    # CancelledError is a known name (the client went away); no engine failure is said
    assert (t.cls, t.scope) == ("client_disconnect", "")


def test_an_engine_dead_traceback_ends_at_the_next_log_line() -> None:
    """vLLM ~0.6 (fixtures/vllm_requests/issue10925.log): two `File` lines in a row (a .pyx frame has
    no source line), `raise ...(` as the source line, then the exception; the `INFO` line is not
    part of it."""
    lines = lines_of(FIXTURES / "vllm_requests" / "issue10925.log")[:6]
    t, took = fed(lines)
    assert took == [True, True, True, True, True, False]
    assert (t.cls, t.scope, t.lines) == ("engine_dead", "incident", 5)


def test_the_line_after_a_source_line_is_read_as_an_exception() -> None:
    """LiteLLM 1.52 (fixtures/corpus/litellm.log): an exception line right after a source line is
    read; a class no rule knows stays `_OTHER` and is no incident."""
    t, took = fed(["Traceback (most recent call last):",
                   'File "/Users/xingyaow/Projects/litellm/litellm/litellm_core_utils/exception_mapping_utils.py", '
                   "line 404, in exception_type",
                   "raise APIError(",
                   "litellm.exceptions.APIError: litellm.APIError: APIError: Litellm_proxyException - "
                   "Connection error.",
                   '{"component": "PrimaryCodingAgent", "error_type": "BadRequestError", "level": "error"}'])
    assert took == [True, True, True, True, False]
    assert (t.cls, t.scope) == ("_OTHER", "")
    # the same traceback ending in a validation error is classified, and still no incident
    t, took = fed(["Traceback (most recent call last):", 'File "/x/serving_chat.py", line 183, in create',
                   ") = await self._preprocess_chat(",
                   "vllm.exceptions.VLLMValidationError: This model's maximum context length is 16384 tokens. "
                   "However, your request has 122946 input tokens."])
    assert all(took) and (t.cls, t.scope) == ("validation", "")


def test_a_logging_error_message_says_what_failed() -> None:
    """SGLang (fixtures/corpus/sglang.log, a logging error in its SIGQUIT handler): the head was cut,
    the `Message:` line names a child's SIGQUIT, which is an engine incident; the next server line
    ends it."""
    t, took = fed(['File "/usr/local/lib/python3.11/site-packages/sglang/srt/entrypoints/engine.py", line 343, '
                   "in sigquit_handler",
                   "logger.error(",
                   "Message: 'Received sigquit from a child proces. It usually means the child failed.'",
                   "Arguments: ()",
                   "[2026-01-05 06:12:41] Decode out of memory. Try to lower your batch size."])
    assert took == [True, True, True, True, False]
    assert (t.cls, t.scope) == ("engine_dead", "incident")


@pytest.mark.parametrize(("exception", "cls", "scope"), [
    # hand-written exception lines, one per rule of the classification:
    # the name is known though the message says nothing
    ("asyncio.exceptions.CancelledError: Cancelled by cancel scope 7f0c5c3b5e50", "client_disconnect", ""),
    # the message says the engine died, with no incident phrase: engine_dead is an incident anyway
    ("RuntimeError: engine core died", "engine_dead", "incident"),
    # an incident phrase with a timeout class: an incident that keeps its class
    ("RuntimeError: [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE)"
     " ran for 600003 milliseconds before timing out.", "timeout", "incident"),
    # neither name nor message known
    ("RuntimeError: No response returned.", "_OTHER", ""),
])
def test_the_exception_line_decides_class_and_incident(exception: str, cls: str, scope: str) -> None:
    t, took = fed(["Traceback (most recent call last):", 'File "/srv/app.py", line 9, in handler',
                   "return await call_next(request)", exception])
    assert all(took) and (t.cls, t.scope) == (cls, scope)


def test_an_unclassified_exception_keeps_the_class_an_earlier_one_gave() -> None:
    t, took = fed(["Traceback (most recent call last):", 'File "/srv/app.py", line 9, in handler',
                   "return await call_next(request)",
                   "asyncio.exceptions.CancelledError: Cancelled by cancel scope 7f0c5c3b5e50", "",
                   "During handling of the above exception, another exception occurred:", "",
                   "Traceback (most recent call last):", 'File "/srv/uvicorn/httptools_impl.py", line 409, in run',
                   "result = await app(  # type: ignore[func-returns-value]", "^^^^^^^^^^",
                   "RuntimeError: No response returned."])
    assert all(took) and (t.cls, t.scope) == ("client_disconnect", "")


def test_a_traceback_takes_at_most_max_lines() -> None:
    t = TraceTail()
    assert t.feed("Traceback (most recent call last):")
    frames = [t.feed('File "/srv/deep.py", line 1, in recurse') for _ in range(MAX_LINES - 1)]
    assert all(frames) and t.lines == MAX_LINES
    assert not t.feed('File "/srv/deep.py", line 1, in recurse')  # one more is refused
    assert t.lines == MAX_LINES


def test_a_server_stream_gets_one_error_record_per_traceback_and_an_incident_for_engine_death() -> None:
    """Each `Traceback` header starts a record: the chain is two, the first a timeout (its bare name
    read), the second the engine's death (also an incident), closed by the next log line. No line of
    them is left over as unparsed."""
    a = PyTraceAdapter()
    a.shared["server"] = "vllm"
    lines = lines_of(FIXTURES / "tracebacks" / "vllm_issue4293.log")
    out = [a.parse_text(line) for line in lines]
    assert out[:11] == [[]] * 11
    assert out[11] == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "timeout"}]
    assert out[12:16] == [[]] * 4
    assert out[16] == [{"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
                       {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]
    # a traceback before any server line named the stream's server is an application's: left alone
    b = PyTraceAdapter()
    assert [b.parse_text(line) for line in lines] == [None] * 17


def test_a_traceback_whose_head_was_cut_is_still_one_record_and_the_stream_goes_on() -> None:
    """vLLM ~0.6 (fixtures/vllm_requests/issue10925.log) without its `Traceback` line (a journal or a
    viewer showed it from a `File` line on): still one engine-dead record and incident, closed by the
    next line no server adapter claimed; the lines after that are left alone as before."""
    a = PyTraceAdapter()
    a.shared["server"] = "vllm"
    lines = lines_of(FIXTURES / "vllm_requests" / "issue10925.log")
    assert [a.parse_text(line) for line in lines[1:5]] == [[]] * 4
    other = "Some weights of the model checkpoint were not used when initializing the model."  # app_plain.txt
    assert a.parse_text(other) == [
        {"kind": "log", "provider": "vllm", "level": "ERROR", "error_type": "engine_dead"},
        {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"}]
    assert a.parse_text(other) is None
    assert a.flush() == []
