"""POST /ingest on aiohttp's real test server: answers, what is counted and queued, limits, token.

The worker is a recorder of what `/ingest` hands on (source, lines, the thread that handed them),
with room in its queue or none until the test makes some; counts are read from the real metrics.
The expected lines and sizes are the bodies sent, worked out by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.limits import Refusals
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.sources import http_push
from llm_exporter.sources.http_push import Ingest
from llm_exporter.worker import Worker
from tests.helpers import parse_metrics, total

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLES = Path(__file__).parent.parent / "fixtures" / "samples"
TGI = (SAMPLES / "tgi_json.log").read_bytes().splitlines()[:4]
#: a guard against a hang only (a push that never ends); nothing is timed
GUARD = 30


class Recorder:
    """Stands in for `Worker.put`: records each batch, or waits for room like a full queue."""

    def __init__(self, room: bool = True) -> None:
        self.batches: list[tuple[str, list[bytes], str]] = []
        self.room = threading.Event()
        if room:
            self.room.set()
        self.tries = 0
        self.waiting = threading.Event()  # a put found no room
        self.retried = threading.Event()  # ... and was tried again

    def put(self, source: str, lines: list[bytes], timeout: float | None = None, **_: Any) -> None:
        self.tries += 1
        if self.tries == 2:
            self.retried.set()
        if not self.room.is_set():
            self.waiting.set()
        if not self.room.wait(timeout):
            raise queue.Full
        self.batches.append((source, list(lines), threading.current_thread().name))

    def lines(self) -> list[bytes]:
        return [line for _, batch, _ in self.batches for line in batch]


class Push:
    """One Ingest served on a real test server, with its recorder and metrics."""

    def __init__(self, client: TestClient[web.Request, web.Application], ingest: Ingest, rec: Recorder,
                 metrics: LLMMetrics) -> None:
        self.client, self.ingest, self.rec, self.metrics = client, ingest, rec, metrics

    @property
    def bytes(self) -> int:
        return self.metrics.internal.bytes["http"]

    @property
    def too_long(self) -> int:
        return self.metrics.internal.lines[("http", "too_long")]

    async def post(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        async with asyncio.timeout(GUARD):
            r = await self.client.post("/ingest", data=body, headers=AUTH if headers is None else headers)
            return r.status, await r.text(), dict(r.headers)


@contextlib.asynccontextmanager
async def serve(token: str | None = TOKEN, max_bytes: int = 1 << 20, max_line: int = 1 << 20,
                read_timeout: float = 60.0, refusals: Refusals | None = None, room: bool = True,
                ) -> AsyncIterator[Push]:
    metrics = LLMMetrics()
    rec = Recorder(room)
    ingest = Ingest(cast(Worker, rec), metrics.source, token, max_bytes, read_timeout=read_timeout,
                    refusals=refusals, max_line=max_line, concurrency=2)
    app = web.Application()
    app.add_routes(ingest.routes())
    try:
        async with TestClient(TestServer(app)) as client:
            yield Push(client, ingest, rec, metrics)
    finally:
        rec.room.set()
        ingest.stop()


def closes(headers: dict[str, str]) -> bool:
    return headers.get("Connection", "").lower() == "close"


async def test_a_push_is_queued_as_http_lines_and_its_bytes_counted() -> None:
    """204, empty; each object one line, handed on from an ingest thread; bytes are the body's."""
    async with serve(max_line=255) as p:  # TGI[2] is 255 bytes long, TGI[3] 145
        nd = b"\n".join(TGI[2:]) + b"\n" + b'{"long":"' + b"x" * 245 + b'"}\n'
        code, text, headers = await p.post(nd)
        assert (code, text) == (204, "")
        assert not closes(headers)
        assert p.rec.lines() == TGI[2:]
        assert p.bytes == len(nd) and p.too_long == 1
        arr = b'[{"log": "first line\\n"}, {"a": 1}]'
        # the body's first byte tells its shape, whatever the Content-Type says
        assert (await p.post(arr, {**AUTH, "Content-Type": "application/x-ndjson"}))[0] == 204
        assert p.rec.lines() == [*TGI[2:], b"first line", b'{"a": 1}']
        assert p.bytes == len(nd) + len(arr) and p.too_long == 1
        assert [source for source, _, _ in p.rec.batches] == ["http", "http"]
        assert all(thread.startswith("ingest") for _, _, thread in p.rec.batches)


@pytest.mark.parametrize("auth", ["Bearer " + TOKEN, "bearer " + TOKEN, "BEARER  " + TOKEN + " "])
async def test_the_bearer_token_is_accepted_in_any_case_and_spacing(auth: str) -> None:
    async with serve() as p:
        assert (await p.post(TGI[0], {"Authorization": auth}))[:2] == (204, "")
        assert p.rec.lines() == [TGI[0]]


