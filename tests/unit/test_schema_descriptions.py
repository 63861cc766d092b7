"""What `llm-exporter schema` tells a user: a valid JSON Schema (2020-12) that accepts every line the
application-JSON reader reads and refuses what the reader refuses for its type, and for each field a
description whose unit is the unit the reader applies and whose words are the documented ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from llm_exporter import commands
from llm_exporter.adapters.app_json import AppJsonAdapter, line_schema
from llm_exporter.adapters.base import Invalid


def printed_schema(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert commands.run("schema", []) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def read(obj: Any) -> Any:
    line = json.dumps(obj).encode()
    return AppJsonAdapter().parse_json(line, obj if isinstance(obj, dict) else None)


# -- the schema as a schema -------------------------------------------------------------------------

READ_LINES: list[dict[str, Any]] = [  # each one a request to the reader (checked below)
    {"duration": 1.5, "prompt": "never read", "my_own_field": [1, {"x": None}]},
    {"latency_ms": 812, "model": "m", "status": 200, "request_id": 17},
    {"ttft": "735.2ms", "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                  "prompt_tokens_details": {"cached_tokens": 1}}},
    {"usage": {"input_tokens": 2, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 0}},
     "object": "response", "choices": [{"finish_reason": "stop"}]},
    {"error": {"type": "invalid_request_error", "code": 400}, "id": "r1"},
    {"error": {"code": "rate_limit"}, "status": "error", "trace_id": "t"},
    {"exception": "TimeoutError", "level": "ERROR", "levelname": "ERROR"},
    {"status": "ok", "request_id": "r2", "tenant": "blue", "metadata": {"team": "x"}, "lora": "sql"},
]
REFUSED_LINES: list[Any] = [  # the reader calls these invalid; the schema refuses them too
    {"duration": -1.5},
    {"input_tokens": -3, "duration": 1.0},
    {"output_tokens": "12", "duration": 1.0},
    {"duration": True},
    {"usage": {"prompt_tokens": -1}},
    {"usage": {"prompt_tokens_details": {"cached_tokens": -2}, "prompt_tokens": 1}},
    {"model": 7, "duration": 1.0},
    {"error": {"type": 5}},
    {"choices": [{"finish_reason": 3}], "usage": {"prompt_tokens": 1}},
]


def test_the_schema_is_a_2020_12_json_schema_of_an_object(capsys: pytest.CaptureFixture[str]) -> None:
    schema = printed_schema(capsys)
    assert validator_for(schema, default=None) is Draft202012Validator  # says which draft it is
    Draft202012Validator.check_schema(schema)
    v = Draft202012Validator(schema)
    for not_an_object in ([], "duration=1.5", 1.5, None):
        assert not v.is_valid(not_an_object)
    assert schema["title"] == "Application JSON request line"
    assert schema["additionalProperties"] is True  # any other field is ignored, said explicitly
    # the names come with what they feed: no generated per-property titles ("Duration Ms") beside them
    assert all("title" not in p and p["description"] for p in schema["properties"].values())


@pytest.mark.parametrize("obj", READ_LINES)
def test_every_line_the_reader_reads_is_valid(capsys: pytest.CaptureFixture[str], obj: dict[str, Any]) -> None:
    rec = read(obj)
    assert rec is not None and rec["kind"] == "request"
    assert Draft202012Validator(printed_schema(capsys)).is_valid(obj)


@pytest.mark.parametrize("obj", REFUSED_LINES)
def test_a_bad_value_is_refused_by_the_reader_and_the_schema(capsys: pytest.CaptureFixture[str],
                                                            obj: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        read(obj)
    assert not Draft202012Validator(printed_schema(capsys)).is_valid(obj)


def test_the_description_states_when_a_line_is_a_request() -> None:
    assert line_schema()["description"] == (
        "One JSON object per line and per request, as an application logs it. Every field is optional and any "
        "other field is ignored (prompt and output text is never read). Among names for the same thing the "
        "first listed wins. A line counts as a request when it has a duration, a token count, usage, an error, "
        "a finish reason, or a status together with a request id; otherwise it is `unparsed`. A known field "
        "with a bad value (negative, wrong type) makes the line `invalid`.")
    # and it is so: a status alone is not a request, with a request id it is; a bad value is invalid
    assert read({"status": "ok"}) is None
    assert read({"status": "ok", "request_id": "r"})["outcome"] == "success"
    with pytest.raises(Invalid):
        read({"status": "ok", "request_id": "r", "duration": -1})


# -- each field's description -----------------------------------------------------------------------

# base name -> (record field, what the description says it is)
DURATION_BASES = {
    **dict.fromkeys(("duration", "latency", "total_time", "response_time", "elapsed"),
                    ("duration_s", "request duration, end to end")),
    "queue_time": ("queue_s", "time waiting before inference"),
    "inference_time": ("inference_s", "inference time (prefill and decode)"),
    **dict.fromkeys(("ttft", "time_to_first_token", "first_token_latency"), ("ttft_s", "time to the first token")),
    **dict.fromkeys(("tpot", "time_per_output_token", "time_per_token"),
                    ("tpot_s", "time per output token after the first")),
}
# name suffix -> (the unit as the description words it, units per second)
SUFFIX_UNITS = {
    "": ('seconds, or a duration string such as "735.2ms" or "8m44s"', 1.0),
    "_s": ("seconds", 1.0), "_sec": ("seconds", 1.0), "_secs": ("seconds", 1.0), "_seconds": ("seconds", 1.0),
    "_ms": ("milliseconds", 1e3), "_millis": ("milliseconds", 1e3),
    "_us": ("microseconds", 1e6), "_ns": ("nanoseconds", 1e9),
}
TOKENS = {**dict.fromkeys(("input_tokens", "prompt_tokens", "tokens_in"), "input_tokens"),
          **dict.fromkeys(("output_tokens", "completion_tokens", "generated_tokens", "tokens_out"), "output_tokens")}
# the other fields the reader takes (their descriptions are prose: each must say something)
OTHER_FIELDS = frozenset({
    "request_id", "id", "trace_id", "model", "model_name", "service", "operation", "task_type", "task",
    "path", "endpoint", "finish_reason", "done_reason", "stop_reason", "level", "levelname", "status",
    "error_type", "error", "exception", "usage", "object", "choices", "tenant", "team", "user", "metadata",
    "api_key", "user_api_key", "adapter", "lora", "lora_name", "adapter_id",
})


def test_every_field_is_described_with_its_meaning_and_unit() -> None:
    props = line_schema()["properties"]
    want = {b + s: f"{meaning}, in {unit}" for b, (_, meaning) in DURATION_BASES.items()
            for s, (unit, _) in SUFFIX_UNITS.items()}
    want |= {n: f"{canon.replace('_', ' ')} of the request" for n, canon in TOKENS.items()}
    assert set(props) == set(want) | OTHER_FIELDS
    assert {n: props[n]["description"] for n in want} == want
    assert all(len(props[n]["description"]) > 10 for n in OTHER_FIELDS)


@pytest.mark.parametrize("suffix", list(SUFFIX_UNITS))
def test_the_unit_a_description_states_is_the_unit_the_reader_applies(suffix: str) -> None:
    props = line_schema()["properties"]
    for base, (field, _) in DURATION_BASES.items():
        unit, per_second = SUFFIX_UNITS[suffix]
        assert props[base + suffix]["description"].endswith(f", in {unit}")
        assert read({base + suffix: 1500})[field] == 1500 / per_second, base + suffix


def test_token_names_feed_the_count_their_description_names() -> None:
    props = line_schema()["properties"]
    for name, field in TOKENS.items():
        assert props[name]["description"] == f"{field.replace('_', ' ')} of the request"
        assert read({name: 7})[field] == 7


def documented_fields() -> dict[str, str]:
    """The field table of docs/formats.md's application JSON section: field name -> its words there."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    section = text.split("### Application JSON lines (`app-json`)", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out: dict[str, str] = {}
    for row in rows:
        names, words = row.removeprefix("| ").removesuffix(" |").split(" | ", 1)
        for name in names.split(", "):
            out[name.strip("`")] = words
    return out


def test_the_printed_descriptions_are_the_documented_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """What `llm-exporter schema` says of each field (other than the durations and token counts,
    whose words are derived above) is what the format documentation says of it, word for word: a
    user reading either learns the same thing."""
    props = printed_schema(capsys)["properties"]
    documented = documented_fields()
    assert set(documented) == OTHER_FIELDS
    assert {n: props[n]["description"] for n in OTHER_FIELDS} == documented
