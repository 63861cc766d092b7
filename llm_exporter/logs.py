"""The exporter's own logs: one JSON object per line on stderr (stdout is the passthrough).

In wrapper mode the child's stderr passes through to the same fd: both go through `STDERR`,
which writes our lines only between the child's lines (never inside one the child has begun),
so neither is ever broken.

Lines of the HTTP library and of asyncio (a malformed request, a reset connection, a failed TLS
handshake) are the outside world's doing: each becomes one line naming the error, without a
traceback, at most once a minute per kind, so a flood of bad requests cannot flood stderr.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import orjson


class StderrGate:
    """fd 2, shared by our log lines and a child's stderr passthrough: whole lines only."""

    #: a log line waits at most this long for the child to finish a line it has begun
    HOLD = 2.0
    #: log lines held at most; beyond, the oldest are dropped (a child that never ends its line)
    HELD_MAX = 1000

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._mid_line_since: float | None = None  # the child's bytes end inside a line since then
        self._held: list[bytes] = []

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def passthrough(self, chunk: bytes) -> None:
        """The child's bytes, unchanged; held log lines go out right after its last complete line."""
        if not chunk:
            return
        with self._lock:
            if not self._held:
                self._write(chunk)
            else:
                nl = chunk.rfind(b"\n")
                if nl < 0:
                    self._write(chunk)
                else:
                    self._write(chunk[: nl + 1])
                    self._write(b"".join(self._held))
                    self._held.clear()
                    if nl + 1 < len(chunk):
                        self._write(chunk[nl + 1 :])
            if chunk.endswith(b"\n"):
                self._mid_line_since = None
            elif self._mid_line_since is None:
                self._mid_line_since = time.monotonic()

    def line(self, data: bytes) -> None:
        """One log line (ending in a newline): now, or once the child has finished its line."""
        with self._lock:
            since = self._mid_line_since
            if since is not None and time.monotonic() - since < self.HOLD:
                if len(self._held) >= self.HELD_MAX:
                    del self._held[0]
                self._held.append(data)
                return
            self._write(b"".join(self._held) + data)
            self._held.clear()


STDERR = StderrGate()


class GatedHandler(logging.Handler):
    """Writes formatted records through `STDERR`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            STDERR.line(self.format(record).encode("utf-8", "backslashreplace") + b"\n")
        except OSError:
            pass
        except Exception:
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


#: loggers of libraries whose errors are caused by what clients send
OUTSIDE = ("aiohttp.server", "aiohttp.web", "aiohttp.websocket", "asyncio")
#: seconds between two lines of the same kind from those loggers
OUTSIDE_EVERY = 60.0


class OneLinePerKind(logging.Filter):
    """Turns a library's record into one line (the exception's type and message, no traceback);
    the same kind again within `every` seconds is held back and counted into the next line."""

    def __init__(self, every: float = OUTSIDE_EVERY) -> None:
        super().__init__()
        self._every = every
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        kind = type(exc).__name__ if exc is not None else str(record.msg)[:80]
        key = (record.name, kind)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._every:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        fields: dict[str, object] = {}
        if exc is not None:
            fields["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if held:
            fields["not_logged_since_last"] = held
        record.exc_info = None
        record.exc_text = None
        record.fields = fields
        return True


def setup(level: str = "info") -> None:
    handler = GatedHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("llm_exporter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    outside = GatedHandler()
    outside.setFormatter(JsonFormatter())
    outside.addFilter(OneLinePerKind())
    for name in OUTSIDE:
        lg = logging.getLogger(name)
        lg.handlers[:] = [outside]
        lg.propagate = False
        lg.setLevel(logging.WARNING)
