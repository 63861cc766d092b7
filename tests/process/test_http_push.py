"""POST /ingest on a real daemon: shapes, status codes, token, size limit, counting."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_exporter.sources.http_push import BadBody, body_lines
from tests.helpers import Exporter, total

TOKEN = "s3cret-token"


def post(url: str, body: bytes, ctype: str = "application/x-ndjson", token: str | None = TOKEN,
         ) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + "/ingest", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Exporter]:
    with Exporter("--http-ingest", "--http-ingest-token", TOKEN, "--http-ingest-max-bytes", "1000000") as e:
        e.wait_ready()
        yield e


def req(i: int, tokens: int) -> dict[str, object]:
    return {"request_id": f"r{i}", "model": "m", "status": "success", "duration_ms": 100 + i,
            "output_tokens": tokens}


def test_ndjson_and_json_array_bodies_are_counted_as_http_lines(daemon: Exporter) -> None:
    """204 for both shapes; every object is one `source="http"` line and one request."""
    before = daemon.samples()
    objs = [req(i, i % 13 + 1) for i in range(300)]
    nd = b"\n".join(orjson.dumps(o) for o in objs[:200]) + b"\n"
    assert post(daemon.url, nd)[0] == 204
    assert post(daemon.url, orjson.dumps(objs[200:]), "application/json")[0] == 204
    fluent = [{"date": 1.5, "log": orjson.dumps(req(9999, 5)).decode() + "\n"}]
    assert post(daemon.url, orjson.dumps(fluent), "application/json")[0] == 204
    want = total(before, "llm_exporter_lines_total", source="http") + 301
    deadline = time.monotonic() + 20
    while True:
        s = daemon.samples()
        if total(s, "llm_exporter_lines_total", source="http") >= want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert total(s, "llm_exporter_lines_total", source="http", outcome="record") - \
        total(before, "llm_exporter_lines_total", source="http", outcome="record") == 301
    tokens = total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") - \
        total(before, "gen_ai_client_token_usage_sum", gen_ai_token_type="output")
    assert tokens == sum(i % 13 + 1 for i in range(300)) + 5


@pytest.mark.parametrize("body", [b"not json at all\n", b'{"a":1}\n[1,2\n', b"[1, 2]", b'[{"a":1}, 3]', b"42"])
def test_a_body_that_is_neither_shape_is_400_with_a_reason(daemon: Exporter, body: bytes) -> None:
    """400 and one line saying why."""
    code, text = post(daemon.url, body)
    assert code == 400
    assert text.strip() and b"\n" not in text.strip()


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_a_missing_or_wrong_token_is_401(daemon: Exporter, token: str | None) -> None:
    """401 without the right bearer token, nothing counted."""
    before = daemon.samples()
    assert post(daemon.url, b'{"a":1}\n{"b":2}\n', token=token)[0] == 401
    marker = orjson.dumps(req(7, 3)) + b"\n"  # sent after the 401 came back, so counted after it
    assert post(daemon.url, marker)[0] == 204
    want = total(before, "llm_exporter_lines_total", source="http") + 1
    deadline = time.monotonic() + 20
    while (got := total(s := daemon.samples(), "llm_exporter_lines_total", source="http")) < want:
        assert time.monotonic() < deadline, f"{got} of {want} http lines counted"
        time.sleep(0.05)
    assert got == want  # the marker alone: the refused body added no line
    assert total(s, "llm_exporter_bytes_total", source="http") - \
        total(before, "llm_exporter_bytes_total", source="http") == len(marker)


def test_a_100_mb_body_is_refused_with_413_before_it_is_sent(daemon: Exporter) -> None:
    """Content-Length of 100 MB: the 413 arrives after only the headers and 64 KiB were sent."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Length: 100000000\r\n\r\n" + b"x" * 65536)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_expect_continue_is_refused_before_the_body(daemon: Exporter) -> None:
    """With `Expect: 100-continue`, an oversized body gets 413 instead of `100 Continue`."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Length: 100000000\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_over_the_limit_is_413(daemon: Exporter) -> None:
    """Without Content-Length, reading stops with 413 as soon as the limit is passed."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        chunk = b"x" * 100_000
        for _ in range(11):  # 1.1 MB: past the 1 MB limit of this daemon
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_ingest_is_absent_without_the_flag() -> None:
    """Without --http-ingest, POST /ingest is not a route."""
    with Exporter("--no-stdin", "--file", "/nonexistent/*.log") as e:
        e.wait_ready()
        assert post(e.url, b'{"a":1}\n')[0] in (404, 405)


@given(st.lists(st.dictionaries(st.text(max_size=6), st.integers(-1000, 1000) | st.text(max_size=8),
                                max_size=4), max_size=20))
def test_both_shapes_give_one_line_per_object(objs: list[dict[str, object]]) -> None:
    """Any list of objects: NDJSON and array bodies give the same lines, one per object."""
    nd = b"\n".join(orjson.dumps(o) for o in objs)
    plain = [o for o in objs if not isinstance(o.get("log"), str)]
    if len(plain) == len(objs):
        assert body_lines(nd) == body_lines(orjson.dumps(objs)) == [orjson.dumps(o) for o in objs]
    else:
        assert len(body_lines(nd)) == len(body_lines(orjson.dumps(objs))) == len(objs)


@given(st.binary(max_size=200))
def test_any_body_gives_lines_or_bad_body(body: bytes) -> None:
    """Arbitrary bytes never raise anything but BadBody."""
    try:
        lines = body_lines(body)
    except BadBody as e:
        assert str(e)
    else:
        assert all(isinstance(x, bytes) for x in lines)
