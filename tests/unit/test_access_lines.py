"""Access lines on inference paths: which are finished requests, of which operation and outcome.

The uvicorn lines below are real (tests/fixtures/samples/vllm.log, tests/fixtures/vllm_requests/,
tests/fixtures/corpus/sglang.log; uvicorn writes the same line whichever server runs it). The expected
outcome of each status is worked out from the HTTP meaning of the code: below 400 a success, 499
the client going away, 400/413/422 a bad request, 404 not found, 429/503 overloaded, 408/504 a
timeout, any other 4xx/5xx a failure of no named class.
"""

from __future__ import annotations

import pytest

from llm_exporter.adapters.access import (
    access_request,
    bound_path,
    http_record,
    inference_operation,
    parse_uvicorn,
)
from llm_exporter.labels import OTHER
from llm_exporter.records import validate_record


@pytest.mark.parametrize(("line", "method", "path", "code", "operation"), [
    ('INFO:     127.0.0.1:40052 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
     "POST", "/v1/chat/completions", "200", "chat"),
    ('INFO:     127.0.0.1:59042 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request',
     "POST", "/v1/chat/completions", "400", "chat"),
    ('INFO:     172.16.80.73:61206 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error',
     "POST", "/v1/chat/completions", "500", "chat"),
    # the query string is not part of the path
    ('INFO:     10.1.6.81:16983 - "POST /v1/messages?beta=true HTTP/1.1" 500 Internal Server Error',
     "POST", "/v1/messages", "500", "chat"),
    ('INFO:     10.25.28.11:47260 - "POST /generate HTTP/1.1" 200 OK', "POST", "/generate", "200",
     "text_completion"),
    ('INFO:     127.0.0.1:49272 - "POST /v1/audio/speech HTTP/1.1" 200 OK', "POST", "/v1/audio/speech", "200",
     "speech"),
    # not an inference path, or not a POST: no request
    ('INFO:     127.0.0.1:38734 - "GET /v1/models/my-gpt-4o HTTP/1.1" 500 Internal Server Error',
     "GET", OTHER, "500", None),
    ('INFO:     172.16.21.155:59456 - "GET /health HTTP/1.1" 200 OK', "GET", "/health", "200", None),
])
def test_a_real_access_line_names_its_path_and_operation(line: str, method: str, path: str, code: str,
                                                        operation: str | None) -> None:
    """The access line's method, bounded path and status; the operation when it is a finished request."""
    rec = parse_uvicorn(line, "sglang")
    assert rec is not None
    assert (rec["method"], rec["path"], rec["code"]) == (method, path, code)
    raw_path = line.split('"')[1].split(" ")[1]
    assert inference_operation(rec["method"], raw_path) == operation


@pytest.mark.parametrize(("path", "operation"), [
    ("/v1/completions", "text_completion"),
    ("/v1/completions/", "text_completion"),         # a trailing slash is the same path
    ("/v1/completions?stream=true", "text_completion"),
    ("/generate?next=/a?b", "text_completion"),      # a `?` inside the query string stays in it
    ("/v1/embeddings//", "embeddings"),
    ("/", None),
    ("//", None),
    ("/v1/completions ", None),                      # only slashes are trimmed, not spaces
    ("/v1/completionsX", None),                      # a near miss is not the inference path
    ("/generateX/", None),
    ("/v1/chat/completions/extra", None),
])
def test_inference_paths_are_matched_exactly_without_query_or_trailing_slash(path: str,
                                                                             operation: str | None) -> None:
    assert inference_operation("POST", path) == operation
    assert inference_operation("GET", path) is None


@pytest.mark.parametrize(("code", "outcome", "error_type"), [
    ("200", "success", ""),
    ("302", "success", ""),
    ("399", "success", ""),
    ("400", "error", "validation"),   # the lowest failed status
    ("401", "error", OTHER),
    ("404", "error", "not_found"),
    ("408", "error", "timeout"),
    ("422", "error", "validation"),
    ("429", "error", "overloaded"),
    ("499", "aborted", ""),           # the client went away: not an error of the server
    ("500", "error", OTHER),
    ("503", "error", "overloaded"),
    ("504", "error", "timeout"),
])
def test_an_access_line_is_one_request_with_the_outcome_of_its_status(code: str, outcome: str,
                                                                       error_type: str) -> None:
    rec = access_request("sglang", "chat", code)
    validate_record(rec)
    assert rec == {"kind": "request", "provider": "sglang", "operation": "chat", "model": "",
                   "outcome": outcome, "error_type": error_type}


def test_an_access_request_keeps_its_duration_and_model() -> None:
    rec = access_request("litellm", "embeddings", "503", duration_s=0.25, model="bge-m3")
    assert rec == {"kind": "request", "provider": "litellm", "operation": "embeddings", "model": "bge-m3",
                   "outcome": "error", "error_type": "overloaded", "duration_s": 0.25}


@pytest.mark.parametrize(("path", "label"), [
    ("/v1/models", "/v1/models"),
    ("/v1/models/", "/v1/models"),                   # a trailing slash is the same path
    ("/v1/models?a=1?b=2", "/v1/models"),            # the query string is everything after the first `?`
    ("/", "/"),
    ("/v1/modelsX", OTHER),                          # a near miss, and only slashes are trimmed
    ("/v1/models/X", OTHER),
    ("/v1/models/my-gpt-4o", OTHER),                 # an id in the path (the vLLM line above)
])
def test_path_label_is_a_known_path_without_query_or_trailing_slash_else_other(path: str, label: str) -> None:
    assert bound_path(path) == label


def test_method_label_is_a_known_method_else_other() -> None:
    """A scanner's method (`PROPFIND`, `PRI`) is not a label value of its own."""
    assert [http_record("ollama", m, "/", "405")["method"] for m in ("GET", "PROPFIND", "PRI")] == \
        ["GET", OTHER, OTHER]


@pytest.mark.parametrize("line", [
    # the first line of this file varied by hand: a status of four digits, or of letters
    'INFO:     127.0.0.1:40052 - "POST /v1/chat/completions HTTP/1.1" 2000 OK',
    'INFO:     127.0.0.1:40052 - "POST /v1/chat/completions HTTP/1.1" abc OK',
    # ... a request line without its protocol, or with a word in its place
    'INFO:     127.0.0.1:40052 - "POST /v1/chat/completions" 200 OK',
    'INFO:     127.0.0.1:40052 - "POST /v1/chat/completions HTTX/1.1" 200 OK',
])
def test_line_without_a_status_or_a_request_line_is_no_access_line(line: str) -> None:
    assert parse_uvicorn(line, "vllm") is None