@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x",
                                  f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"])
async def test_a_missing_or_wrong_token_is_401_and_nothing_is_counted(auth: str | None) -> None:
    """401 with a Bearer challenge, the connection closed; not a line nor a byte counted."""
    async with serve() as p:
        code, text, headers = await p.post(b'{"a":1}\n', {} if auth is None else {"Authorization": auth})
        assert (code, text) == (401, "missing or wrong bearer token\n")
        assert headers["WWW-Authenticate"] == 'Bearer realm="llm-exporter"'
        assert closes(headers)
        assert p.rec.batches == [] and p.bytes == 0


async def test_without_a_token_any_push_is_taken() -> None:
    async with serve(token=None) as p:
        assert (await p.post(TGI[0], {}))[0] == 204
        assert (await p.post(TGI[1], {"Authorization": "Bearer anything"}))[0] == 204
        assert p.rec.lines() == TGI[:2]


async def test_a_bad_body_is_400_with_its_reason_and_nothing_is_counted() -> None:
    """The reason is the one line BadBody gives; the connection stays open; no challenge."""
    async with serve() as p:
        code, text, headers = await p.post(b'{"a":1}\n[1]\n')
        assert (code, text) == (400, "line 2: not a JSON object\n")
        assert "WWW-Authenticate" not in headers and not closes(headers)
        code, text, _ = await p.post(b"[{}]x")
        assert (code, text) == (400, "not a JSON array: extra data at byte 4\n")
        assert p.rec.batches == [] and p.bytes == 0 and p.too_long == 0


async def test_a_declared_length_over_the_limit_is_413_and_at_the_limit_is_taken() -> None:
    """Content-Length decides before anything is read; exactly the limit is still taken."""
    body = b'{"k":"' + b"a" * 92 + b'"}'  # 100 bytes
    async with serve(max_bytes=100) as p:
        code, text, headers = await p.post(body + b"\n")
        assert (code, text) == (413, "body of 101 bytes is over the limit of 100\n")
        assert closes(headers) and "WWW-Authenticate" not in headers
        assert p.rec.batches == [] and p.bytes == 0
    async with serve(max_bytes=100) as p:
        assert (await p.post(body))[0] == 204
        assert p.rec.lines() == [body] and p.bytes == 100


async def chunked(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_chunked_body_is_held_to_the_limit_as_it_arrives() -> None:
    """Without Content-Length: 413 once the bytes read pass the limit; exactly the limit is taken."""
    line = b'{"k":"' + b"a" * 42 + b'"}\n'  # 51 bytes
    async with serve(max_bytes=102) as p:
        assert (await p.post(chunked(line, line)))[0] == 204
        assert p.rec.lines() == [line.strip()] * 2 and p.bytes == 102
    async with serve(max_bytes=101) as p:
        code, text, headers = await p.post(chunked(line, line))
        assert (code, text) == (413, "body over the limit of 101 bytes\n")
        assert closes(headers)
        assert p.rec.batches == [] and p.bytes == 0


async def test_a_body_of_many_reads_is_judged_whole() -> None:
    """A body far over one read (64 KiB) is joined as sent and counted line by line; one whose reads
    are each under the limit but together over it is 413."""
    lines = [b'{"i":%d,"pad":"%s"}' % (i, b"p" * 90) for i in range(2000)]
    body = b"\n".join(lines) + b"\n"
    assert len(body) > 3 * http_push.READ
    async with serve(max_bytes=len(body)) as p:
        assert (await p.post(chunked(body)))[0] == 204
        assert p.rec.lines() == lines and p.bytes == len(body)
    async with serve(max_bytes=http_push.READ + 1) as p:
        assert (await p.post(chunked(body)))[:2] == (413, f"body over the limit of {http_push.READ + 1} bytes\n")
        assert p.rec.batches == []


async def test_a_gzip_body_is_read_decompressed_and_held_to_the_limit_decompressed() -> None:
    """Fluent Bit's `compress gzip`: the lines and bytes are the decompressed body's; a small body that
    decompresses past --http-ingest-max-bytes is 413 as soon as it does."""
    gz = {**AUTH, "Content-Encoding": "gzip"}
    body = b"\n".join(TGI) + b"\n"
    async with serve(max_bytes=len(body)) as p:
        assert (await p.post(gzip.compress(body), gz))[0] == 204
        assert p.rec.lines() == TGI and p.bytes == len(body)
        bomb = gzip.compress(b'{"a":1}\n' * 100_000)
        assert len(bomb) < len(body)
        code, text, headers = await p.post(bomb, gz)
        assert (code, text) == (413, f"body over the limit of {len(body)} bytes\n")
        assert closes(headers)
        assert p.rec.lines() == TGI and p.bytes == len(body)


@pytest.mark.parametrize("given", [True, False])
async def test_a_body_not_received_in_time_is_408_and_counted_as_a_refusal(given: bool) -> None:
    """The sender stops half-way; the server's own read timeout answers (nothing is slept here)."""
    never = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"a":1}\n'
        await never.wait()

    refusals = Refusals() if given else None
    async with serve(read_timeout=0.2, refusals=refusals) as p:
        try:
            code, text, headers = await p.post(stalls())
        finally:
            never.set()
        assert (code, text) == (408, "body not received within 0.2 s (--web-read-timeout)\n")
        assert closes(headers)
        assert p.rec.batches == [] and p.bytes == 0
        if refusals is not None:
            assert refusals.counts["body_timeout"] == 1


