"""The application-JSON reader's per-field fast check and the operation taken from an HTTP path.

The fast check (`_plain`, with each field's check chosen from its declared type by `_kind`) may pass
a value only when the schema pass would hand back the same value; and it should pass the plain
values each kind of field carries, or every such line pays for the schema pass. The operation comes
from the path with its query string and trailing slash taken off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_exporter.accounting import ADAPTER_NAMES
from llm_exporter.adapters import app_json
from llm_exporter.adapters.app_json import (
    APP_LINE,
    DURATION_NAMES,
    FINISH_NAMES,
    FOREIGN_KEYS,
    FOREIGN_NAMES,
    IDENTITY_NAMES,
    LITELLM_NAMES,
    MODEL_NAMES,
    OPERATION_NAMES,
    PATH_NAMES,
    REQUEST_ID_NAMES,
    SUFFIXES,
    TOKEN_NAMES,
    AppJsonAdapter,
)

# the plain values of each kind of field, which need no schema pass
DURATION = [1.5, 2, 0, 0.0, "735.2ms", None]
COUNT = [3, 0, 2**70, None]
IDENT = ["r1", 17, 0, None]
TEXT = ["x", "", None]
USAGE = [{"prompt_tokens": 3, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 1}},
         {"input_tokens": 1, "output_tokens": 2, "input_tokens_details": None},
         {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}},  # no cache hit: the common case
         {}, None]
ANYTHING = [{"team": ["a"]}, [1], True, -1.5, "x", None]

PLAIN: dict[str, list[Any]] = {
    **{b + s: DURATION for bases in DURATION_NAMES.values() for b in bases for s in SUFFIXES},
    **{n: COUNT for names in TOKEN_NAMES.values() for n in names},
    **dict.fromkeys((*REQUEST_ID_NAMES, "status"), IDENT),
    **dict.fromkeys((*MODEL_NAMES, *OPERATION_NAMES, *PATH_NAMES, *FINISH_NAMES, "level", "levelname",
                     "error_type", "error", "exception", "object"), TEXT),
    "usage": USAGE,
    **dict.fromkeys((*FOREIGN_NAMES, *FOREIGN_KEYS, *IDENTITY_NAMES, *ADAPTER_NAMES, *LITELLM_NAMES), ANYTHING),
    "choices": [],  # a list of objects: the schema pass judges every line that has one
}

PROBES: list[Any] = [None, True, False, -1, 0, 5, 2**70, 1.5, -1.5, 0.0, "s", "", "12", {"type": "x"},
                     {"code": 5}, {"prompt_tokens": 2}, {"prompt_tokens": -2}, {"prompt_tokens": 1.0},
                     {"prompt_tokens_details": {"cached_tokens": -1}}, {"prompt_tokens_details": 3},
                     {"input_tokens_details": {"cached_tokens": "1"}}, [1], [{"finish_reason": "stop"}]]


def fast(name: str, value: Any) -> bool:
    """Whether the fast check passes `{name: value}`, its check chosen from the declared type now."""
    return app_json._plain({name: value}, ((name, app_json._kind(app_json._fields[name])),))


def test_every_known_field_has_its_plain_values_listed() -> None:
    assert set(PLAIN) == set(app_json._fields)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_values_skip_the_schema_pass(name: str) -> None:
    for v in PLAIN[name]:
        assert fast(name, v), (name, v)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_the_fast_check_passes_only_what_the_schema_returns_unchanged(name: str) -> None:
    for v in PROBES:
        if not fast(name, v):
            continue
        got = APP_LINE.validate_json(json.dumps({name: v}))[name]
        # a duration's int comes back a float of the same value (the reader divides it either way)
        want = float(v) if type(v) is int and PLAIN[name] is DURATION else v
        if name == "usage" and v is not None:  # names it does not know are dropped (and never read)
            want = {k: x for k, x in v.items() if k in app_json._USAGE_KEYS}
        assert got == want and type(got) is type(want), (name, v, got)


@pytest.mark.parametrize(("line", "record"), [
    ({"input_tokens": 3.5}, "invalid"),  # a fraction of a token
    ({"output_tokens": "12"}, "invalid"),
    ({"duration": 1.0, "model": 7}, "invalid"),
    ({"duration": 1.0, "request_id": 1.5}, "invalid"),
    ({"duration": 1.0, "usage": {"prompt_tokens": "3"}}, "invalid"),
    ({"duration": 1.0, "error": {"type": "rate_limit_error"}}, {"outcome": "error"}),
    ({"input_tokens": 3}, {"input_tokens": 3, "prompt_tokens": 3}),
    ({"duration": 2, "model": "m"}, {"duration_s": 2.0, "model": "m"}),
])
def test_lines_with_a_value_of_the_wrong_type(line: dict[str, Any], record: Any) -> None:
    """Read with one reader, as the pipeline does: the verdict does not depend on the path taken."""
    try:
        rec = AppJsonAdapter().parse_json(json.dumps(line).encode(), line)
    except app_json.Invalid:
        rec = "invalid"
    if record == "invalid":
        assert rec == "invalid"
    else:
        assert rec != "invalid" and record.items() <= rec.items()


@pytest.mark.parametrize(("path", "operation"), [
    ("/v1/chat/completions", "chat"),
    ("/v1/chat/completions?stream=true", "chat"),
    ("/v1/embeddings/", "embeddings"),
    ("/v1/completions/?a=b?c", "text_completion"),  # a '?' inside the query string too
    ("/api/generate?next=/v1/embeddings", "text_completion"),
    ("/generate_stream/", "text_completion"),
    ("/v1/messages?beta=true", "chat"),
    ("/health", ""),
    ("/api/chatX", ""),  # only the slash is taken off the end
    ("/v1/models?x=/v1/chat/completions", ""),
])
def test_operation_from_a_path_with_a_query_or_a_trailing_slash(path: str, operation: str) -> None:
    line = {"path": path, "duration": 0.5}
    assert AppJsonAdapter().parse_json(json.dumps(line).encode(), line)["operation"] == operation
    assert app_json.operation_from_path(path) == operation
