"""llama-swap: the model-swapping proxy in front of llama-server (and other OpenAI-style servers).

Its own lines are `[LEVEL] message` (`DEBUG`, `INFO`, `WARN`, `ERROR`; an optional time stamp
before them is peeled by the envelope). The access line, written when a request completes, is
`[INFO] Request IP "METHOD PATH PROTO" STATUS SIZE "USER-AGENT" DURATION` (Go duration); early
builds wrote `[llama-swap] IP [YYYY-MM-DD HH:MM:SS] "METHOD PATH PROTO" STATUS SIZE "UA" DURATION`.

Accounting: llama-swap is the stream's front door. An access line on an inference path is one
finished request with its end-to-end latency (model loading and swapping included) and its outcome
from the status; the upstream server's own per-request lines in the same stream (llama-server's
timing blocks, with `logToStdout: both`) are the same requests and are not counted again.
"""

from __future__ import annotations

import re
from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import access_request, http_record, inference_operation
from llm_exporter.adapters.base import IGNORED, Adapter, Invalid
from llm_exporter.units import parse_duration

_LEVELS = {"[DEBUG] ": "DEBUG", "[INFO] ": "INFO", "[WARN] ": "WARNING", "[ERROR] ": "ERROR"}
# the end of the quoted request line: `" STATUS SIZE "`
_STATUS = re.compile(r'" (\d{3}) (-?\d+) "')


class LlamaSwapAdapter(Adapter):
    """llama-swap's own lines and access lines."""

    name = "llama-swap"
    provider = "llama-swap"
    wants_obj = False

    def parse_text(self, text: str) -> Any:
        if text.startswith("!!! ") and self.shared.get("server") == self.provider:
            return {"kind": "log", "provider": self.provider, "level": "WARNING"}  # early builds' warnings
        if text[:1] != "[":
            return None
        if text.startswith("[llama-swap] "):
            self._mark()
            rec = self._access(text[13:], "INFO")
            return rec if rec is not None else IGNORED
        j = text.find("] ", 1, 8)
        level = _LEVELS.get(text[: j + 2]) if j > 0 else None
        if level is None:
            return None
        msg = text[j + 2:]
        if msg.startswith("Request "):
            rec = self._access(msg[8:], level)
            if rec is not None:
                self._mark()
                return rec
        if self.shared.get("front_door") != self.provider and not msg[:1].isupper() and msg[:1] != "<":
            return None  # `[INFO] lowercase...`: not known to be llama-swap's
        self._mark()
        log: dict[str, Any] = {"kind": "log", "provider": self.provider, "level": level}
        if level != "ERROR":
            return log
        scope, cls = errors.classify_event(msg)
        log["error_type"] = cls
        if scope == errors.INCIDENT:
            return [log, {"kind": "server_error", "provider": self.provider, "error_type": cls}]
        return log

    def _mark(self) -> None:
        self.shared["server"] = self.provider
        self.shared["front_door"] = self.provider

    def _access(self, rest: str, level: str) -> list[dict[str, Any]] | None:
        q = rest.find('"', 0, 80)
        if q < 0:
            return None
        m = _STATUS.search(rest, q + 1)  # the first: the user agent after it is client text
        if m is None:
            return None
        parts = rest[q + 1: m.start()].split(" ")
        if len(parts) < 3 or not parts[-1].startswith("HTTP/"):
            return None
        method, path, code = parts[0], " ".join(parts[1:-1]), m.group(1)
        dur = parse_duration(rest.rpartition(" ")[2])  # the last field (the line comes stripped)
        if dur is None:
            raise Invalid("bad_duration")
        out: list[dict[str, Any]] = [http_record(self.provider, method, path, code, dur)]
        op = inference_operation(method, path)
        if op is not None:
            counted = self.shared.get("engine_counted")
            if counted and int(code) < 400:
                self.shared["engine_counted"] = counted - 1  # its engine's line came first and counted it
            else:
                out.append(access_request(self.provider, op, code, dur))
        if level:
            out.append({"kind": "log", "provider": self.provider, "level": level})
        return out