async def test_after_stop_a_push_is_503_and_nothing_is_counted() -> None:
    async with serve() as p:
        p.ingest.stop()
        code, text, headers = await p.post(TGI[0])
        assert (code, text) == (503, "stopping: push to the next instance\n")
        assert closes(headers)
        assert p.rec.batches == [] and p.bytes == 0


async def test_a_push_waits_for_queue_room_and_loses_nothing() -> None:
    """Back-pressure: a full queue is tried again until it has room; every line arrives once."""
    body = b"\n".join(TGI)
    async with serve(room=False) as p:
        push = asyncio.ensure_future(p.post(body))
        await asyncio.get_running_loop().run_in_executor(None, p.rec.retried.wait, GUARD)
        assert p.rec.batches == []
        p.rec.room.set()
        assert (await push)[0] == 204
        assert p.rec.lines() == TGI and p.bytes == len(body)


async def test_a_stop_while_a_push_waits_for_room_is_503() -> None:
    """The lines not handed on are said not counted; the push does not wait forever."""
    async with serve(room=False) as p:
        push = asyncio.ensure_future(p.post(b"\n".join(TGI)))
        await asyncio.get_running_loop().run_in_executor(None, p.rec.waiting.wait, GUARD)
        p.ingest.stop()
        code, text, headers = await push
        assert (code, text) == (503, "stopping: the rest of this push was not counted\n")
        assert closes(headers)
        assert p.rec.batches == []


async def test_a_stop_while_a_body_is_read_is_503_not_a_server_error() -> None:
    """A push whose body is still on its way when the exporter stops (`100 Continue` sent, so its
    handler is waiting for the body): 503 once the body is in, nothing counted, never a 500."""
    async with serve() as p:
        reader, writer = await raw(p, request(TGI[0], b"Expect: 100-continue"))
        try:
            assert await answer(reader) == b"HTTP/1.1 100 Continue\r\n\r\n"
            p.ingest.stop()
            writer.write(TGI[0])
            head = await answer(reader)
            assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nConnection: close\r\n" in head
            assert await reader.read() == b"stopping: push to the next instance\n"
        finally:
            writer.close()
        assert p.rec.batches == [] and p.bytes == 0


async def test_a_stop_while_a_body_is_checked_is_503_with_its_bytes_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter stops while the body is being judged: its bytes were read (counted), its lines
    are not handed on, and the answer says so (503, never a 500)."""
    pushes: list[Ingest] = []
    check = http_push.Body.check

    def stop_then_check(self: http_push.Body) -> None:
        pushes[0].stop()
        check(self)

    monkeypatch.setattr(http_push.Body, "check", stop_then_check)
    async with serve() as p:
        pushes.append(p.ingest)
        code, text, headers = await p.post(TGI[0])
        assert (code, text) == (503, "stopping: the rest of this push was not counted\n")
        assert closes(headers)
        assert p.rec.batches == [] and p.bytes == len(TGI[0])


async def test_the_body_is_judged_on_an_ingest_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never on the event loop, nor on the loop's shared default pool: on the push's own threads."""
    threads: list[str] = []
    check = http_push.Body.check

    def spy(self: http_push.Body) -> None:
        threads.append(threading.current_thread().name)
        check(self)

    monkeypatch.setattr(http_push.Body, "check", spy)
    async with serve() as p:
        assert (await p.post(TGI[0]))[0] == 204
    assert len(threads) == 1 and threads[0].startswith("ingest")


