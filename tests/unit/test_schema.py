"""`llm-exporter schema` describes what is accepted: every field name it lists changes what the
application-JSON reader makes of a line, and names the reader ignores (`queue_s`, `inference_s`)
are not listed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm_exporter import commands
from llm_exporter.adapters.app_json import DURATION_NAMES, AppJsonAdapter


def printed_schema(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert commands.run("schema", list(argv)) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def read(obj: dict[str, Any]) -> Any:
    line = json.dumps(obj).encode()
    return AppJsonAdapter().parse_json(line, json.loads(line))


def sample(name: str, prop: dict[str, Any]) -> Any:
    special = {"usage": {"prompt_tokens": 7}, "choices": [{"finish_reason": "length"}], "object": "embedding",
               "path": "/v1/embeddings", "endpoint": "/v1/embeddings", "status": "error", "level": "ERROR",
               "levelname": "ERROR", "error": "timeout", "error_type": "timeout", "exception": "TimeoutError",
               "metadata": {"team": "search"}}
    if name in special:
        return special[name]
    types = {t.get("type") for t in prop.get("anyOf", [prop])}
    return 5 if types & {"number", "integer"} else "x-value"


def test_every_listed_field_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    props = printed_schema(capsys)["properties"]
    assert len(props) > 50
    ttft_names = {b + s for b in DURATION_NAMES["ttft_s"] for s in ("", "_ms", "_s", "_us", "_ns", "_seconds", "_sec",
                                                                     "_secs", "_millis")}
    for name, prop in props.items():
        assert prop["description"], name
        # a line that is a request without this field, evidence taken from another group
        base: dict[str, Any] = {"duration": 2.0} if name in ttft_names else {"ttft": 0.5}
        if name == "choices":  # read from an OpenAI response object, which has usage
            base["usage"] = {"prompt_tokens": 1}
        without, with_it = read(base), read({**base, name: sample(name, prop)})
        assert with_it is not None and with_it != without, f"{name} listed but not read"


def test_names_the_reader_ignores_are_not_listed(capsys: pytest.CaptureFixture[str]) -> None:
    props = printed_schema(capsys)["properties"]
    for name in ("queue_s", "inference_s", "kind", "provider", "outcome", "eval_count"):
        assert name not in props
    rec = read({"duration": 2.0, "queue_s": 1.0, "inference_s": 1.0})
    assert rec.get("queue_s") is None and rec.get("inference_s") is None  # the reader does ignore them
    assert {"queue_time_ms", "inference_time", "latency_ms", "prompt_tokens", "usage", "status"} <= set(props)


def test_the_internal_record_is_still_there_for_adapter_authors(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"duration_s", "queue_s", "outcome"} <= set(printed_schema(capsys, "--record")["properties"])
