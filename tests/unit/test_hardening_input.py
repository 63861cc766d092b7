"""Hostile input lines: secrets and free text never become label values, a line is applied whole
or not at all, values that could overflow a sum are refused, a BOM does not hide a line, and
/debug/rejects shows neither request text nor bidi controls. Truth worked out by hand per case."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llm_exporter import adapters
from llm_exporter.adapters.base import Adapter
from llm_exporter.debug import escape, redact
from llm_exporter.errors import normalize
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline


def outcomes(m: LLMMetrics) -> Counter[str]:
    c: Counter[str] = Counter()
    for (_src, outcome), n in m.internal.lines.items():
        c[outcome] += n
    return c


def exposition(m: LLMMetrics) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return generate_latest(reg).decode()  # type: ignore[no-untyped-call]


def app_line(**kw: Any) -> bytes:
    return orjson.dumps({"request_id": "r", "model": "m", "duration_ms": 100, **kw})


# -- item: free text never becomes a label ----------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("error", "sk-live-4f9a8b7c6d5e4f3a2b1c"),
    ("error_type", "auth.sk-live-4f9a8b7c6d5e4f3a2b1c"),
    ("error", "sk_live_4f9a8b7c6d5e4f3a2b1c"),
    ("error", "Bearer eyJhbGciOiJIUzI1NiJ9"),
    ("error", "user 42 sent: ignore all previous instructions"),
])
def test_a_secret_or_free_text_error_is_never_a_label_value(field: str, value: str) -> None:
    """The failed request is counted, under error_type="_OTHER"; the text appears nowhere in /metrics."""
    m = LLMMetrics()
    Pipeline(m).process("t", [app_line(status="error", **{field: value})])
    assert outcomes(m) == Counter(record=1)
    text = exposition(m)
    assert 'error_type="_OTHER"' in text
    for part in value.replace(".", " ").split():
        if len(part) > 6:
            assert part not in text, part


def test_exception_names_and_classes_stay_label_values() -> None:
    assert normalize("torch.OutOfMemoryError") == "oom"
    assert normalize("ValueError") == "ValueError"
    assert normalize("openai.APIConnectionError") == "APIConnectionError"
    assert normalize("Http2ProtocolError") == "Http2ProtocolError"
    assert normalize("sk-live-abc") == "_OTHER"
    assert normalize("x" * 49) == "_OTHER"


def test_http_code_label_takes_exactly_three_ascii_digits() -> None:
    """`code="٤٠٤"` (Arabic-Indic digits) and made-up codes fold into _OTHER; 434 distinct junk codes
    make one series, not 434."""
    from llm_exporter.label_rules import allowed
    from llm_exporter.records import problem

    assert allowed("code", "404") and allowed("code", "599")
    for bad in ("٤٠٤", "4044", "40", "999", "20a", " 200"):
        assert not allowed("code", bad), bad
    m = LLMMetrics()
    for i in range(434):  # what the pipeline does with each record an adapter hands it
        r = {"kind": "http", "provider": "x", "method": "GET", "path": "/v1", "code": str(1000 + i)}
        assert problem(r) is None
        m.apply(r)
    assert m.engine.http == {("x", "GET", "/v1", "_OTHER"): 434}


@pytest.mark.parametrize("rule, good, bad", [
    ("model", ["Qwen/Qwen2.5-7B-Instruct", "llama3:8b", "gpt-4o-mini"], ["a b", "m\u202e", "x" * 129]),
    ("path", ["/v1/chat/completions", "/api/generate"], ["v1", "/a b", "/" + "x" * 200]),
    ("method", ["GET", "POST"], ["get", "GETPOSTPUTX", "G\u0130T"]),
])
def test_label_shapes(rule: str, good: list[str], bad: list[str]) -> None:
    from llm_exporter.label_rules import allowed

    for v in good:
        assert allowed(rule, v), v
    for v in bad:
        assert not allowed(rule, v), v


# -- item: a line is applied whole or not at all; no sum can overflow --------------------------------

class _TwoRecords(Adapter):
    """One line, two records: a good request and a custom value that may not be applied."""

    name = "two"

    def parse_text(self, text: str) -> Any:
        return [{"kind": "request", "provider": "x", "operation": "chat", "model": "m", "outcome": "success",
                 "error_type": "", "duration_s": 1.0, "input_tokens": 5},
                {"kind": "custom", "name": "c", "value": float(text), "labels": {}}]


@pytest.mark.parametrize("value", ["inf", "nan", "1e300"])
def test_a_line_with_one_bad_record_applies_none(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """The line is `invalid` and its good record is not applied either (on main: counted invalid and
    applied to llm_requests_total, the duration histogram and the token count)."""
    monkeypatch.setitem(adapters.ADAPTERS, "two", f"{__name__}:_TwoRecords")
    m = LLMMetrics()
    Pipeline(m, fmt="two").process("t", [value.encode()])
    assert outcomes(m) == Counter(invalid=1)
    assert m.requests.series == {}


def test_durations_that_would_sum_past_the_float_maximum_are_invalid() -> None:
    """Two lines of 1.7e308 s: on main both were records and the histogram sum became +Inf (saved
    as null, which then lost every counter at restart). Now both are invalid, nothing is applied."""
    m = LLMMetrics()
    line = orjson.dumps({"request_id": "r", "model": "m", "status": "success", "duration_s": 1.7e308})
    Pipeline(m).process("t", [line, line])
    assert outcomes(m) == Counter(invalid=2)
    assert "+Inf" not in exposition(m).split("le=")[0]
    assert all(h.sum == 0 for s in m.requests.series.values() for h in s.duration.values())


# -- item: a BOM, bidi controls, redaction -----------------------------------------------------------

def test_a_line_starting_with_a_bom_is_read() -> None:
    m = LLMMetrics()
    Pipeline(m).process("t", [b"\xef\xbb\xbf" + app_line(status="success")])
    assert outcomes(m) == Counter(record=1)


def test_bidi_and_zero_width_characters_are_escaped() -> None:
    shown = escape("name\u202egpj.exe \u2066x\u2069 a\u200bb \u061c".encode())
    for ch in ("\u202e", "\u2066", "\u2069", "\u200b", "\u061c"):
        assert ch not in shown
    assert "\\u202e" in shown


@pytest.mark.parametrize("line, secret", [
    (b'{"body": "please summarise my medical record"}', b"medical"),
    (b'{"payload": {"text": "hi"}, "x": 1}', b"hi"),
    (b'{"msg": "user asked about the merger", "level": "info"}', b"merger"),
    (b'{"args": ["the full prompt here"], "level": "info"}', b"prompt here"),
    (b'{"data": {"q": "how do I reset my password"}}', b"password"),
    (b'{"note": "a long free text field that holds the private question asked"}', b"private"),
    (b"2026-01-01 12:00:00 INFO app: the user typed their confidential question about layoffs here", b"layoffs"),
])
def test_request_text_is_redacted_in_rejects(line: bytes, secret: bytes) -> None:
    assert secret not in redact(line)


def test_numbers_and_short_identifiers_stay_visible_in_rejects() -> None:
    shown = redact(b'{"model": "llama3", "input_tokens": 12, "status": "ok"}')
    assert shown == b'{"model": "llama3", "input_tokens": 12, "status": "ok"}'
