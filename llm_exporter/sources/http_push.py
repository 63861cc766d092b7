"""HTTP push: `POST /ingest` takes NDJSON or a JSON array of objects; each object is one line.

Body shapes: a JSON array of objects (`application/json`, what Fluent Bit's and Vector's HTTP
outputs send) or one object per line (`application/x-ndjson`); the shape is told by the body's
first byte, so a wrong Content-Type does not matter. An object that a log shipper wrapped around a
raw log line (Fluent Bit's `log` field, Vector's `message` with `source_type`) gives that line;
any other object is the line itself, as sent. Lines get `source="http"` and go through the
same envelopes, adapters and metrics as every other source, with back-pressure.

Memory and time: a body is judged whole first (a bad one is 400 and nothing of it is counted),
then its lines are handed on in batches; only the body and one batch are held, and an object's
line is the text that was sent (never re-serialised), so a push costs memory in proportion to
its bytes. Parsing runs on a few threads of its own (`--http-ingest-concurrency` pushes at once;
more wait their turn), never on the event loop. Each line is held to `--max-line-bytes` like
every other source's (longer: `too_long`).

Answers: 204 once the lines are queued; 400 with a one-line reason for a body that is neither
shape (nothing of it is counted); 408 when the body is not received within --web-read-timeout;
401 when a token is configured and the bearer token is missing or wrong (constant-time compare);
413 over the size limit, decided from Content-Length before reading anything (also before
`100 Continue`), or as soon as a chunked body passes the limit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiohttp import web

from llm_exporter.limits import Refusals
from llm_exporter.metrics.internal import Counters
from llm_exporter.sources.base import LineFeed
from llm_exporter.worker import Worker

SOURCE = "http"
READ = 1 << 16
BATCH = 4096


class BadBody(ValueError):
    """The body is neither NDJSON nor a JSON array of objects."""


def object_line(obj: dict[str, Any], raw: bytes | None = None) -> bytes:
    """The log line an object stands for: a shipper's wrapped line, else the object's own text
    (`raw`, as sent; re-serialised only when there is none)."""
    # a JSON array's lone surrogate escape (`"\\ud800"`, accepted by `json`) stays as it was sent
    log = obj.get("log")
    if type(log) is str:
        return log.rstrip("\r\n").encode("utf-8", "backslashreplace")
    msg = obj.get("message")
    if type(msg) is str and "source_type" in obj:
        return msg.rstrip("\r\n").encode("utf-8", "backslashreplace")
    if raw is not None:
        return raw
    # orjson's result keeps a buffer of several KiB even for `{}`: copy it to its own size
    return memoryview(orjson.dumps(obj)).tobytes()


_WRAPPERS = (b'"log"', b'"message"')
_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def _ndjson(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line, without splitting the body all at once."""
    pos, n, size = 0, 0, len(body)
    while pos < size:
        nl = body.find(b"\n", pos)
        end = size if nl < 0 else nl
        n += 1
        raw = body[pos:end].strip()
        pos = end + 1
        if raw:
            yield n, raw


def _byte(text: str, i: int) -> int:
    """The byte offset in the body of character `i` of its text (an error message's position)."""
    return len(text[:i].encode("utf-8"))


