"""Ollama: GIN access lines, `slog` server lines, and API response objects.

`[GIN] 2024/12/12 - 00:40:39 | 500 |  4.709180529s |  10.0.0.123 | POST     "/api/chat"` is written
when a request completes, so on an inference path (`/api/chat`, `/api/generate`, `/v1/...`) it is
one finished request with its end-to-end latency (a Go duration: `36.185µs`, `8m44s`, `0s`) and
its outcome from the status; on every path it is one HTTP access record. Token counts and
timings exist only in API responses (`"done":true` objects; durations in integer nanoseconds),
which an application may log as JSON lines.

Accounting: the GIN line is the request. Ollama answers 200 as soon as a stream starts, so a client
that goes away shows as `aborting completion request due to client closing the connection` next
to its GIN line (before or after it): the pair is one `aborted` request. Older Ollama ran llama.cpp's
server as its runner and its timing blocks appear in the same stream: they are the same requests
and are not counted again (Ollama is the stream's front door). `error loading llama server`, a
runner that terminated, and a Go crash dump (`SIGSEGV: ...`, or on Windows `Exception 0xc0000005
...`, and the goroutine dump after it) are server incidents; the dump's lines (frames, registers of
amd64 and arm64) belong to the crash.
"""

from __future__ import annotations

from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import access_request, bound_path, http_record
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
_ABORT = "aborting completion request due to client closing the connection"
#: a Go crash's first line; `Exception 0x...` is the Windows one (the exception code and addresses)
_CRASH = ("SIGSEGV:", "SIGABRT:", "SIGBUS:", "SIGILL:", "SIGFPE:", "fatal error:", "panic:", "unexpected fault",
          "Exception 0x")
#: register names of a Go crash dump besides `r0`..`r29` (amd64's r8-r15, arm64's r0-r29)
_REGISTERS = frozenset({"rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp", "rip", "rflags", "cs", "fs", "gs",
                        "pc", "lr", "sp", "fault", "trap", "err", "addr", "oldmask", "x0"})
#: how many lines an unmatched GIN line or abort line waits for its other half
PAIR_WINDOW = 20


def _go_frame(text: str) -> bool:
    """A line only a Go crash dump has: a frame's location (`file.go:55 +0x25 fp=0x...`), a call with
    pointer arguments (`net.(*conn).Read(0xc000232720, ...)`), `created by ... in goroutine N`, a
    goroutine header."""
    if text.startswith("goroutine ") and text.endswith("]:"):
        return True
    if text.startswith("created by ") and " in goroutine " in text:
        return True
    if ".go:" in text and " +0x" in text:
        return True
    return text.endswith(")") and "(0x" in text and " " not in text.split("(", 1)[0]


def _go_dump_line(text: str) -> bool:
    """Any line of a Go crash dump, once one is known to be under way (register values too)."""
    if _go_frame(text) or text.startswith(("PC=", "signal arrived", "...additional frames", "goroutine ")):
        return True
    head, sep, val = text.partition(" ")
    register = head in _REGISTERS or (head[:1] == "r" and head[1:].isdigit())
    return bool(sep) and register and val.lstrip().startswith("0x")


class OllamaAdapter(Adapter):
    """Ollama's access and server lines, and its `/api/chat` / `/api/generate` responses."""

    name = "ollama"
    provider = "ollama"
    wants_obj = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.held: dict[str, Any] | None = None  # a successful GIN request that an abort line may follow
        self.held_age = 0
        self.aborts = 0  # abort lines still waiting for their GIN line
        self.aborts_age = 0
        self.dump = False  # inside a Go crash dump

    def parse_text(self, text: str) -> Any:
        out = self._age()
        res = self._text(text)
        if not out:
            return res
        if res is None or res is IGNORED:
            return out  # the held request goes out with this line (which no adapter may claim else)
        return out + (res if type(res) is list else [res])

    def _age(self) -> list[dict[str, Any]]:
        """Release a held request, and forget an unmatched abort, once their window has passed."""
        if self.aborts:
            self.aborts_age += 1
            if self.aborts_age > PAIR_WINDOW:
                self.aborts = 0
        if self.held is not None:
            self.held_age += 1
            if self.held_age > PAIR_WINDOW:
                held, self.held = self.held, None
                return [held]
        return []

    def _mark(self) -> None:
        self.shared["server"] = self.provider
        self.shared["front_door"] = self.provider

    def _text(self, text: str) -> Any:
        c = text[:1]
        if c == "[":
            if text.startswith("[GIN] "):
                self._mark()
                self.dump = False
                return self._gin(text)
            if text.startswith("[GIN-debug] "):
                self._mark()
                return IGNORED
            return None
        if c == "t":
            if text.startswith("time=") and (i := text.find(" level=", 5, 60)) > 0:
                lv = text[i + 7: text.find(" ", i + 7, i + 20)]
                level = _SLOG_LEVELS.get(lv)
                if level is not None and " source=" in text[i: i + 40]:
                    self._mark()
                    self.dump = False
                    return self._slog(text, level)
            return None
        if c.isdigit() and text[4:5] == "/" and text[7:8] == "/" and ".go:" in text[19:60]:
            self._mark()
            return IGNORED  # pre-slog `2023/10/06 13:38:58 routes.go:572: ...`
        if text.startswith(("- using env:", "- using code:")) and self.shared.get("server") == self.provider:
            return IGNORED  # the rest of GIN's debug-mode banner
        if text.startswith(_CRASH) and self.shared.get("server") == self.provider:
            self.dump = True
            return [{"kind": "log", "provider": self.provider, "level": "ERROR", "error_type": "engine_dead"},
                    {"kind": "server_error", "provider": self.provider, "error_type": "engine_dead"}]
        if _go_frame(text) or ((self.dump or self.shared.get("server") == self.provider) and _go_dump_line(text)):
            self.dump = True
            return IGNORED  # a line of a crash dump (the crash was counted at its first line)
        return None

    def _slog(self, text: str, level: str) -> Any:
        log: dict[str, Any] = {"kind": "log", "provider": self.provider, "level": level}
        if _ABORT in text:
            held = self.held
            if held is not None:  # its GIN line came first
                self.held = None
                held["outcome"], held["error_type"] = "aborted", ""
                return [held, log]
            if self.aborts < PAIR_WINDOW:
                self.aborts += 1
                self.aborts_age = 0
            return log
        if level != "ERROR":
            return log
        scope, cls = errors.classify_event(text[text.find(" msg=") + 1:])  # the message on (all: no msg=)
        log["error_type"] = cls
        if scope == errors.INCIDENT:
            return [log, {"kind": "server_error", "provider": self.provider, "error_type": cls}]
        return log

    def flush(self) -> list[dict[str, Any]]:
        held, self.held = self.held, None
        self.aborts = 0
        return [held] if held is not None else []

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
        if op is None:
            return recs
        rec = access_request(self.provider, op, code, dur)
        counted = self.shared.get("engine_counted")
        if counted and rec["outcome"] == "success":
            self.shared["engine_counted"] = counted - 1  # its runner's timing block came first and counted it
            return recs
        if self.aborts and rec["outcome"] == "success":  # its abort line came first
            self.aborts -= 1
            rec["outcome"] = "aborted"
            recs.append(rec)
        elif rec["outcome"] == "success" and op != "embeddings":
            if self.held is not None:
                recs.append(self.held)  # the one before had no abort line: it stands as it is
            self.held, self.held_age = rec, 0
        else:
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
