"""LiteLLM's text lines and JSON payloads, one by one, to the exact record.

The LiteLLM lines are copied unchanged from public LiteLLM user reports (issues and notes quoting the
proxy's console: a router's `200 OK` lines, cost-map warnings, `proxy_server.py` errors); the access
and `INFO:httpx` lines are from tests/fixtures/corpus/litellm.log (sources cited there). The expected
records are worked out by hand from the format (see the adapter's docstring). The JSON payloads are
LiteLLM's own published standard logging payload and spend-log row (tests/fixtures/accounting,
sources in its README), each case changing only the fields it names, in LiteLLM's field names.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from llm_exporter.adapters.base import IGNORED, Invalid
from llm_exporter.adapters.litellm import LitellmAdapter
from tests.helpers import FIXTURES

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
    ("LiteLLM Router: INFO: routing to deployment: gpt-4o", log("INFO")),  # the level ends at its own colon
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
    assert http == {"kind": "http", "provider": "litellm", "method": "POST", "path": "/v1/chat/completions",
                    "code": "200"}
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
    ("WARNING:h:retrying", log("WARNING")),  # Python's default `%(levelname)s:%(name)s:` with a one-letter logger
    ("ERROR:    Exception in ASGI application", None),
    ("ERROR:", None),
    ("Traceback (most recent call last):", None),
])
def test_other_lines_of_a_litellm_stream(line: str, want: Any) -> None:
    a = litellm_stream()
    assert a.parse_text(line) == want
    assert LitellmAdapter().parse_text(line) is None  # on a stream not known to be LiteLLM's


# -- JSON: the standard logging payload and the spend-log row -------------------------------------

_PAYLOAD = json.loads((FIXTURES / "accounting" / "litellm_standard_logging_payload.json").read_text())
_ROW = json.loads((FIXTURES / "accounting" / "litellm_spend_logs_payload.json").read_text())

#: the standard payload as published: gpt-4o (its model_group is ""), 10 + 20 tokens, response_cost
#: 0.00022500000000000002 (225 000 000 pico-units), streamed, startTime .847371 to endTime .851954
#: (4.583 ms) with the first chunk at endTime, finish reason stop, status success, no identity
PAYLOAD_REC: dict[str, Any] = {
    "kind": "request", "provider": "litellm", "operation": "chat", "model": "gpt-4o",
    "request_id": "chatcmpl-2299b6a2-82a3-465a-b47c-04e685a2227f", "input_tokens": 10, "output_tokens": 20,
    "prompt_tokens": 10, "cost_pico": 225_000_000, "duration_s": 0.004583, "ttft_s": 0.004583,
    "finish_reason": "stop", "outcome": "success", "error_type": "", "tenant": None, "tenant_key": None,
}
#: the spend-log row as published: the same call, its `response` an empty object's text (no finish
#: reason) and no `stream` field (no time to first token)
ROW_REC: dict[str, Any] = {
    **{k: v for k, v in PAYLOAD_REC.items() if k not in ("ttft_s", "finish_reason")},
    "request_id": "chatcmpl-2283081b-dc89-41f6-93e6-d4f914774027",
}
_DROP = object()


def _set(obj: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`obj` with these top-level fields set (`_DROP`: removed)."""
    for k, v in fields.items():
        if v is _DROP:
            del obj[k]
        else:
            obj[k] = v
    return obj


def payload(**fields: Any) -> dict[str, Any]:
    """The published payload with these top-level fields set (`_DROP`: removed)."""
    obj = copy.deepcopy(_PAYLOAD)
    return _set(obj, fields)