def _array(text: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, text, object) of each element of a JSON array, one element decoded at a time."""
    i = len(text) - len(text.lstrip(_WS)) + 1  # past "["
    size = len(text)
    k = 0
    while True:
        while i < size and text[i] in _WS:
            i += 1
        if k == 0 and i < size and text[i] == "]":
            i += 1
            break
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except ValueError as e:
            raise BadBody(f"not a JSON array: {str(e).split(':')[0]} at byte {_byte(text, i)}") from None
        if type(obj) is not dict:
            raise BadBody(f"element {k} is not a JSON object")
        yield k, text[i:end], obj
        k += 1
        i = end
        while i < size and text[i] in _WS:
            i += 1
        if i < size and text[i] == ",":
            i += 1
            continue
        if i < size and text[i] == "]":
            i += 1
            break
        raise BadBody(f"not a JSON array: expected ',' or ']' at byte {_byte(text, i)}")
    if text[i:].strip(_WS):
        raise BadBody(f"not a JSON array: extra data at byte {_byte(text, i)}")


class Body:
    """A body's lines, judged whole before any is handed on, then handed out in batches.

    `check()` walks the body once and raises BadBody (nothing of it counted); `batches()` walks it
    again and yields lists of at most `batch` lines. Only the body and one batch are held: a push
    costs memory in proportion to its bytes, whatever the number of lines. Lines longer than
    `max_line` are left out and counted in `too_long`.
    """

    def __init__(self, body: bytes, max_line: int = 1 << 20, batch: int = BATCH) -> None:
        self.body = body
        self.max_line = max_line
        self.batch = batch
        self.too_long = 0
        # a JSON array, else NDJSON (an empty or blank body is NDJSON without lines)
        self.array = body.lstrip()[:1] == b"["
        self._text: str | None = None
        self._single: bytes | None = None

    def check(self) -> None:
        if self.array:
            try:
                self._text = self.body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadBody(f"not a JSON array: not UTF-8 at byte {e.start}") from None
            for _ in _array(self._text):
                pass
        else:
            first = True
            for n, raw in _ndjson(self.body):
                if len(raw) > self.max_line:
                    first = False
                    continue  # counted too_long when handed out; its content is not judged
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    if first and self.body.lstrip()[:1] == b"{":
                        self._single = self._single_object()
                        return
                    raise BadBody(f"line {n}: not JSON ({e.msg})") from None
                first = False
                if type(obj) is not dict:
                    raise BadBody(f"line {n}: not a JSON object")

    def _single_object(self) -> bytes:
        """A pretty-printed single object is accepted too (the body starts with `{`: JSON that
        parses is an object)."""
        try:
            obj = orjson.loads(self.body)
        except orjson.JSONDecodeError as e:
            raise BadBody(f"neither NDJSON nor a JSON array: {e.msg} at byte {e.pos}") from None
        return object_line(obj)

    def _lines(self) -> Iterator[bytes]:
        mx = self.max_line
        if self._single is not None:
            if len(self._single) > mx:
                self.too_long += 1
            else:
                yield self._single
        elif self.array:
            assert self._text is not None
            for _k, text, obj in _array(self._text):
                line = object_line(obj, text.encode())
                if len(line) > mx:
                    self.too_long += 1
                else:
                    yield line
        else:
            for _n, raw in _ndjson(self.body):
                if len(raw) > mx:
                    self.too_long += 1
                    continue
                if _WRAPPERS[0] in raw or _WRAPPERS[1] in raw:  # perhaps a shipper's wrapper
                    # a wrapped line is never longer than its object's text (JSON escapes only
                    # shrink when decoded): judged by the text's length above
                    yield object_line(orjson.loads(raw), raw)
                else:
                    yield raw

    def batches(self) -> Iterator[list[bytes]]:
        out: list[bytes] = []
        for line in self._lines():
            out.append(line)
            if len(out) >= self.batch:
                yield out
                out = []
        if out:
            yield out


def body_lines(body: bytes, max_line: int = 1 << 20) -> list[bytes]:
    """Every line of a body (BadBody with a one-line reason); for tests and small bodies."""
    b = Body(body, max_line)
    b.check()
    return [line for batch in b.batches() for line in batch]


def _reply(status: int, reason: str, close: bool = False) -> web.Response:
    resp = web.Response(status=status, text=reason + "\n")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="llm-exporter"'
    if close:
        resp.force_close()
    return resp


class Ingest:
    """The `/ingest` handler and its checks (a source: attached once the server serves it)."""

    name = SOURCE
    attached = True

    def __init__(self, worker: Worker, counters: Counters, token: str | None, max_bytes: int, *,
                 read_timeout: float, concurrency: int, refusals: Refusals | None = None,
                 max_line: int = 1 << 20) -> None:
        self._worker = worker
        self._max_line = max_line
        # pushes read and parsed at once (each holds its body); more wait their turn. Parsing runs
        # on these threads, never on the event loop
        self._slots = asyncio.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ingest")
        self._read_timeout = read_timeout
        self._refusals = refusals if refusals is not None else Refusals()
        self._token = token.encode() if token else None
        self._max = max_bytes
        self._stopping = False
        # a body is split by `Body` (NDJSON or a JSON array), not framed: the feed only counts
        self._feed = LineFeed(counters(SOURCE))

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Nothing to start: pushes arrive through `routes()` once the server serves them."""

    def send_signal(self, sig: int) -> None:
        """Nothing to hand a signal to."""

    def stop(self) -> None:
        """Graceful stop: from now on a push is refused with 503 (its lines could not be counted)."""
        self._stopping = True
        self._pool.shutdown(wait=False)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/ingest", self.handle, expect_handler=self.expect)]

    def _refuse(self, request: web.Request) -> web.Response | None:
        """401 or 413 decided from the headers alone, else None."""
        if self._token is not None:
            auth = request.headers.get("Authorization", "")
            scheme, _, given = auth.partition(" ")
            # a header's non-ASCII bytes arrive as surrogates: compared as the bytes sent, never a 500
            presented = given.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented, self._token):
                return _reply(401, "missing or wrong bearer token", close=True)
        length = request.content_length
        if length is not None and length > self._max:
            return _reply(413, f"body of {length} bytes is over the limit of {self._max}", close=True)
        return None

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse before the client sends the body."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        # called only for a request with an Expect header (aiohttp's `_handle`)
        if request.version >= (1, 1) and request.headers["Expect"].lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the response proper has not started
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return _reply(503, "stopping: push to the next instance", close=True)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        async with self._slots:
            chunks: list[bytes] = []
            size = 0
            try:
                async with asyncio.timeout(self._read_timeout):
                    async for chunk in request.content.iter_chunked(READ):
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > self._max:
                            return _reply(413, f"body over the limit of {self._max} bytes", close=True)
            except TimeoutError:
                self._refusals.count("body_timeout")
                return _reply(408, f"body not received within {self._read_timeout:g} s (--web-read-timeout)",
                              close=True)
            body = Body(b"".join(chunks), self._max_line)
            del chunks
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._pool, body.check)
            except BadBody as e:
                return _reply(400, str(e))
            except RuntimeError:  # stop() came while the body was read: the pool takes no more work
                if not self._stopping:
                    raise
                return _reply(503, "stopping: push to the next instance", close=True)
            self._feed.count(len(body.body), 0)
            try:
                done = await loop.run_in_executor(self._pool, self._queue, body)
            except RuntimeError:  # ... or while it was checked
                if not self._stopping:
                    raise
                done = False
            self._feed.count(0, body.too_long)
            if not done:
                return _reply(503, "stopping: the rest of this push was not counted", close=True)
        return web.Response(status=204)

    def _queue(self, body: Body) -> bool:
        """Hand the lines to the parser, waiting for queue room (an ingest thread); False when a
        stop came first."""
        for batch in body.batches():
            while True:
                if self._stopping:
                    return False
                try:
                    self._worker.put(SOURCE, batch, timeout=0.5)
                    break
                except queue.Full:
                    continue
        return True