async def raw(p: Push, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert p.client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", p.client.port)
    writer.write(head)
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> bytes:
    """The status line and headers of the next answer."""
    async with asyncio.timeout(GUARD):
        return await reader.readuntil(b"\r\n\r\n")


def request(body: bytes, *extra: bytes, version: bytes = b"1.1", length: int | None = None) -> bytes:
    head = [b"POST /ingest HTTP/" + version, b"Host: x", b"Authorization: Bearer " + TOKEN.encode(),
            b"Content-Length: %d" % (len(body) if length is None else length), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n"


@pytest.mark.parametrize("expect", [b"100-continue", b"100-Continue"])
async def test_expect_continue_is_answered_before_the_body_is_sent(expect: bytes) -> None:
    async with serve() as p:
        reader, writer = await raw(p, request(TGI[0], b"Expect: " + expect))
        try:
            assert await answer(reader) == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(TGI[0])
            assert (await answer(reader)).startswith(b"HTTP/1.1 204 ")
        finally:
            writer.close()
        assert p.rec.lines() == [TGI[0]]


@pytest.mark.parametrize(("head", "status"), [
    (request(b"", b"Expect: 100-continue", length=10_001), b"413"),
    (request(b"x", b"Expect: 100-continue").replace(TOKEN.encode(), b"wrong"), b"401"),
])
async def test_expect_continue_is_refused_before_the_body_is_sent(head: bytes, status: bytes) -> None:
    """Over the limit or without the token: the refusal, never `100 Continue` first."""
    async with serve(max_bytes=10_000) as p:
        reader, writer = await raw(p, head)
        try:
            assert (await answer(reader)).startswith(b"HTTP/1.1 " + status + b" ")
        finally:
            writer.close()
        assert p.rec.batches == [] and p.bytes == 0


@pytest.mark.parametrize(("version", "expect"), [(b"1.0", b"100-continue"), (b"1.1", b"something-else")])
async def test_no_continue_is_sent_where_none_was_asked(version: bytes, expect: bytes) -> None:
    """HTTP/1.0 has no `100 Continue`; another expectation is not 100-continue."""
    async with serve() as p:
        reader, writer = await raw(p, request(TGI[0], b"Expect: " + expect, version=version) + TGI[0])
        try:
            first = await answer(reader)
        finally:
            writer.close()
        assert b" 100 " not in first.split(b"\r\n")[0]
        assert first.split(b"\r\n")[0].endswith(b" 204 No Content")
        assert p.rec.lines() == [TGI[0]]


async def test_a_token_of_bytes_that_are_not_utf8_is_401_not_500() -> None:
    """A header's raw non-UTF-8 bytes are compared as sent: a refusal, never a server error."""
    async with serve() as p:
        head = request(b"{}").replace(TOKEN.encode(), TOKEN.encode()[:-1] + b"\xf8")
        reader, writer = await raw(p, head + b"{}")
        try:
            assert (await answer(reader)).startswith(b"HTTP/1.1 401 ")
        finally:
            writer.close()


async def test_a_non_ascii_token_is_compared_as_its_utf8_bytes() -> None:
    async with serve(token="tøken") as p:
        head = request(b"{}").replace(TOKEN.encode(), "tøken".encode())
        reader, writer = await raw(p, head + b"{}")
        try:
            assert (await answer(reader)).startswith(b"HTTP/1.1 204 ")
        finally:
            writer.close()
        assert p.rec.lines() == [b"{}"]


async def test_pushed_requests_reach_the_metrics_through_a_real_pipeline() -> None:
    """End to end with the real worker: every object is one `record` and its tokens are summed."""
    metrics = LLMMetrics()
    worker = Worker(Pipeline(metrics), max_chunks=2)
    worker.start()
    ingest = Ingest(worker, metrics.source, None, 1 << 20, read_timeout=60.0, refusals=None,
                    max_line=1 << 20, concurrency=2)
    app = web.Application()
    app.add_routes(ingest.routes())
    objs = [{"request_id": f"r{i}", "model": "m", "status": "success", "duration_ms": 100 + i,
             "output_tokens": i % 7 + 1} for i in range(50)]
    try:
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/ingest", data=b"\n".join(orjson.dumps(o) for o in objs[:30]))
            assert r.status == 204
            r = await client.post("/ingest", data=orjson.dumps(objs[30:]))
            assert r.status == 204
    finally:
        ingest.stop()
        worker.stop()
    assert metrics.internal.lines[("http", "record")] == 50
    assert sum(v for k, v in metrics.internal.lines.items() if k[0] == "http") == 50
    reg = CollectorRegistry()
    reg.register(metrics)
    s = parse_metrics(generate_latest(reg).decode())
    # by hand: i % 7 + 1 over i = 0..49 is seven rounds of 1..7 (7 * 28) and one 1
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 197