def row(meta: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The published spend-log row with these fields set and `meta` merged into its `metadata`
    text (which stays JSON-encoded text, as the Pub/Sub logger publishes it)."""
    obj = copy.deepcopy(_ROW)
    if meta:
        obj["metadata"] = json.dumps({**json.loads(obj["metadata"]), **meta})
    return _set(obj, fields)


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    cur = obj
    *head, last = path.split(".")
    for part in head:
        cur = cur[int(part)] if type(cur) is list else cur[part]
    cur[last] = value
    return obj


def check(rec: dict[str, Any], want: dict[str, Any]) -> None:
    """The whole record; durations within a microsecond (LiteLLM's times have microseconds)."""
    got, want = dict(rec), dict(want)
    for k in ("duration_s", "ttft_s"):
        if k in want:
            assert got.pop(k) == pytest.approx(want.pop(k), abs=1e-6), k
    assert got == want


def _no(*keys: str, base: dict[str, Any] = PAYLOAD_REC) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in keys}


@pytest.mark.parametrize(("obj", "want"), [
    pytest.param(payload(), PAYLOAD_REC, id="published payload"),
    pytest.param(row(), ROW_REC, id="published spend-log row"),
    pytest.param(payload(model_group="gpt-4o-prod"), {**PAYLOAD_REC, "model": "gpt-4o-prod"},
                 id="the model group the client asked for wins over the deployment's model"),
    pytest.param(payload(model=None), {**PAYLOAD_REC, "model": ""}, id="no model at all"),
    pytest.param(payload(call_type="aembedding"), {**PAYLOAD_REC, "operation": "embeddings"}, id="embedding"),
    pytest.param(payload(call_type="atext_completion"), {**PAYLOAD_REC, "operation": "text_completion"},
                 id="text completion"),
    pytest.param(payload(call_type="image_generation"), {**PAYLOAD_REC, "operation": ""},
                 id="a call type with no operation"),
    pytest.param(row(prompt_tokens=_DROP, completion_tokens=_DROP, usage={"prompt_tokens": 7, "completion_tokens": 3}),
                 {**ROW_REC, "input_tokens": 7, "prompt_tokens": 7, "output_tokens": 3},
                 id="older spend-log row: tokens under usage"),
    pytest.param(payload(prompt_tokens=_DROP, completion_tokens=_DROP),
                 _no("input_tokens", "prompt_tokens", "output_tokens"), id="no token counts"),
    pytest.param(payload(prompt_tokens=0, completion_tokens=0),
                 {**PAYLOAD_REC, "input_tokens": 0, "prompt_tokens": 0, "output_tokens": 0}, id="zero tokens"),
    pytest.param(payload(prompt_tokens=12.0, completion_tokens=0.0),
                 {**PAYLOAD_REC, "input_tokens": 12, "prompt_tokens": 12, "output_tokens": 0},
                 id="token counts written as whole floats"),
    pytest.param(_with(payload(), "response.usage.prompt_tokens_details", {"cached_tokens": 6}),
                 {**PAYLOAD_REC, "cached_tokens": 6}, id="cached prompt tokens in the response's usage"),
    pytest.param(row({"usage_object": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
                                       "prompt_tokens_details": {"cached_tokens": 4}}}),
                 {**ROW_REC, "cached_tokens": 4}, id="cached prompt tokens in the row's metadata text"),
    pytest.param(payload(startTime=1737710446.5, endTime=1737710448.0, completionStartTime=1737710446.75),
                 {**PAYLOAD_REC, "duration_s": 1.5, "ttft_s": 0.25}, id="times as epoch seconds"),
    pytest.param(payload(startTime="2025-01-24T09:20:46Z", endTime="2025-01-24T09:20:48.500000Z",
                         completionStartTime="2025-01-24T09:20:46.125000Z"),
                 {**PAYLOAD_REC, "duration_s": 2.5, "ttft_s": 0.125}, id="ISO times in UTC with Z"),
    pytest.param(payload(endTime="2025-01-24 09:20:46.847371", completionStartTime="2025-01-24 09:20:46.847371"),
                 {**PAYLOAD_REC, "duration_s": 0.0, "ttft_s": 0.0}, id="answered at once"),
    pytest.param(payload(endTime=None), _no("duration_s", "ttft_s"), id="no end time"),
    pytest.param(payload(stream=False), _no("ttft_s"), id="not streamed: no time to first token"),
    pytest.param(_with(payload(), "response.choices", []), _no("finish_reason"), id="no choices"),
    pytest.param(_with(payload(), "metadata.requester_metadata", {"adapter": "sql-lora"}),
                 {**PAYLOAD_REC, "adapter": "sql-lora"}, id="LoRA adapter named by the client"),
    pytest.param(_with(payload(), "metadata.requester_metadata", {"tags": ["batch"]}), PAYLOAD_REC,
                 id="client metadata without an adapter"),
    pytest.param(row(response=json.dumps(_PAYLOAD["response"])), {**ROW_REC, "finish_reason": "stop"},
                 id="finish reason in the row's response text"),
    pytest.param(row(response=json.dumps(_with(copy.deepcopy(_PAYLOAD["response"]),
                                               "usage.prompt_tokens_details", {"cached_tokens": 6}))),
                 {**ROW_REC, "finish_reason": "stop", "cached_tokens": 6},
                 id="cached prompt tokens in the row's response text"),
    pytest.param(row(response="{not json"), ROW_REC, id="response text that is no JSON"),
    pytest.param(row(metadata="{not json"), ROW_REC, id="spend-log metadata text that is no JSON"),
    pytest.param(row({"user_api_key_alias": "payments-bot"}), {**ROW_REC, "tenant": "payments-bot"},
                 id="tenant from the row's metadata text"),
    pytest.param(_with(payload(call_type=[], id=5, model=5, model_group=5, startTime=True), "response.choices.0"
                       ".finish_reason", 5),
                 {**_no("request_id", "duration_s", "ttft_s", "finish_reason"), "operation": "", "model": ""},
                 id="fields of the wrong type are left out"),
])
def test_litellm_json_record(obj: dict[str, Any], want: dict[str, Any]) -> None:
    check(LitellmAdapter().parse_json(b"", obj), want)


