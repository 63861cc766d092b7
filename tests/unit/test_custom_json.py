"""The `--config` file's custom JSON shapes read line by line (in process): each mapped field's unit
and bounds, the record's defaults, extra labels and tenant, and custom metrics with their labels.
Every expected record is worked out by hand from the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_exporter.adapters.base import Invalid
from llm_exporter.adapters.custom import CustomJsonAdapter
from llm_exporter.config import load_config

CONFIG = """\
extra_labels: [src_lang, tgt_lang]
metrics:
  - {name: app_gpu_memory_bytes, type: gauge, path: gpu_memory_mb, scale: 1048576}
  - {name: app_queue_depth, type: gauge, path: queue.depth}
accounting:
  tenant: [auth.team]
mappings:
  - name: calls
    provider: trtllm
    match: {kind: llm_call}
    fields:
      request_id: meta.id
      model: meta.model
      outcome: result.ok
      error_type: result.error
      duration: {path: timing.total, unit: ms}
      ttft: timing.first
      input_tokens: tokens.in
      output_tokens: tokens.out
    extra_labels: {src_lang: langs.src, formal: langs.formal, extra: langs.extra}
    metrics:
      - {name: app_chars_total, type: counter, path: chars}
"""


@pytest.fixture
def adapter(tmp_path: Path) -> CustomJsonAdapter:
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    return CustomJsonAdapter(load_config(p))


def parse(a: CustomJsonAdapter, obj: dict[str, Any]) -> Any:
    return a.parse_json(json.dumps(obj).encode(), obj)


def call(**parts: Any) -> dict[str, Any]:
    return {"kind": "llm_call", **parts}


def test_a_mapped_line_is_one_request_with_its_custom_metrics(adapter: CustomJsonAdapter) -> None:
    line = call(meta={"id": "r1", "model": "m1"}, result={"ok": True}, timing={"total": 1500, "first": 0.25},
                tokens={"in": 10, "out": 20}, langs={"src": "en", "formal": True, "extra": {"x": 1}},
                auth={"team": "red"}, lora="sql-lora", chars=300, gpu_memory_mb=2, queue={"depth": 3})
    rec, *metrics = parse(adapter, line)
    assert rec == {"kind": "request", "provider": "trtllm", "operation": "", "model": "m1", "request_id": "r1",
                   "outcome": "success", "error_type": "", "duration_s": 1.5, "ttft_s": 0.25,
                   "input_tokens": 10, "output_tokens": 20,
                   # a bool label reads true/false; an object is no label value
                   "extra_labels": {"src_lang": "en", "formal": "true", "extra": ""},
                   "tenant": "red", "tenant_key": None, "adapter": "sql-lora"}
    labels = {"gen_ai_provider_name": "trtllm", "gen_ai_request_model": "m1", "src_lang": "en", "formal": "true",
              "extra": ""}
    # the mapping's metric, then the file's: 2 MiB in bytes, and a nested path
    assert metrics == [{"kind": "custom", "name": "app_chars_total", "value": 300.0, "labels": labels},
                       {"kind": "custom", "name": "app_gpu_memory_bytes", "value": 2097152.0, "labels": labels},
                       {"kind": "custom", "name": "app_queue_depth", "value": 3.0, "labels": labels}]


def test_a_mapped_line_without_model_tenant_or_adapter(adapter: CustomJsonAdapter) -> None:
    rec, *metrics = parse(adapter, call(timing={"total": 0}, result={"ok": False, "error": "torch.OutOfMemoryError"},
                                        langs={"formal": False}, chars=5))
    assert rec == {"kind": "request", "provider": "trtllm", "operation": "", "model": "", "outcome": "error",
                   "error_type": "oom", "duration_s": 0.0,
                   "extra_labels": {"src_lang": "", "formal": "false", "extra": ""},
                   "tenant": None, "tenant_key": None}
    assert metrics == [{"kind": "custom", "name": "app_chars_total", "value": 5.0,
                        "labels": {"gen_ai_provider_name": "trtllm", "gen_ai_request_model": "",
                                   "src_lang": "", "formal": "false", "extra": ""}}]


def test_a_matching_line_with_none_of_the_fields_is_left_to_the_application_reader(
        adapter: CustomJsonAdapter) -> None:
    assert parse(adapter, call(note="warming up")) is None  # no field, nothing the app reader knows either
    rec, *_ = parse(adapter, call(duration=2.0))  # the app reader's `duration`, with the file's extra labels
    assert (rec["provider"], rec["duration_s"], rec["extra_labels"]) == ("app", 2.0, {"src_lang": "", "tgt_lang": ""})


@pytest.mark.parametrize(("total", "seconds"), [(0, 0.0), (1500, 1.5), (2.5, 0.0025), ("2.5s", 2.5), ("812", 0.812)])
def test_mapped_durations_in_the_mappings_unit(adapter: CustomJsonAdapter, total: Any, seconds: float) -> None:
    assert parse(adapter, call(timing={"total": total}))[0]["duration_s"] == seconds


@pytest.mark.parametrize(("value", "reason"), [
    (-5, "bad_duration"), (-0.5, "bad_duration"), ("-3ms", "bad_duration"), ("soon", "bad_duration"),
    (True, "bad_duration"), (1e308, "bad_duration"),  # 1e308 ms is 1e305 s: fine; see below for overflow
])
def test_bad_mapped_durations_are_invalid(adapter: CustomJsonAdapter, value: Any, reason: str) -> None:
    if value == 1e308:  # a finite number of milliseconds is a finite number of seconds: read
        assert parse(adapter, call(timing={"total": value}))[0]["duration_s"] == 1e305
        return
    with pytest.raises(Invalid) as e:
        parse(adapter, call(timing={"total": value}))
    assert e.value.reason == reason


@pytest.mark.parametrize(("tokens", "want"), [(0, 0), (12, 12), (12.0, 12), (2**53, 2**53)])
def test_mapped_token_counts(adapter: CustomJsonAdapter, tokens: Any, want: int) -> None:
    rec = parse(adapter, call(tokens={"in": tokens}))[0]
    assert rec["input_tokens"] == want and type(rec["input_tokens"]) is int


@pytest.mark.parametrize("tokens", [-1, 12.5, "12", True, [1], {"n": 1}])
def test_bad_mapped_token_counts_are_invalid(adapter: CustomJsonAdapter, tokens: Any) -> None:
    with pytest.raises(Invalid) as e:
        parse(adapter, call(tokens={"out": tokens}))
    assert e.value.reason == "bad_value"


@pytest.mark.parametrize("model", [{"name": "m"}, ["m"], True])
def test_a_mapped_label_field_holding_an_object_or_bool_is_invalid(adapter: CustomJsonAdapter, model: Any) -> None:
    with pytest.raises(Invalid) as e:
        parse(adapter, call(meta={"model": model}))
    assert e.value.reason == "bad_value"


def test_a_long_or_numeric_label_value_is_cut_and_written_as_text(adapter: CustomJsonAdapter) -> None:
    rec = parse(adapter, call(meta={"model": "m" * 300, "id": 42}, langs={"src": 7}))[0]
    assert (rec["model"], rec["request_id"], rec["extra_labels"]["src_lang"]) == ("m" * 128, "42", "7")


def test_custom_metric_values_that_are_not_finite_numbers_are_skipped(adapter: CustomJsonAdapter) -> None:
    # 1e303 MiB is past a float in bytes (1.05e309): skipped, and the metrics after it are still
    # read; a missing or non-numeric field is skipped the same way
    _, *metrics = parse(adapter, call(timing={"total": 1}, gpu_memory_mb=1e303, queue={"depth": 4}))
    assert [(m["name"], m["value"]) for m in metrics] == [("app_queue_depth", 4.0)]
    _, *metrics = parse(adapter, call(timing={"total": 1}, chars="many", gpu_memory_mb=True, queue={"depth": 2**1100}))
    assert metrics == []


def test_application_lines_get_the_files_tenant_path_extra_labels_and_metrics(adapter: CustomJsonAdapter) -> None:
    """A line of the application's own JSON shape (no mapping matches): read by the app-json reader,
    which is given the same file (its `accounting.tenant` paths), then labelled and measured."""
    line = {"latency_ms": 812, "model": "q", "src_lang": "zh", "tgt_lang": "en", "auth": {"team": "blue"},
            "error": {"type": "RateLimitError"}, "gpu_memory_mb": 1}
    rec, *metrics = parse(adapter, line)
    assert (rec["duration_s"], rec["model"], rec["outcome"], rec["error_type"], rec["tenant"]) == (
        0.812, "q", "error", "overloaded", "blue")
    assert rec["extra_labels"] == {"src_lang": "zh", "tgt_lang": "en"}
    assert metrics == [{"kind": "custom", "name": "app_gpu_memory_bytes", "value": 1048576.0,
                        "labels": {"gen_ai_provider_name": "app", "gen_ai_request_model": "q",
                                   "src_lang": "zh", "tgt_lang": "en"}}]


def test_the_tail_turns_unclaimed_json_lines_into_custom_metrics(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    tail = CustomJsonAdapter(load_config(p), tail=True)
    assert tail.parse_json(b"", {"gpu_memory_mb": 0.5, "queue": {"depth": 0}}) == [
        {"kind": "custom", "name": "app_gpu_memory_bytes", "value": 524288.0,
         "labels": {"gen_ai_provider_name": "app", "gen_ai_request_model": ""}},
        {"kind": "custom", "name": "app_queue_depth", "value": 0.0,
         "labels": {"gen_ai_provider_name": "app", "gen_ai_request_model": ""}}]
    assert tail.parse_json(b"", {"message": "no numbers here"}) is None
    assert CustomJsonAdapter(None).parse_json(b'{"duration": 1}', {"duration": 1}) is None  # no file: no work


@pytest.mark.parametrize(("error", "outcome", "error_type"), [
    ("TimeoutError", "error", "timeout"),
    ({"type": "invalid_request_error", "message": "bad"}, "error", "validation"),  # an error object: its type
    ({"code": 503, "message": "busy"}, "error", "_OTHER"),  # else its code
    ({"message": "no type, no code"}, "success", ""),
    (True, "error", "_OTHER"),  # failed, no class named
    (False, "success", ""),  # `"error": false` is no error
    (None, "success", ""),
    ("", "success", ""),
    ([], "success", ""),
])
def test_a_mapped_error_field_of_any_json_type(adapter: CustomJsonAdapter, error: Any, outcome: str,
                                               error_type: str) -> None:
    rec = parse(adapter, call(timing={"total": 1}, result={"error": error}))[0]
    assert (rec["outcome"], rec["error_type"]) == (outcome, error_type)


def _first_claim(chain: list[Any], obj: dict[str, Any]) -> Any:
    """What the chain makes of one JSON line: the first adapter's answer that is not None."""
    line = json.dumps(obj).encode()
    return next((r for a in chain if (r := a.parse_json(line, obj)) is not None), None)


