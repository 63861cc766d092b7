"""What a pushed body becomes: its lines (one per object, as sent), its one-line errors, its too-long lines.

The objects are real server lines (tests/fixtures/samples: TGI `--json-output`, OpenAI-compatible
responses), pushed the ways log shippers push them: one object per line, a JSON array, a Fluent Bit
record (`{"date": ..., "log": "<line>\\n"}`, its `json` format of the `http` output) and a Vector
event (`{"message": "<line>", "source_type": ..., "timestamp": ...}`). The expected lines are the
inputs themselves, written out by hand.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from llm_exporter.sources.http_push import BadBody, Body, body_lines

SAMPLES = Path(__file__).parent.parent / "fixtures" / "samples"
TGI = (SAMPLES / "tgi_json.log").read_bytes().splitlines()[:3]
USAGE = (SAMPLES / "openai_usage.jsonl").read_bytes().splitlines()[:2]  # a `"message":{...}` inside
REAL = TGI + USAGE


def _str(line: bytes) -> str:
    return line.decode()


def fluent(line: bytes, end: str = "\n") -> bytes:
    return orjson.dumps({"date": 1716200000.123456, "log": _str(line) + end})


def vector(line: bytes) -> bytes:
    return orjson.dumps({"message": _str(line), "source_type": "docker_logs",
                         "timestamp": "2024-05-20T10:13:20.123456Z", "container_name": "tgi"})


CASES: list[tuple[str, bytes, list[bytes]]] = [
    ("ndjson", b"\n".join(REAL) + b"\n", REAL),
    ("ndjson without the last newline", b"\n".join(REAL), REAL),
    ("ndjson with blank lines, CRLF and spaces around lines",
     b"\n" + REAL[0] + b"\r\n\r\n  " + REAL[1] + b" \t\n\n" + REAL[2], REAL[:3]),
    ("array", b"[" + b",".join(REAL) + b"]", REAL),
    ("pretty array with space before commas", b" \n[\n  " + b" ,\n  ".join(REAL) + b"\n]\n", REAL),
    ("array elements keep their own spacing", b'[{"a": 1},{ "b" : [1, 2] }]', [b'{"a": 1}', b'{ "b" : [1, 2] }']),
    ("empty body", b"", []),
    ("blank body", b" \n\t\r\n", []),
    ("empty array", b"[]", []),
    ("empty array with spaces", b" [ \n ] \n", []),
    ("fluent bit array", b"[" + b",".join(fluent(x) for x in REAL) + b"]", REAL),
    ("fluent bit ndjson", b"\n".join(fluent(x) for x in REAL), REAL),
    ("fluent bit line: only the CR/LF at its end go",
     b"[" + fluent(b"  indented, ends in space ", "\r\n") + b"," + fluent(b"ends in X", "\n") + b"]",
     [b"  indented, ends in space ", b"ends in X"]),
    ("vector array", b"[" + b",".join(vector(x) for x in REAL) + b"]", REAL),
    ("vector ndjson", b"\n".join(vector(x) for x in REAL) + b"\n", REAL),
    ("vector message with its newline", b'{"message":"served X\\r\\n","source_type":"file"}', [b"served X"]),
    ("vector message: only its CR/LF go", b'[{"message":" served \\n","source_type":"file"}]', [b" served "]),
    ("a lone surrogate escape in an array's message stays as sent",
     b'[{"message": "a\\udc80b", "source_type": "file"}]', [b"a\\udc80b"]),
    ("a message without source_type is the object itself",
     b'{"message": "hi", "host": "h"}\n{"message": "hi"}', [b'{"message": "hi", "host": "h"}', b'{"message": "hi"}']),
    ("the same in an array", b'[ {"message": "hi"} ]', [b'{"message": "hi"}']),
    ("a log or message that is not a string is the object itself",
     b'{"log": {"a": 1}}\n{"message": {"b": 2}, "source_type": "x"}',
     [b'{"log": {"a": 1}}', b'{"message": {"b": 2}, "source_type": "x"}']),
    ("log before message", b'{"message": "m", "source_type": "s", "log": "l\\n"}', [b"l"]),
    ("a pretty-printed object is one line, re-serialised", b'\n  {\n  "model": "m",\n  "output_tokens": 5\n}\n',
     [b'{"model":"m","output_tokens":5}']),
    ("a pretty-printed fluent bit record", b'{\n  "date": 1.5,\n  "log": "line\\n"\n}', [b"line"]),
    ("a lone surrogate escape in an array's log stays as sent",
     b'[{"log": "a\\ud800b \\u00e9\\n"}]', [b"a\\ud800b \xc3\xa9"]),
]


@pytest.mark.parametrize(("body", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_object_pushed_is_one_line_as_sent(body: bytes, want: list[bytes]) -> None:
    """NDJSON, a JSON array or one pretty object; a shipper's wrapped line is unwrapped."""
    assert body_lines(body) == want


