"""Python tracebacks on a server's stream that its adapter did not claim, and how to tell a
traceback's lines (on a stream no server line has named yet, a traceback is an application's:
left alone).

A `Traceback (most recent call last):` (or uvicorn's `ERROR:    Exception in ASGI application`,
an exception group's `+ Exception Group Traceback`, logging's `--- Logging error ---`) starts one
record; its `File "..."` lines, the source line after each, `^^^^` markers, chained-exception
headers and the final `Name: message` line (or a bare `Name`, an exception raised with no
message, as `asyncio.exceptions.CancelledError` is) belong to it. Lines reach adapters with their
indentation stripped, so a source line is known by its place (right after a `File` line), not by
its indent. The record is one ERROR log record of the stream's server (as far as the stream has
said which), classified by its exception lines; when they say the engine itself failed (an
engine-dead error, a fatal CUDA error, a scheduler's SIGQUIT) it is also a server incident. A
traceback is never a failed request on its own: the request it broke is counted by its own line
(an access line, an error line).
"""

from __future__ import annotations

from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.base import Adapter

_STARTS = ("Traceback (most recent call last)", "ERROR:    Exception in ASGI application",
           "+ Exception Group Traceback", "Exception in thread", "Exception in callback", "--- Logging error ---")
_CONT = ("Traceback (most recent call last)", "During handling of the above exception",
         "The above exception was the direct cause", "^", "~", "|", "+-", "+ ", "...", "Call stack:",
         "Message: ", "Arguments: ", "Exception Group Traceback", "raise ", "return ", "self.", "await ")
MAX_LINES = 400


class TraceTail:
    """Says whether each next line still belongs to a traceback, and what the traceback says."""

    __slots__ = ("cls", "lines", "scope", "source")

    def __init__(self) -> None:
        self.lines = 0
        self.source = False  # the next line is the source line of a `File` line
        self.scope = ""
        self.cls = errors.OTHER

    def feed(self, text: str) -> bool:
        """True when `text` (indentation stripped) is part of the traceback; it is then taken in."""
        if self.lines >= MAX_LINES:
            return False
        if text.startswith('File "'):
            self.source = True
        elif self.source:
            self.source = False
        elif not (not text or text.startswith(_CONT) or text.startswith(_STARTS)):
            if errors.exception_name(text) is None:  # a bare name too (`asyncio.exceptions.CancelledError`)
                return False
            self._note(text)
        elif text.startswith("Message: "):
            self._note(text)
        self.lines += 1
        return True

    def _note(self, text: str) -> None:
        scope, cls = errors.classify_event(text)
        named = errors.classify_exception(text)
        if named != errors.OTHER:
            cls = named
        if cls != errors.OTHER:
            self.cls = cls
        if scope == errors.INCIDENT or cls == "engine_dead":
            self.scope = errors.INCIDENT


class PyTraceAdapter(Adapter):
    """Python tracebacks not claimed by a server adapter (LiteLLM, SGLang relays, client scripts)."""

    name = "python-traceback"
    provider = ""
    wants_obj = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.tail: TraceTail | None = None

    def parse_text(self, text: str) -> Any:
        t = self.tail
        if t is not None:
            if not text.startswith(_STARTS) and t.feed(text):
                return []
            out = self._close()
            if text.startswith(_STARTS):
                self.tail = TraceTail()
                self.tail.feed(text)
                return out
            return out or None
        if not self.shared.get("server"):
            return None  # an application's own traceback: not ours to count
        if text.startswith(_STARTS) or text.startswith('File "'):  # a traceback, or one whose head was cut
            self.tail = TraceTail()
            self.tail.feed(text)
            return []
        return None

    def _close(self) -> list[dict[str, Any]]:
        t = self.tail
        if t is None:
            return []
        self.tail = None
        provider = self.shared["server"]  # a traceback is only begun once the stream's server is named
        out: list[dict[str, Any]] = [{"kind": "log", "provider": provider, "level": "ERROR", "error_type": t.cls}]
        if t.scope == errors.INCIDENT:
            out.append({"kind": "server_error", "provider": provider, "error_type": t.cls})
        return out

    def flush(self) -> list[dict[str, Any]]:
        return self._close()
