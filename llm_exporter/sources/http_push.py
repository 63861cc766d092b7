"""HTTP push: `POST /ingest` takes NDJSON or a JSON array of objects; each object is one line.

Body shapes: a JSON array of objects (`application/json`, what Fluent Bit's and Vector's HTTP
outputs send) or one object per line (`application/x-ndjson`); the shape is told by the body's
first byte, so a wrong Content-Type does not matter. An object that a log shipper wrapped around a
raw log line (Fluent Bit's `log` field, Vector's `message` with `source_type`) gives that line;
any other object is the line itself, re-serialised. Lines get `source="http"` and go through the
same envelopes, adapters and metrics as every other source, with back-pressure.

Answers: 204 once the lines are queued; 400 with a one-line reason for a body that is neither
shape (nothing of it is counted); 401 when a token is configured and the bearer token is missing
or wrong (constant-time compare); 413 over the size limit, decided from Content-Length before
reading anything (also before `100 Continue`), or as soon as a chunked body passes the limit.
"""

from __future__ import annotations

import asyncio
import hmac
import queue
from typing import Any

import orjson
from aiohttp import web

from llm_exporter.limits import Refusals
from llm_exporter.metrics import LLMMetrics
from llm_exporter.worker import Worker

SOURCE = "http"
READ = 1 << 16
BATCH = 4096


class BadBody(ValueError):
    """The body is neither NDJSON nor a JSON array of objects."""


def object_line(obj: dict[str, Any]) -> bytes:
    """The log line an object stands for."""
    log = obj.get("log")
    if type(log) is str:
        return log.rstrip("\r\n").encode()
    msg = obj.get("message")
    if type(msg) is str and "source_type" in obj:
        return msg.rstrip("\r\n").encode()
    return orjson.dumps(obj)


def body_lines(body: bytes) -> list[bytes]:
    """The lines of a body, or BadBody with a one-line reason."""
    start = body.lstrip()[:1]
    if not start:
        return []
    if start == b"[":
        try:
            arr = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadBody(f"not a JSON array: {e.msg} at byte {e.pos}") from None
        if type(arr) is not list:
            raise BadBody("not a JSON array")
        for i, obj in enumerate(arr):
            if type(obj) is not dict:
                raise BadBody(f"element {i} is not a JSON object")
        return [object_line(o) for o in arr]
    out = []
    for n, raw in enumerate(body.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            if n == 1 and start == b"{":
                return _single_object(body)
            raise BadBody(f"line {n}: not JSON ({e.msg})") from None
        if type(obj) is not dict:
            raise BadBody(f"line {n}: not a JSON object")
        out.append(object_line(obj))
    return out


def _single_object(body: bytes) -> list[bytes]:
    """A pretty-printed single object is accepted too."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadBody(f"neither NDJSON nor a JSON array: {e.msg} at byte {e.pos}") from None
    if type(obj) is not dict:
        raise BadBody("not a JSON object")
    return [object_line(obj)]


def _reply(status: int, reason: str = "", close: bool = False) -> web.Response:
    resp = web.Response(status=status, text=reason + "\n" if reason else None)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="llm-exporter"'
    if close:
        resp.force_close()
    return resp


class Ingest:
    """The `/ingest` handler and its checks (a source: attached once the server serves it)."""

    name = SOURCE
    attached = True

    def __init__(self, worker: Worker, metrics: LLMMetrics, token: str | None, max_bytes: int,
                 read_timeout: float = 60.0, refusals: Refusals | None = None) -> None:
        self._worker = worker
        self._read_timeout = read_timeout
        self._refusals = refusals if refusals is not None else Refusals()
        self._metrics = metrics
        self._token = token.encode() if token else None
        self._max = max_bytes
        self._stopping = False
        metrics.register_source(SOURCE)

    def stop(self) -> None:
        """Graceful stop: from now on a push is refused with 503 (its lines could not be counted)."""
        self._stopping = True

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
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the response proper has not started
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return _reply(503, "stopping: push to the next instance", close=True)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        body = bytearray()
        try:
            async with asyncio.timeout(self._read_timeout):
                async for chunk in request.content.iter_chunked(READ):
                    body += chunk
                    if len(body) > self._max:
                        return _reply(413, f"body over the limit of {self._max} bytes", close=True)
        except TimeoutError:
            self._refusals.count("body_timeout")
            return _reply(408, f"body not received within {self._read_timeout:g} s (--web-read-timeout)",
                          close=True)
        try:
            lines = body_lines(bytes(body))
        except BadBody as e:
            return _reply(400, str(e))
        self._metrics.count_bytes(SOURCE, len(body))
        for i in range(0, len(lines), BATCH):
            await self._put(lines[i : i + BATCH])
        return web.Response(status=204)

    async def _put(self, lines: list[bytes]) -> None:
        try:
            self._worker.put(SOURCE, lines, timeout=0)
        except queue.Full:  # wait for room off the event loop: scrapes keep being served
            await asyncio.get_running_loop().run_in_executor(None, self._worker.put, SOURCE, lines)