@pytest.mark.parametrize("obj", [
    None,  # the pipeline did not parse the line
    {"response_cost": 0.1, "model": "gpt-4o"},  # a cost but no call_type: not LiteLLM's
    {"call_type": "acompletion", "model": "gpt-4o"},  # no cost field: not a payload or spend-log row
])
def test_litellm_json_not_a_payload(obj: dict[str, Any] | None) -> None:
    assert LitellmAdapter().parse_json(b"{}", obj) is None


@pytest.mark.parametrize("edit", [
    lambda: payload(prompt_tokens=-1), lambda: payload(completion_tokens="twenty"),
    lambda: payload(prompt_tokens=1.5), lambda: payload(response_cost="lots"), lambda: row(spend=-0.1),
])
def test_litellm_json_bad_value_is_invalid(edit: Callable[[], dict[str, Any]]) -> None:
    with pytest.raises(Invalid) as e:
        LitellmAdapter().parse_json(b"", edit())
    assert e.value.reason == "bad_value"


def _info(cls: Any = "", code: Any = "") -> dict[str, Any]:
    return {"error_code": code, "error_class": cls, "llm_provider": "openai", "traceback": "", "error_message": ""}


@pytest.mark.parametrize(("status", "info", "want"), [
    ("success", _info(), ("success", "")),  # as published: empty error fields
    (_DROP, _DROP, ("success", "")),  # nothing says it failed
    ("failure", _DROP, ("error", "_OTHER")),
    ("failure", _info("RateLimitError", "429"), ("error", "overloaded")),
    ("failure", _info("APIConnectionError", "500"), ("error", "APIConnectionError")),  # the class, not the code
    ("failure", _info("", "429"), ("error", "overloaded")),  # no class: the HTTP code says it
    ("failure", _info(None, "429"), ("error", "overloaded")),
    ("failure", _info("", 400), ("error", "validation")),
    ("failure", _info("", "503"), ("error", "overloaded")),
    ("failure", _info("", "0"), ("error", "_OTHER")),  # a code that is no HTTP error: still an error
    ("failure", _info(5, 5.5), ("error", "_OTHER")),  # class and code of the wrong type
    (_DROP, _info("RateLimitError"), ("error", "overloaded")),  # no status, an error class: a failure
    ("", _info("RateLimitError"), ("error", "overloaded")),
    (_DROP, _info("", "429"), ("error", "overloaded")),  # no status, an error code: a failure
    ("Failure", _info("", "400"), ("error", "validation")),
])
def test_litellm_payload_outcome(status: Any, info: Any, want: tuple[str, str]) -> None:
    rec = LitellmAdapter().parse_json(b"", payload(status=status, error_information=info))
    assert (rec["outcome"], rec["error_type"]) == want


@pytest.mark.parametrize(("info", "want"), [
    (None, ("error", "_OTHER")),
    # two errors as a LiteLLM_SpendLogs table keeps them (a public PostgreSQL dump of the table; the
    # traceback left out): a call without a key (class Exception, no HTTP code) and an unknown model
    ({"traceback": "", "error_code": "", "error_class": "Exception", "llm_provider": "",
      "error_message": "No api key passed in."}, ("error", "Exception")),
    ({"traceback": "", "error_code": "400", "error_class": "ProxyModelNotFoundError", "llm_provider": "",
      "error_message": "400: {'error': '/chat/completions: Invalid model name passed in model=None. Call "
                       "`/v1/models` to view available models for your key.'}"},
     ("error", "ProxyModelNotFoundError")),
    (_info("", "429"), ("error", "overloaded")),
])
def test_litellm_spend_row_outcome_from_its_metadata(info: Any, want: tuple[str, str]) -> None:
    """A spend-log row keeps the error under `metadata.error_information` (the published row has
    the key, null for its success), its status at the top level."""
    rec = LitellmAdapter().parse_json(b"", row({"error_information": info, "status": "failure"}, status="failure"))
    assert (rec["outcome"], rec["error_type"]) == want
