"""Ollama: GIN access lines, `slog` server lines, and API response objects.

`[GIN] 2024/12/12 - 00:40:39 | 500 |  4.709180529s |  10.0.0.123 | POST     "/api/chat"` is written
when a request completes, so on an inference path (`/api/chat`, `/api/generate`, `/v1/...`) it is
one finished request with its end-to-end latency (a Go duration: `36.185µs`, `8m44s`, `0s`) and
its outcome from the status; on every path it is one HTTP access record. Token counts and
timings exist only in API responses (`"done":true` objects; durations in integer nanoseconds),
which an application may log as JSON lines.
"""

from __future__ import annotations

from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import bound_path, http_record
from llm_exporter.adapters.base import IGNORED, Adapter, Invalid
from llm_exporter.units import parse_duration

INFERENCE_PATHS = {
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
    "/v1/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "chat",
}
_SLOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "ERROR": "ERROR"}


class OllamaAdapter(Adapter):
    """Ollama's access and server lines, and its `/api/chat` / `/api/generate` responses."""

    name = "ollama"
    provider = "ollama"
    wants_obj = True

    def parse_text(self, text: str) -> Any:
        c = text[:1]
        if c.isdigit() and text[4:5] == "-" and text[10:11] == " " and text[19:20] == " ":
            text = text[20:]  # a collector's `YYYY-MM-DD HH:MM:SS ` before Ollama's own line
            c = text[:1]
        if c == "[":
            if text.startswith("[GIN] "):
                return self._gin(text)
            return None
        if c == "t":
            if text.startswith("time=") and (i := text.find(" level=", 5, 60)) > 0:
                lv = text[i + 7: text.find(" ", i + 7, i + 20)]
                level = _SLOG_LEVELS.get(lv)
                if level is not None and " source=" in text[i: i + 40]:
                    return {"kind": "log", "provider": self.provider, "level": level}
            return None
        if c.isdigit() and text[4:5] == "/" and text[7:8] == "/" and ".go:" in text[19:60]:
            return IGNORED  # pre-slog `2023/10/06 13:38:58 routes.go:572: ...`
        return None

    def _gin(self, text: str) -> Any:
        parts = text.split(" | ", 4)
        if len(parts) != 5:
            return None
        code = parts[1].strip()
        if len(code) != 3 or not code.isdigit():
            return None
        dur = parse_duration(parts[2].strip())
        if dur is None:
            raise Invalid("bad_duration")
        method, _, path = parts[4].strip().partition(" ")
        path = path.strip().strip('"')
        recs: list[dict[str, Any]] = [http_record(self.provider, method, path, code, dur)]
        op = INFERENCE_PATHS.get(bound_path(path)) if method == "POST" else None
        if op is not None:
            status = int(code)
            rec: dict[str, Any] = {"kind": "request", "provider": self.provider, "operation": op, "model": "",
                                   "outcome": "success", "error_type": "", "duration_s": dur}
            if status >= 400:
                et = errors.from_http_status(status)
                if et == "client_disconnect":
                    rec["outcome"] = "aborted"
                else:
                    rec["outcome"], rec["error_type"] = "error", et
            recs.append(rec)
        return recs

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        if obj is None or "done" not in obj or "created_at" not in obj or "model" not in obj:
            return None
        if obj.get("done") is not True:
            return IGNORED  # a streaming chunk; the final one carries the numbers
        model = obj.get("model")
        rec: dict[str, Any] = {"kind": "request", "provider": self.provider,
                               "operation": "chat" if "message" in obj else "text_completion",
                               "model": model[:128] if type(model) is str else "",
                               "outcome": "success", "error_type": ""}
        for key, canon in (("prompt_eval_count", "input_tokens"), ("eval_count", "output_tokens")):
            v = obj.get(key)
            if v is not None:
                if type(v) is not int or v < 0:
                    raise Invalid("bad_value")
                rec[canon] = v
        ns: dict[str, int] = {}
        for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            v = obj.get(key)
            if v is not None:
                if type(v) is not int or v < 0:
                    raise Invalid("bad_value")
                ns[key] = v
        if "total_duration" in ns:
            rec["duration_s"] = ns["total_duration"] / 1e9
        if "eval_duration" in ns and rec.get("output_tokens"):
            rec["tpot_s"] = ns["eval_duration"] / 1e9 / rec["output_tokens"]
        if "prompt_eval_duration" in ns or "eval_duration" in ns:
            rec["inference_s"] = (ns.get("prompt_eval_duration", 0) + ns.get("eval_duration", 0)) / 1e9
        fr = obj.get("done_reason")
        if type(fr) is str and fr:
            rec["finish_reason"] = fr[:64]
        return rec
