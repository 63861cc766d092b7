"""The contract every registered adapter keeps, checked over all of them with arbitrary input."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_exporter.adapters import ADAPTERS, IGNORED, Invalid, load
from llm_exporter.config import Config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.records import validate_record
from tests.helpers import FIXTURES

NAMES = sorted(ADAPTERS)
SAMPLE_LINES = [ln for p in sorted((FIXTURES / "samples").glob("*.*")) if p.suffix in (".log", ".jsonl")
                for ln in p.read_text(encoding="utf-8").splitlines()]

# text that looks like the servers' lines, cut and spliced at random, plus anything at all
fragments = st.sampled_from([ln[:n] for ln in SAMPLE_LINES for n in (20, 60, 200)] + SAMPLE_LINES)
texts = st.one_of(st.text(max_size=300), fragments,
                  st.tuples(fragments, st.text(max_size=40), fragments).map("".join))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
keys = st.sampled_from(["kind", "t", "ok", "n", "value", "src_lang", "latency_ms",
                        "message", "level", "levelname", "target", "fields", "span", "spans", "name", "exc_info",
                        "done", "created_at", "model", "eval_count", "total_duration", "timings", "function",
                        "msg", "tid", "id_slot", "id_task", "usage", "choices", "object"])
objects = st.dictionaries(keys, json_values, max_size=8)
objects = objects | objects.map(lambda d: {**d, "kind": "call"})  # the test config's mapping matches these


CONFIG = """\
extra_labels: [src_lang]
metrics:
  - {name: app_value, type: gauge, path: value}
mappings:
  - name: m
    match: {kind: call}
    fields: {model: model, duration: {path: t, unit: ms}, input_tokens: usage.in, outcome: ok}
    metrics:
      - {name: app_n_total, type: counter, path: n}
"""


def make(name: str) -> Any:
    """A fresh adapter; the config-driven one gets a config that uses every part of it."""
    if name != "custom-json":
        return load(name)()
    return load(name)(Config.model_validate(yaml.safe_load(CONFIG)))


def check(result: Any) -> None:
    """One outcome: None, IGNORED, or records that validate."""
    if result is None or result == IGNORED:
        return
    recs = result if isinstance(result, list) else [result]
    for r in recs:
        validate_record(r)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(lines=st.lists(texts, max_size=12))
def test_text_lines_never_raise_and_records_validate(name: str, lines: list[str]) -> None:
    """Any text gives None, IGNORED or valid records (or Invalid); flush hands out valid records."""
    a = make(name)
    for ln in lines:
        try:
            check(a.parse_text(ln))
        except Invalid as e:
            assert e.reason and " " not in e.reason
    for r in a.flush():
        validate_record(r)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(objs=st.lists(objects, max_size=6))
def test_json_objects_never_raise_and_records_validate(name: str, objs: list[dict[str, Any]]) -> None:
    """Any JSON object gives None, IGNORED or valid records (or Invalid)."""
    a = make(name)
    for o in objs:
        try:
            line = orjson.dumps(o)
        except TypeError:
            continue
        with contextlib.suppress(Invalid):
            check(a.parse_json(line, o if a.wants_obj else None))
    for r in a.flush():
        validate_record(r)


@pytest.mark.parametrize("fmt", ["auto", *NAMES])
@settings(max_examples=25, deadline=None)
@given(lines=st.lists(st.one_of(texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
                                st.binary(max_size=200)), max_size=20))
def test_every_line_gets_exactly_one_outcome(fmt: str, lines: list[bytes]) -> None:
    """Through the pipeline, with any adapter forced or auto, each line is counted once."""
    m = LLMMetrics()
    p = Pipeline(m, fmt=fmt)
    lines = [ln.replace(b"\n", b" ").replace(b"\r", b" ") for ln in lines]
    p.process("t", lines)
    p.flush("t")
    assert sum(n for (s, _o), n in m.internal.lines.items() if s == "t") == len(lines)


@pytest.mark.parametrize("fmt", ["auto", *NAMES])
def test_sample_files_raise_nothing_under_any_format(fmt: str) -> None:
    """Every real sample line, under every forced format, lands in an outcome other than an adapter bug."""
    m = LLMMetrics()
    p = Pipeline(m, fmt=fmt)
    data = [ln.encode() for ln in SAMPLE_LINES]
    p.process("t", data)
    p.flush("t")
    assert sum(n for (s, _o), n in m.internal.lines.items() if s == "t") == len(data)
    assert not [r for r in p.rejects if r.reason == "adapter_error"]


@pytest.mark.parametrize(("data", "want"), [
    (b'{"model": "m", "n": 1}', {"model": "m", "n": 1}),
    ('{"a": {"b": []}}', {"a": {"b": []}}),
    (b"[1, 2]", None),  # JSON, but no object: no adapter reads it as one
    (b'"text"', None),
    (b"12", None),
    (b"null", None),
    (b'{"model": ', None),  # cut short
])
def test_a_line_is_json_only_when_it_is_one_object(data: bytes | str, want: Any) -> None:
    from llm_exporter.adapters.base import json_object

    assert json_object(data) == want
