"""Error classes from exception names and HTTP status codes, worked out by hand for each line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_exporter.errors import (
    OTHER,
    _AnyOf,
    classify_event,
    classify_exception,
    exception_name,
    from_http_status,
    normalize,
)

# HTTP semantics (RFC 9110 and the de-facto 499 of nginx): which status says which error class
STATUS_CLASSES = [
    (429, "overloaded"), (503, "overloaded"),
    (408, "timeout"), (504, "timeout"),
    (400, "validation"), (413, "validation"), (422, "validation"),
    (499, "client_disconnect"),
    (404, "not_found"),
    # neighbours of the codes above, and server faults, say no class
    (401, OTHER), (407, OTHER), (409, OTHER), (412, OTHER), (414, OTHER), (421, OTHER), (423, OTHER),
    (498, OTHER), (500, OTHER), (502, OTHER), (505, OTHER),
]


@pytest.mark.parametrize(("code", "cls"), STATUS_CLASSES)
def test_a_failed_status_code_names_its_error_class(code: int, cls: str) -> None:
    assert from_http_status(code) == cls


# The last line of a Python traceback: the exception's (dotted) name, then `: message` or nothing.
# Messages with a colon of their own are the openai client's (`Error code: 400 - {...}`).
NAMES = [
    ("openai.BadRequestError: Error code: 400 - {'error': {'message': 'bad', 'code': 400}}",
     "openai.BadRequestError"),
    ("requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=8000)",
     "requests.exceptions.ConnectionError"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 50.00 MiB.", "torch.OutOfMemoryError"),
    ("Exception: Failed to load model", "Exception"),
    ("httpx.TimeoutException: timed out", "httpx.TimeoutException"),
    ("SystemExit: 1", "SystemExit"),
    ("click.exceptions.Exit: 0", "click.exceptions.Exit"),
    # a traceback of an exception raised without a message ends in the bare name
    ("asyncio.exceptions.CancelledError", "asyncio.exceptions.CancelledError"),
    ("KeyboardInterrupt", "KeyboardInterrupt"),
    ("KeyboardInterrupt: ", "KeyboardInterrupt"),
    # lines that are no exception's last line
    ("INFO: Started server process [1]", None),
    ("Failed to parse request, pydantic.ValidationError: 1 validation error", None),
    ("Traceback (most recent call last):", None),
    (": no name before the colon", None),
    ("", None),
    ("torch.cuda.OutOfMemoryWarning: low memory", None),
    ("app.not-an.identifier$Error: x", None),
    ("ERROR", None),
]


@pytest.mark.parametrize(("line", "name"), NAMES)
def test_an_exception_line_gives_the_exceptions_dotted_name(line: str, name: str | None) -> None:
    assert exception_name(line) == name


def test_an_exception_name_takes_at_most_199_characters() -> None:
    """The name is looked for in the line's first 200 characters, its colon included."""
    name = "a." * 94 + "XValueError"  # 199 characters
    assert len(name) == 199
    assert exception_name(name + ": x") == name
    assert exception_name(name) == name
    assert exception_name("b" + name + ": x") is None  # its colon is the 201st character
    assert exception_name("b" + name) is None


# (line, class): the name decides when it is a known one, else the message does
CLASSIFIED = [
    # pybind11 turns std::bad_alloc into MemoryError; the message names no class
    ("MemoryError: std::bad_alloc", "oom"),
    # anyio's cancellation message names no class either; the name is a cancelled request's
    ("asyncio.exceptions.CancelledError: Cancelled by cancel scope 7f52a4c1b310", "client_disconnect"),
    ("asyncio.exceptions.CancelledError", "client_disconnect"),
    ("concurrent.futures._base.TimeoutError: deadline", "timeout"),
    ("vllm.engine.async_llm_engine.AsyncEngineDeadError: Background loop has errored already.", "engine_dead"),
    # unknown names: the message decides
    ("ValueError: This model's maximum context length is 4096 tokens. However, you requested 4178 tokens",
     "validation"),
    ("RuntimeError: CUDA error: out of memory", "oom"),
    ("KeyError: 'choices'", OTHER),
    # a dotted name whose module part alone would look known is judged by its last part
    ("template.RenderError: cancelled", OTHER),
]


@pytest.mark.parametrize(("line", "cls"), CLASSIFIED)
def test_an_exception_line_is_classified_by_its_name_then_its_message(line: str, cls: str) -> None:
    assert classify_exception(line) == cls


# phrases with regular-expression characters and prefixes of one another; lines also with lone
# surrogates (undecodable bytes of a log line), which RE2 cannot take: the scan falls back to `re`
_alphabet = [*"ab.|*()[?\\", "é"]
_phrase = st.text(st.sampled_from(_alphabet), min_size=1, max_size=4)


@given(st.lists(_phrase, min_size=1, max_size=6), st.text(st.sampled_from([*_alphabet, "\udc80"]), max_size=24))
def test_one_scan_finds_a_phrase_exactly_when_a_plain_search_does(phrases: list[str], text: str) -> None:
    assert _AnyOf(phrases)(text) == any(p in text for p in phrases)


@pytest.mark.parametrize(("phrases", "text", "found"), [
    (["out of memory"], "CUDA out of memory \udcff", True),
    (["out of memory"], "CUDA out of mem \udcff", False),
    (["a.b", "x|y"], "a_b x", False),
    (["a.b", "x|y"], "a.b", True),
    (["a.b", "x|y"], "x|y", True),
])
def test_phrase_scan_on_undecodable_and_special_characters(phrases: list[str], text: str, found: bool) -> None:
    assert _AnyOf(phrases)(text) is found


@pytest.mark.parametrize(("name", "cls"), [
    ("rate_limit_error", "overloaded"),  # OpenAI's and Anthropic's error.type for a 429
    ("openai.RateLimitError", "overloaded"), ("invalid_request_error", "validation"),
    ("litellm.UnsupportedParamsError", "validation"), ("MyOwnError", "MyOwnError"),
])
def test_an_applications_error_name_is_its_class_or_kept(name: str, cls: str) -> None:
    assert normalize(name) == cls


@pytest.mark.parametrize(("line", "want"), [
    ("EngineCore failed to start: deadline exceeded", ("incident", "timeout")),
    ("EngineCore failed: CUDA out of memory", ("incident", "oom")),
    ("EngineCore encountered a fatal error.", ("incident", "engine_dead")),
])
def test_an_engine_incident_keeps_an_oom_or_timeout_class(line: str, want: tuple[str, str]) -> None:
    assert classify_event(line) == want


@pytest.mark.parametrize(("name", "cls"), [
    # only the last part of a dotted path is the class name, however deep the path
    ("requests.exceptions.ChunkedEncodingError", "ChunkedEncodingError"),
    ("a.b.c.MyOwnError", "MyOwnError"),
    # up to four digits belong to a name; five or more are an id or a count, never a label value
    ("ISO8601Error", "ISO8601Error"), ("Err1234", "Err1234"),
    ("Err12345", OTHER), ("job_12345", OTHER),
])
def test_an_error_name_is_its_last_dotted_part_without_ids(name: str, cls: str) -> None:
    assert normalize(name) == cls