BAD: list[tuple[str, bytes, str]] = [
    ("ndjson: a line that is not JSON", b'{"a":1}\nnot json\n', "line 2: not JSON ("),
    ("ndjson: blank lines count in the line number", b'{"a":1}\n\n{"b":2}\n{bad\n', "line 4: not JSON ("),
    ("ndjson: the second line starts like an object", b'{"a":1}\n{bad\n', "line 2: not JSON ("),
    ("ndjson: a line that is not an object", b'{"a":1}\n[1]\n', "line 2: not a JSON object"),
    ("ndjson: a number", b"42\n", "line 1: not a JSON object"),
    ("a body that starts with blank lines and [ is an array", b'\n[1, 2]', "element 0 is not a JSON object"),
    ("array: an element that is not JSON", b'[{"a":1}, nope]', "not a JSON array: Expecting value at byte 10"),
    ("array: positions count bytes, not characters", '[{"a":"é"}, nope]'.encode(),
     "not a JSON array: Expecting value at byte 13"),
    ("array: the first element is no object", b"[1]", "element 0 is not a JSON object"),
    ("array: the third element is no object", b"[{}, {}, 3]", "element 2 is not a JSON object"),
    ("array: text after it", b"[{}]x", "not a JSON array: extra data at byte 4"),
    ("array: text after an empty one", b"[]x", "not a JSON array: extra data at byte 2"),
    ("array: a form feed is no JSON white space", b"[{}]\x0c", "not a JSON array: extra data at byte 4"),
    ("array: no comma", b"[{} {}]", "not a JSON array: expected ',' or ']' at byte 4"),
    ("array: no comma after a space", b"[{} \n{}]", "not a JSON array: expected ',' or ']' at byte 5"),
    ("array: not closed", b"[{}", "not a JSON array: expected ',' or ']' at byte 3"),
    ("array: not closed after a space", b"[{} ", "not a JSON array: expected ',' or ']' at byte 4"),
    ("array: only its bracket", b"[", "not a JSON array: Expecting value at byte 1"),
    ("array: its bracket and spaces", b"[  \n", "not a JSON array: Expecting value at byte 4"),
    ("array: not UTF-8", b'[{"a":"\xff"}]', "not a JSON array: not UTF-8 at byte 7"),
]


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_body_of_neither_shape_is_refused_with_a_one_line_reason(body: bytes, reason: str) -> None:
    """The reason names the line, element or byte where the body went wrong."""
    with pytest.raises(BadBody) as e:
        body_lines(body)
    text = str(e.value)
    assert "\n" not in text
    if reason.endswith("("):  # the JSON parser's own words follow
        assert text.startswith(reason) and text.endswith(")")
    else:
        assert text == reason


def test_an_object_that_is_not_json_names_the_parser_error_and_its_byte() -> None:
    """A body that starts as an object but is neither NDJSON nor one object."""
    with pytest.raises(BadBody) as e:
        body_lines(b'{"a":\n 1,\n')
    assert str(e.value).startswith("neither NDJSON nor a JSON array: ")
    assert str(e.value).endswith(" at byte 10")


def test_lines_over_max_line_are_left_out_and_counted_too_long() -> None:
    """A line of exactly max_line bytes is kept; each longer one is one too_long, not judged as JSON."""
    at = b'{"k":"' + b"a" * 12 + b'"}'  # 20 bytes
    over = b'{"k":"' + b"b" * 13 + b'"}'  # 21
    assert len(at) == 20 and len(over) == 21
    nd = Body(b"\n".join([at, over, b"x" * 21, at + b"\n", b'{"log":"' + b"c" * 30 + b'"}']), max_line=20)
    nd.check()
    assert [line for batch in nd.batches() for line in batch] == [at, at]
    assert nd.too_long == 3

    arr = Body(b"[" + b",".join([at, over, over, orjson.dumps({"log": "x" * 20}), orjson.dumps({"log": "y" * 21}),
                                 b'{"message":"' + b"z" * 20 + b'\\n","source_type":"file"}']) + b"]", max_line=20)
    arr.check()
    assert [line for batch in arr.batches() for line in batch] == [at, b"x" * 20, b"z" * 20]
    assert arr.too_long == 3

    # a too-long line is not judged: the next bad line is named, not the body as one object
    with pytest.raises(BadBody) as e:
        body_lines(over + b"\nnot json\n", max_line=20)
    assert str(e.value).startswith("line 2: not JSON (")
    # a line of exactly max_line bytes is judged
    with pytest.raises(BadBody) as e:
        body_lines(at + b"\nnot json json json j\n", max_line=20)
    assert str(e.value).startswith("line 2: not JSON (")
    assert body_lines(at + b"\n" + over, max_line=20) == [at]


@pytest.mark.parametrize(("size", "kept"), [(14, 1), (13, 0)])
def test_a_pretty_object_is_held_to_max_line_once_serialised(size: int, kept: int) -> None:
    """A pretty-printed object is `{"a":1,"b":22}` (14 bytes) once re-serialised: kept at 14."""
    body = Body(b'{\n "a": 1,\n "b": 22\n}\n', max_line=size)
    body.check()
    lines = [line for batch in body.batches() for line in batch]
    assert lines == [b'{"a":1,"b":22}'] * kept
    assert body.too_long == 1 - kept


def test_lines_are_handed_on_in_batches_of_at_most_batch() -> None:
    """Only one batch is held at a time; the last one holds the rest, and there is no empty one."""
    lines = [b'{"i":%d}' % i for i in range(5)]
    five = Body(b"\n".join(lines), batch=2)
    five.check()
    assert list(five.batches()) == [lines[0:2], lines[2:4], lines[4:]]
    four = Body(b"[" + b",".join(lines[:4]) + b"]", batch=2)
    four.check()
    assert list(four.batches()) == [lines[0:2], lines[2:4]]
