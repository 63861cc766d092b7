"""LiteLLM's text lines, one by one, to the exact record.

The LiteLLM lines are copied unchanged from public LiteLLM user reports (issues and notes quoting the
proxy's console: a router's `200 OK` lines, cost-map warnings, `proxy_server.py` errors); the access
and `INFO:httpx` lines are from tests/fixtures/corpus/litellm.log (sources cited there). The expected
records are worked out by hand from the format (see the adapter's docstring).
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_exporter.adapters.base import IGNORED
from llm_exporter.adapters.litellm import LitellmAdapter

ROUTER_OK = ("01:15:23 - LiteLLM Router:INFO: router.py:588 - litellm.completion(model=openai/gpt-4o-mini) "
             "200 OK")
COST_WARNING = ("07:39:20 - LiteLLM:WARNING: utils.py:3007 - register_model: model=openrouter/tencent/hy3:free "
                "not in built-in cost map and no prefix/region variant matched; cache cost fields wil")
PROXY_ERROR = ("13:18:35 - LiteLLM Proxy:ERROR: proxy_server.py:3714 - litellm.proxy.proxy_server."
               "chat_completion(): Exception occured - litellm.UnsupportedParamsError: ollama does not support "
               "parameters: {'presence_penalty': 0}, for model=deepseek-r1. To drop th")
RATE_LIMIT = ("00:07:32 - LiteLLM Router:INFO: router.py:1095 - litellm.acompletion(model=claude-3-5-sonnet-20240620) "
              'Exception litellm.RateLimitError: AnthropicException - {"type":"error","error":{"type":"')
ACCESS_OK = 'INFO:     127.0.0.1:65383 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
ACCESS_500 = 'INFO:     127.0.0.1:38734 - "GET /v1/models/my-gpt-4o HTTP/1.1" 500 Internal Server Error'


def log(level: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "log", "provider": "litellm", "level": level, **kw}


@pytest.mark.parametrize(("line", "want"), [
    (ROUTER_OK, log("INFO")),
    (ROUTER_OK[11:], log("INFO")),  # without the time
    (COST_WARNING, log("WARNING")),
    (PROXY_ERROR, log("ERROR", error_type="validation")),
    (PROXY_ERROR.replace("Proxy:ERROR", "Proxy:CRITICAL"), log("CRITICAL", error_type="validation")),
    (RATE_LIMIT, log("INFO")),
    ("00:07:32 - LiteLLM Proxy:DEBUG: proxy_server.py:1 - x", log("DEBUG")),
    ("LiteLLM Router: INFO: routing to deployment", log("INFO")),  # older builds: the level after the name
    ("LiteLLM Proxy: ERROR: x", log("ERROR", error_type="_OTHER")),
    ("LiteLLM Proxy: INITIALIZING LITELLM CALLBACKS!", IGNORED),
    ("LiteLLM.Router: adding b6b4bf0a-57c5-412f-868c-7de181609430 to cooldown models", IGNORED),
    ("LiteLLM.Router:", IGNORED),
    ("LiteLLM Proxy: Info: lower case is no level", IGNORED),
    ("LiteLLM Proxy:NOTICE: x", IGNORED),
    ("LiteLLMx: something", None),
    ("1:15:23 - LiteLLM Router:INFO: router.py:588 - x", None),  # not a time: not stripped
    ("01:15:23 + LiteLLM Router:INFO: router.py:588 - x", None),
])
def test_litellm_lines(line: str, want: Any) -> None:
    a = LitellmAdapter()
    assert a.parse_text(line) == want
    if want is not None:
        assert a.shared["server"] == "litellm"


def test_a_rate_limit_error_line_is_classed() -> None:
    line = RATE_LIMIT.replace("Router:INFO", "Router:ERROR")
    assert LitellmAdapter().parse_text(line) == log("ERROR", error_type="overloaded")


def litellm_stream() -> LitellmAdapter:
    a = LitellmAdapter()
    assert a.parse_text(ROUTER_OK) == log("INFO")
    return a


def test_access_lines_count_once_the_stream_is_litellms() -> None:
    assert LitellmAdapter().parse_text(ACCESS_OK) is None  # nobody said it is LiteLLM's yet
    a = litellm_stream()
    http, request = a.parse_text(ACCESS_OK)
    assert http["kind"] == "http" and http["code"] == "200" and http["path"] == "/v1/chat/completions"
    assert request == {"kind": "request", "provider": "litellm", "operation": "chat", "model": "",
                       "outcome": "success", "error_type": ""}
    only = a.parse_text(ACCESS_500)
    assert only["kind"] == "http" and only["code"] == "500"  # /v1/models is no inference request
    assert a.parse_text("INFO:     Application startup complete.") is None


@pytest.mark.parametrize(("line", "want"), [
    ("get cache: cache key: 11-13:cooldown_models; local_only: False", IGNORED),
    ("in_memory_result: ['2caf400e-3a7a-4f22-9d30-f0ce7ae4edac']", IGNORED),
    ("Logging Details LiteLLM-Failure Call", IGNORED),
    ("prisma client - None", IGNORED),
    ('INFO:httpx:HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 401 Unauthorized"',
     log("INFO")),
    ("WARNING:root:something", log("WARNING")),
    ("ERROR:    Exception in ASGI application", None),
    ("ERROR:", None),
    ("Traceback (most recent call last):", None),
])
def test_other_lines_of_a_litellm_stream(line: str, want: Any) -> None:
    a = litellm_stream()
    assert a.parse_text(line) == want
    assert LitellmAdapter().parse_text(line) is None  # on a stream not known to be LiteLLM's