def test_the_files_tenant_path_reaches_the_server_adapters_too(tmp_path: Path) -> None:
    """With mappings in the file, the server adapters after them still get the file: a LiteLLM
    spend-log row (the published one, tests/fixtures/accounting) with an `auth.team` is that team's."""
    from llm_exporter.adapters import build_chain
    from tests.helpers import FIXTURES

    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    row = json.loads((FIXTURES / "accounting" / "litellm_spend_logs_payload.json").read_text())
    row["auth"] = {"team": "search"}
    rec = _first_claim(build_chain("auto", load_config(p)), row)
    assert (rec["provider"], rec["tenant"]) == ("litellm", "search")


def test_format_rules_reads_with_the_rules_alone(tmp_path: Path) -> None:
    """`--format rules`: the file's text rules and nothing else, even when the file also maps JSON
    lines (a mapped line is no request then); `--format auto` reads both."""
    from llm_exporter.adapters import build_chain

    p = tmp_path / "c.yaml"
    p.write_text(CONFIG + "rules:\n  - name: done\n    pattern: '^done (?P<request_id>\\w+)$'\n")
    cfg = load_config(p)
    mapped = call(meta={"id": "r1", "model": "m"}, result={"ok": True})
    assert _first_claim(build_chain("rules", cfg), mapped) is None
    assert _first_claim(build_chain("auto", cfg), mapped)[0]["request_id"] == "r1"
    assert [r["request_id"] for a in build_chain("rules", cfg) if (r := a.parse_text("done r2"))] == ["r2"]


def test_an_application_line_orjson_cannot_read_counts_the_same_with_a_file(tmp_path: Path) -> None:
    """Python's json module writes a float NaN as `NaN`, which is no JSON to orjson; the application
    reader's schema judges such a line (a request when the NaN is in a field it does not read, invalid
    when it is a duration), and a --config file with mappings changes nothing about that."""
    from collections import Counter

    from llm_exporter.metrics import LLMMetrics
    from llm_exporter.pipeline import Pipeline

    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    lines = [json.dumps({"model": "gpt-4o", "input_tokens": 5, "output_tokens": 3, "duration_ms": 12,
                         "score": float("nan")}).encode(),
             json.dumps({"model": "gpt-4o", "duration_ms": float("nan")}).encode()]
    assert b"NaN" in lines[0]
    for config in (None, load_config(p)):
        m = LLMMetrics()
        Pipeline(m, config=config).process("t", lines)
        assert Counter({o: n for (_s, o), n in m.internal.lines.items() if n}) == Counter(record=1, invalid=1)
