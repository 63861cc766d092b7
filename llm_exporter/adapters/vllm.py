"""vLLM (V0 and V1): engine stats lines, per-request lines, uvicorn access lines, error records.

A line is `[(Proc pid=N) ...] LEVEL MM-DD HH:MM:SS [file:line] message` (before ~v0.8 without the
`[`), a uvicorn access line, a raw stderr line behind the process prefix, or, under a JSON
logging config, a JSON object (possibly still behind the process prefix). The header is parsed
by position; the message is then matched by its fixed start (`Received request `, `Engine 000: `,
...) and read from the right where it carries a prompt or an output, so nothing in a payload is
ever matched by a pattern.

Multi-line records are counted once: vLLM repeats the header on every line of a traceback, so
consecutive WARNING/ERROR lines with the same header whose message looks like a traceback line
belong to the record before them; raw `Traceback` blocks behind a process prefix likewise. The
held record is handed out when the next record starts, or by `flush()`.

Requests: an end line (`Generated response ... finish_reason: X`, `Finished request`, `Aborted
request`) counts one request. When the start line (`Received request` / `Added request`) of the
same id was seen, the duration is the difference of our own receive times. That per-id state is
an LRU bounded by `MAX_TRACKED`; evictions are counted in `evicted`. Ids never become labels.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter, json_object

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_STARTS = ("(", "DEBUG ", "INFO", "WARNING ", "ERROR ", "CRITICAL ")
MAX_TRACKED = 10_000
MAX_ID = 128
_TRACE_STARTS = ("Traceback", "During handling", "The above exception", "^")
_STAT_KEYS = {
    "Avg prompt throughput": "prompt_tps",
    "Avg generation throughput": "generation_tps",
    "Running": "running",
    "Swapped": "swapped",
    "Pending": "waiting",
    "Waiting": "waiting",
    "Prefix cache hit rate": "prefix_cache_hit",
}
_JSON_KEYS = frozenset({"message", "exc_info", "levelname", "asctime", "name", "processName", "process",
                        "vllm_process_name", "filename", "lineno", "funcName", "thread", "threadName",
                        "stack_info", "exc_text", "taskName"})


class _Pending:
    """A multi-line record being collected."""

    __slots__ = ("error_class", "first", "key", "level")

    def __init__(self, key: str, level: str, first: str) -> None:
        self.key, self.level, self.first = key, level, first
        self.error_class = errors.OTHER

    def add(self, msg: str) -> None:
        m = msg.strip()
        if errors.exception_name(m) is not None:
            cls = errors.classify_exception(m)
            if cls != errors.OTHER:
                self.error_class = cls


def _is_continuation(msg: str) -> bool:
    return (not msg or msg[0] in " \t)]}" or msg.startswith(_TRACE_STARTS)
            or errors.exception_name(msg) is not None)


def _pct(v: str) -> float | None:
    v = v.strip().rstrip(".").strip()
    if not v.endswith("%"):
        return None
    try:
        f = float(v[:-1]) / 100.0
    except ValueError:
        return None
    return f if 0.0 <= f <= 1.0 else None


def _num(v: str) -> float | None:
    v = v.strip().rstrip(".").split(" ", 1)[0]
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f >= 0 and f == f and f != float("inf") else None


class VllmAdapter(Adapter):
    """vLLM's own log lines, its uvicorn access lines, and its JSON logging records."""

    name = "vllm"
    provider = "vllm"
    wants_obj = True
    #: receive-time clock for request durations (monotonic; tests replace it)
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.model = ""
        self.seen = False  # a vLLM line was seen on this source (names the provider of bare access lines)
        self.requests: OrderedDict[str, list[Any]] = OrderedDict()  # id -> [start, ended, out_tokens|None]
        self.evicted = 0
        self.pending: _Pending | None = None

    # -- entry points ----------------------------------------------------------------------------

    def parse_text(self, text: str) -> Any:
        if not text.startswith(_STARTS):
            if text[:1].isdigit() and (i := text.find(" uvicorn.access ", 10, 40)) > 0:
                return parse_uvicorn(text[i + 16:], "vllm" if self.seen else "")  # a custom access format
            return None
        prefix = ""
        rest = text
        while rest.startswith("("):
            j = rest.find(") ", 1, 120)
            if j < 0 or "pid=" not in rest[1:j]:
                break
            prefix = rest[: j + 1]
            rest = rest[j + 2:].lstrip()
        if rest.startswith("INFO:  ") or rest.startswith(("WARNING:  ", "ERROR:    ")):
            rec = parse_uvicorn(rest, "vllm" if (self.seen or prefix) else "")
            if rec is None:
                return IGNORED  # uvicorn's own lines (startup, shutdown)
            out = self._close()
            return [*out, rec] if out else rec
        sp = rest.find(" ")
        level = rest[:sp] if 0 < sp <= 8 else ""
        if level not in LEVELS:
            if prefix:
                if rest.startswith("{"):
                    obj = json_object(rest)
                    if obj is not None:
                        res = self._json(obj)
                        return IGNORED if res is None else res
                return self._raw(prefix, rest)
            return None
        ts = rest[sp + 1: sp + 15]
        if len(ts) != 14 or not (ts[0:2].isdigit() and ts[2] == "-" and ts[5] == " " and ts[8] == ":"):
            return None
        j = rest.find("] ", sp + 15, sp + 200)
        if j < 0:
            if rest.endswith("]"):
                j = len(rest) - 1
            else:
                return None
        self.seen = True
        key = prefix + rest[:j]
        msg = rest[j + 2:]
        return self._record(level, msg, key)

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        if obj is None:
            return None
        msg = obj.get("message")
        if type(msg) is not str:
            return None
        name = obj.get("name")
        ours = (type(name) is str and name.startswith("vllm")) or "vllm_process_name" in obj
        if not ours and not obj.keys() <= _JSON_KEYS:
            return None
        res = self._json(obj, sure=ours)
        if res is None:
            return None
        self.seen = True
        return res

    def flush(self) -> list[dict[str, Any]]:
        return self._close()

    # -- records ---------------------------------------------------------------------------------

    def _json(self, obj: dict[str, Any], sure: bool = True) -> Any:
        """A python-json-logger record; None when nothing marks it as vLLM's."""
        msg = obj.get("message")
        if type(msg) is not str:
            return None
        lv = obj.get("levelname")
        level = lv.upper() if type(lv) is str and lv.upper() in LEVELS else ""
        exc = obj.get("exc_info")
        if exc and not level:
            level = "ERROR"
        out = self._close()
        recs = self._message(level or "INFO", msg)
        if recs is None:
            if not (sure or exc):
                return out or None
            recs = []
        if level:
            if type(exc) is str and level in ("ERROR", "CRITICAL", "WARNING"):
                p = _Pending("", level, msg)
                for ln in exc.splitlines()[-20:]:
                    p.add(ln)
                recs.extend(self._emit(p))
            else:
                recs.append({"kind": "log", "provider": self.provider, "level": level})
        return out + recs

    def _record(self, level: str, msg: str, key: str) -> Any:
        p = self.pending
        if p is not None and p.key == key and _is_continuation(msg):
            p.add(msg)
            return []
        out = self._close()
        if level in ("WARNING", "ERROR", "CRITICAL"):
            self.pending = _Pending(key, level, msg)
            self.pending.add(msg)
            return out
        recs = self._message(level, msg) or []
        recs.append({"kind": "log", "provider": self.provider, "level": level})
        return out + recs if out else recs

    def _raw(self, prefix: str, rest: str) -> Any:
        """A line behind a process prefix with no level: stderr output (tracebacks, warnings)."""
        p = self.pending
        key = prefix + " raw"
        if p is not None and p.key == key:
            p.add(rest)
            return []
        if rest.startswith("Traceback"):
            out = self._close()
            self.pending = _Pending(key, "ERROR", rest)
            return out
        return IGNORED

    def _close(self) -> list[dict[str, Any]]:
        p = self.pending
        if p is None:
            return []
        self.pending = None
        return self._emit(p)

    def _emit(self, p: _Pending) -> list[dict[str, Any]]:
        log: dict[str, Any] = {"kind": "log", "provider": self.provider, "level": p.level}
        if p.level == "WARNING":
            return [log]
        cls = p.error_class
        if cls == errors.OTHER:
            cls = errors.classify_exception(p.first.strip())
        log["error_type"] = cls
        if cls == errors.OTHER:
            return [log]
        return [log, {"kind": "request", "provider": self.provider, "operation": "", "model": self.model,
                      "outcome": "error", "error_type": cls}]

    def _message(self, level: str, msg: str) -> list[dict[str, Any]] | None:
        """Records carried by one message (None: not a message vLLM is known to write)."""
        c = msg[:1]
        if c == "R" and msg.startswith("Received request "):
            self._start(msg[17:].split(":", 1)[0].split(" ", 1)[0])
            return []
        if c == "A":
            if msg.startswith("Added request "):
                self._start(_id(msg[14:]))
                return []
            if msg.startswith("Aborted request"):
                ids = msg[19:] if msg.startswith("Aborted request(s) ") else msg[16:]
                out = []
                for rid in ids.split(","):
                    r = self._end(_id(rid.strip()), "aborted", None, None)
                    if r is not None:
                        out.append(r)
                return out
            if msg.startswith("Avg prompt throughput: "):
                return self._stats(msg, "")
        if c == "G" and msg.startswith("Generated response "):
            return self._generated(msg)
        if c == "F" and msg.startswith("Finished request "):
            r = self._end(_id(msg[17:]), "success", None, None)
            return [r] if r is not None else []
        if c == "E" and msg.startswith("Engine "):
            num, sep, rest = msg[7:].partition(": ")
            if sep and num.isdigit() and rest.startswith("Avg prompt throughput: "):
                return self._stats(rest, str(int(num)))
        if c.isdigit():
            _, sep, rest = msg.partition(" Engines Aggregated: ")
            if sep and rest.startswith("Avg prompt throughput: "):
                return self._stats(rest, "all")
        if c == "P" and msg.startswith("Prefix cache hit rate: GPU: "):
            v = _pct(msg[28:].split(",", 1)[0])
            if v is not None:
                return [{"kind": "stats", "provider": self.provider, "model": self.model, "engine": "",
                         "prefix_cache_hit": v}]
        if c == "I" and msg.startswith("Initializing") and (i := msg.find("served_model_name=")) >= 0:
            name = msg[i + 18: i + 18 + 200].split(",", 1)[0].strip()
            if name and name != "None":
                self.model = name
        return None

    def _stats(self, msg: str, engine: str) -> list[dict[str, Any]]:
        rec: dict[str, Any] = {"kind": "stats", "provider": self.provider, "model": self.model,
                               "engine": engine}
        gpu_kv = cpu_kv = None
        for part in msg.split(", "):
            k, sep, v = part.partition(": ")
            if not sep:
                continue
            if k == "GPU KV cache usage":
                gpu_kv = _pct(v)
            elif k == "CPU KV cache usage":
                cpu_kv = _pct(v)
            else:
                f = _STAT_KEYS.get(k)
                if f is not None:
                    rec[f] = _pct(v) if f == "prefix_cache_hit" else _num(v)
        kv = gpu_kv if gpu_kv is not None else cpu_kv
        if kv is not None:
            rec["kv_cache_usage"] = kv
        return [rec]

    def _generated(self, msg: str) -> list[dict[str, Any]]:
        rid_part = msg[19: 19 + MAX_ID + 24]
        rid = rid_part.split(" ", 1)[0].rstrip(":")
        delta = rid_part[len(rid):].startswith(" (streaming delta)")
        head, sep, fr = msg.rpartition(", finish_reason: ")
        if not sep:
            return []
        fr = fr.strip()
        ntok: int | None = None
        if head.endswith("]"):
            k = head.rfind(", output_token_ids: [")
            if k >= 0:
                ids = head[k + 21: -1].strip()
                ntok = ids.count(",") + 1 if ids else 0
        st = self.requests.get(rid[:MAX_ID])
        if delta:
            if st is None:
                st = self._start(rid, known=False)
            if ntok is not None:  # newer versions log no token ids: then no token count at all
                st[2] = (st[2] or 0) + ntok
            if fr in ("None", "", "streaming_complete"):
                return []
            ntok = st[2]
        elif fr in ("None", "", "streaming_complete"):
            if st is not None and st[1]:
                return []
            if st is not None and st[2] is not None:
                ntok = st[2]
            fr = ""
        outcome = "aborted" if fr == "abort" else "success"
        r = self._end(rid, outcome, fr or None, ntok)
        return [r] if r is not None else []

    # -- request state ---------------------------------------------------------------------------

    def _start(self, rid: str, known: bool = True) -> list[Any]:
        rid = rid[:MAX_ID]
        st = self.requests.get(rid)
        if st is None:
            st = self.requests[rid] = [self.clock() if known else None, False, None]
            if len(self.requests) > MAX_TRACKED:
                self.requests.popitem(last=False)
                self.evicted += 1
        return st

    def _end(self, rid: str, outcome: str, finish: str | None, ntok: int | None) -> dict[str, Any] | None:
        rid = rid[:MAX_ID]
        if not rid:
            return None
        st = self.requests.get(rid)
        if st is not None:
            if st[1]:
                return None  # already counted (a later line of the same request)
            st[1] = True
            self.requests.move_to_end(rid)
        else:
            self.requests[rid] = [None, True, None]
            if len(self.requests) > MAX_TRACKED:
                self.requests.popitem(last=False)
                self.evicted += 1
        rec: dict[str, Any] = {"kind": "request", "provider": self.provider, "operation": _operation(rid),
                               "model": self.model, "outcome": outcome, "error_type": "",
                               "request_id": rid}
        if finish:
            rec["finish_reason"] = finish
        if ntok is not None and outcome == "success":
            rec["output_tokens"] = ntok
        if st is not None and st[0] is not None:
            rec["duration_s"] = max(0.0, self.clock() - st[0])
        return rec


def _id(s: str) -> str:
    return s.split(" ", 1)[0].rstrip(".").strip()


def _operation(rid: str) -> str:
    if rid.startswith("chatcmpl-"):
        return "chat"
    if rid.startswith("cmpl-"):
        return "text_completion"
    if rid.startswith("embd-"):
        return "embeddings"
    return ""

