"""/debug/rejects: off by default; recent rejected lines, model text redacted, control chars escaped."""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from llm_exporter.debug import escape, redact
from tests.helpers import Exporter, http_get

SECRET = "ZQXsecret"


@given(key=st.sampled_from(["prompt", "input", "output", "text", "messages", "content", "user_prompt",
                            "completion", "Input_Text"]),
       value=st.one_of(st.text(alphabet=string.ascii_letters + " '\\\"{}[],:", max_size=40),
                       st.lists(st.text(alphabet=string.ascii_letters, max_size=8), max_size=4),
                       st.dictionaries(st.sampled_from(["role", "content"]), st.text(max_size=10),
                                       max_size=2)),
       before=st.dictionaries(st.sampled_from(["model", "id", "level"]), st.text(alphabet="abc", max_size=5)),
       cut=st.integers(min_value=0, max_value=300))
def test_redacts_model_text_in_json_even_when_cut(key: str, value: object, before: dict[str, str],
                                                  cut: int) -> None:
    """No part of a model-text value survives, whatever its type and wherever the 200-byte cut falls."""
    if isinstance(value, str):
        value = SECRET + value
    elif isinstance(value, list):
        value = [SECRET, *value]
    else:
        value = {**value, "content": SECRET}
    line = json.dumps({**before, key: value, "latency_ms": 12}).encode()[:cut]
    assert SECRET.encode()[:3] not in redact(line)


def test_keeps_numbers_keys_and_other_fields() -> None:
    """Token counts and unrelated fields stay readable."""
    line = b'{"model":"m","input_tokens":12,"output":"hi there","prompt":null,"status":"error"}'
    want = b'{"model":"m","input_tokens":12,"output":"[redacted]","prompt":null,"status":"error"}'
    assert redact(line) == want


def test_redacts_text_key_value_pairs() -> None:
    """vLLM-style text lines lose their prompt and output, keep the request id."""
    line = b"Received request cmpl-9: prompt: 'tell me a ZQXsecret', params: SamplingParams(n=1)"
    out = redact(line)
    assert b"ZQX" not in out and b"cmpl-9" in out and b"params" in out
    assert redact(b"x=1 prompt=ZQXsecret words y=2") == b"x=1 prompt=[redacted] y=2"


@given(st.binary(max_size=200))
def test_escape_leaves_no_control_characters(raw: bytes) -> None:
    """Whatever the bytes, the shown text has no control or line-breaking characters."""
    out = escape(raw)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in out)


def test_debug_rejects_is_off_by_default() -> None:
    """Without --debug-endpoints the path does not exist."""
    with Exporter("--no-passthrough") as e:
        e.wait_ready()
        assert http_get(e.url + "/debug/rejects")[0] == 404


def test_debug_rejects_shows_recent_rejects_safely() -> None:
    """A real process lists rejected lines newest first, with outcome, reason, source, line number."""
    lines = [
        b'{"request_id":"a","model":"m","status":"success","total_time_ms":5}',
        b'{"prompt":"ZQXsecret one","weird_field":1}',
        b"plain text with \x1b[31mcolour\x1b[0m and a bell \x07",
        b"Generated response cmpl-1: output: 'ZQXsecret two', finish_reason: length",
        b'{"request_id":"b","model":"m","status":"success","total_time_ms":7}',
        b'{"messages":[{"role":"user","content":"ZQXsecret three"}],"x":"' + b"y" * 300 + b'"}',
    ]
    with Exporter("--no-passthrough", "--debug-endpoints") as e:
        e.wait_ready()
        e.stdin.write(b"\n".join(lines) + b"\n")
        e.stdin.flush()
        e.wait_lines(len(lines))
        code, _, body = http_get(e.url + "/debug/rejects?format=json")
        assert code == 200
        got = json.loads(body)["rejects"]
        assert [(r["line_number"], r["outcome"], r["source"]) for r in got] == [
            (6, "unparsed", "stdin"), (4, "unparsed", "stdin"), (3, "unparsed", "stdin"),
            (2, "unparsed", "stdin")]
        assert {r["reason"] for r in got} <= {"json_unknown_shape", "no_adapter"}
        assert got[0]["reason"] == "json_unknown_shape" and got[2]["reason"] == "no_adapter"
        assert "\\x1b[31mcolour" in got[2]["line"] and "\\x07" in got[2]["line"]
        assert len(got[0]["line"]) <= 200
        code, headers, text = http_get(e.url + "/debug/rejects?n=2")
        assert code == 200 and headers["Content-Type"].startswith("text/plain")
        assert text.decode().count("\n") == 2 and "stdin:6\tunparsed/json_unknown_shape" in text.decode()
        assert b"ZQX" not in body and b"ZQX" not in text and b"\x1b" not in text
        assert http_get(e.url + "/debug/rejects?n=x")[0] == 400


def test_line_numbers_count_too_long_lines_and_files_show_their_path(tmp_path: Path) -> None:
    """After a too-long line, a reject's line number is still its line in the file (the 7th line is
    `:7`), and with several files followed each reject names its file."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"\n".join([b"ok one", b"y" * 300, b"ok three", b"ok four", b"ok five", b"ok six",
                              b"seventh line, unparsed"]) + b"\n")
    b.write_bytes(b"first of b\nsecond of b\n")
    with Exporter("--no-stdin", "--no-passthrough", "--gpu", "off", "--debug-endpoints", "--max-line-bytes", "100",
                  "--file-start", "beginning", "--file", str(tmp_path / "*.log")) as e:
        e.wait_ready()
        e.wait_lines(9)
        code, _, body = http_get(e.url + "/debug/rejects?format=json")
    assert code == 200
    got = {(r["source"], r["line_number"], r["outcome"]) for r in json.loads(body)["rejects"]}
    want = {(str(a), n, "unparsed") for n in (1, 3, 4, 5, 6, 7)} | {(str(a), 2, "too_long")} | \
        {(str(b), n, "unparsed") for n in (1, 2)}
    assert got == want
