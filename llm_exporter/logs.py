"""The exporter's own logs: one JSON object per line on stderr (stdout is the passthrough).

Lines of the HTTP library and of asyncio (a malformed request, a reset connection, a failed TLS
handshake) are the outside world's doing: each becomes one line naming the error, without a
traceback, at most once a minute per kind, so a flood of bad requests cannot flood stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import orjson


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("llm_exporter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    outside = logging.StreamHandler(sys.stderr)
    outside.setFormatter(JsonFormatter())
    outside.addFilter(OneLinePerKind())
    for name in OUTSIDE:
        lg = logging.getLogger(name)
        lg.handlers[:] = [outside]
        lg.propagate = False
        lg.setLevel(logging.WARNING)
