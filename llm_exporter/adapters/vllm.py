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

Requests (docs/formats.md has the full accounting model): one HTTP request on an inference path is
one request, counted once. At vLLM's default settings its uvicorn access line is all there is: the
request ends there, outcome by status, operation by path, no latency. Under --enable-log-requests
a request id (`Received request ID`; the engine's `Added request ID-xxxxxxxx`, `N_ID` for n>1 and
`ID-N` for batch prompts fold into it) is counted by its own end line (`Generated response`,
`Finished request`, `Aborted request`, `Request ID aborted/failed (...)`) with its duration between
our receive times, or, when vLLM prints no end line for it (completions, output logging off), by
its access line. Access and id lines share no id, so an access line pairs with the oldest request
of its operation still awaiting one: one already counted by its end line (the access line then
counts nothing more), else one not yet ended (a 2xx ends it, or, for a chat stream whose output
vLLM logs, waits for its end line); an access line left over is a request with no id line (a 404
for an unknown model, a 400 refused before logging) and counts itself. Pairing may swap details
between concurrent requests, never the counts. The per-id table is the start/end pairing table the
`--config` rules use (`llm_exporter.pairing.OpenTable`), an LRU bounded by `MAX_TRACKED`; its
evictions are counted in `llm_exporter_open_requests_evicted_total`; ids never become labels.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter, json_object, nonneg
from llm_exporter.pairing import OpenTable, evicted_record

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_STARTS = ("(", "DEBUG ", "INFO", "WARNING ", "ERROR ", "CRITICAL ")
MAX_TRACKED = 10_000
MAX_ID = 128
#: seconds a request whose access line came may wait for its end line before it is counted anyway
STREAM_GRACE = 300.0
#: stats lines showing traffic, with no access or request line, before saying why nothing is counted
STATS_BEFORE_HINT = 3
#: requests counted from access lines alone before saying why they carry no latency (a log cut
#: just after a request's own lines would otherwise be mistaken for vLLM's default settings)
ACCESS_BEFORE_HINT = 3
#: lines after an error record within which a failed request's access line takes its class
ERROR_CLASS_LINES = 200
#: bare access lines kept until a vLLM line says whose they are
MAX_UNKNOWN = 64
#: lines after an abort within which a 5xx access line is that aborted request's own (vLLM before
#: 0.8 aborts a request the engine failed, then answers 500)
ABORT_LINES = 3
# where a tracked request stands: received; counted by its own end line, access line still to come;
# access line seen, end line awaited (a stream); counted and paired (kept so late lines count nothing)
_OPEN, _ENDED, _WAIT, _DONE = 0, 1, 2, 3
#: inference paths and their operation; an access line on one of them is one finished request
_PATH_OPS = {
    "/v1/chat/completions": "chat", "/v1/responses": "chat", "/v1/messages": "chat",
    "/v1/completions": "text_completion", "/v1/embeddings": "embeddings",
    "/v1/score": "score", "/score": "score", "/v1/rerank": "rerank", "/v2/rerank": "rerank",
    "/rerank": "rerank", "/pooling": "pooling", "/classify": "classify",
    "/v1/audio/transcriptions": "transcription", "/v1/audio/translations": "translation",
}
#: vLLM's request id prefixes (the serving layer's) and their operation
_ID_OPS = (("chatcmpl-", "chat"), ("chat-", "chat"), ("cmpl-", "text_completion"), ("resp_", "chat"), ("resp-", "chat"),
           ("embd-", "embeddings"), ("score-", "score"), ("rerank-", "rerank"), ("pooling-", "pooling"),
           ("classify-", "classify"), ("transcribe-", "transcription"), ("translate-", "translation"))
_NOT_INFERENCE = ("tokenize-", "detokenize-")
#: operations whose requests vLLM ends with a `Generated response` line under --enable-log-outputs
_OUTPUT_OPS = frozenset({"chat"})
#: what an output line may say after its id (`--enable-log-outputs`; DEBUG adds the token ids)
_DELTA, _COMPLETE, _DETAILS = " (streaming delta)", " (streaming complete)", " details: output_token_ids: "
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
                        "stack_info", "exc_text", "taskName", "color_message"})


class _Pending:
    """A multi-line record being collected."""

    __slots__ = ("error_class", "first", "incident", "key", "level")

    def __init__(self, key: str, level: str, first: str) -> None:
        self.key, self.level, self.first = key, level, first
        self.error_class = errors.OTHER
        # the engine's own process failed, or a line says the engine died: a server incident
        self.incident = "EngineCore" in key or "Worker" in key or errors.classify_event(first)[0] == errors.INCIDENT

    def add(self, msg: str) -> None:
        m = msg.strip()
        if errors.exception_name(m) is not None:
            cls = errors.classify_exception(m)
            if cls != errors.OTHER:
                self.error_class = cls
            if not self.incident and errors.classify_event(m)[0] == errors.INCIDENT:
                self.incident = True


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
    """A figure as vLLM prints it: the first word, a sentence's closing dot dropped."""
    return nonneg(v.strip().rstrip(".").split(" ", 1)[0])


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
        self.requests: OpenTable[_Req] = OpenTable(MAX_TRACKED)  # request key -> state (LRU, bounded)
        self.unpaired: dict[str, OrderedDict[str, None]] = {}  # operation -> keys awaiting their access line
        self.waiting: dict[str, OrderedDict[str, None]] = {}  # operation -> keys awaiting their end line
        self.id_lines = False  # request-id lines (--enable-log-requests) seen on this stream
        self.outputs_logged = False  # `Generated response` lines (--enable-log-outputs) expected
        self.hinted = False  # the why-no-metric advice was handed out
        self.access_requests = False  # an access line on an inference path was seen
        self.busy_stats = 0  # stats lines showing traffic while no request line was seen
        self.carry: dict[str, Any] | None = None  # a record made on the way by _end, for its caller
        self.seq = 0  # request events so far: which request moved last
        self.lines = 0  # lines offered to this adapter
        self.error_class = ""  # the class of the last error record, for the failed request's access line
        self.error_class_at = 0  # ... and the line it came on
        self.access_only = 0  # requests counted from access lines while no request-id line was seen
        self.orphan: tuple[str, int] | None = None  # (operation, line) of the last such 2xx
        self.unknown: list[dict[str, Any]] = []  # access lines seen before any line named the server
        self.aborting: OrderedDict[str, int] = OrderedDict()  # aborted requests -> line (a 5xx may follow)
        self.paired_ended: dict[str, OrderedDict[str, None]] = {}  # op -> ended requests an access line took
        self.pending: _Pending | None = None
        self.spill: list[dict[str, Any]] = []  # records made on the way by _end (evictions), for the line

    # -- entry points ----------------------------------------------------------------------------

    def parse_text(self, text: str) -> Any:
        res = self._parse_text(text)
        return self._spilled(res) if self.spill else res

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        res = self._parse_json(obj)
        return self._spilled(res) if self.spill else res

    def _spilled(self, res: Any) -> Any:
        """A line's result with the records `_end` made on the way (kept for the next request line
        when this one is no request of its own)."""
        if res is None or res is IGNORED:
            return res
        out = [*(res if type(res) is list else [res]), *self.spill]
        self.spill = []
        return out

    def _parse_text(self, text: str) -> Any:
        self.lines += 1
        res = self._text(text)
        return self._with_due(res) if self.aborting else res

    def _text(self, text: str) -> Any:
        if not text.startswith(_STARTS):
            if text[:1].isdigit() and (i := text.find(" uvicorn.access ", 10, 40)) > 0:
                rec = parse_uvicorn(text[i + 16:], "vllm" if self.seen else "")  # a custom access format
                return None if rec is None else self._access(rec)
            if text.startswith("uvicorn.access "):  # the same, its timestamp peeled by the envelope
                rec = parse_uvicorn(text[15:], "vllm" if self.seen else "")
                return None if rec is None else self._access(rec)
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
            res = self._access(rec)
            if not out:
                return res
            return [*out, *res] if type(res) is list else [*out, res]
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
        key = prefix + rest[:j]
        msg = rest[j + 2:]
        if not self.seen:
            self.seen = True
            self.shared["server"] = "vllm"  # the other adapters then leave its bare access lines alone
            claimed = self._claim()
            if claimed:
                return [*claimed, *self._record(level, msg, key)]
        return self._record(level, msg, key)

    def _parse_json(self, obj: dict[str, Any] | None) -> Any:
        if obj is None:
            return None
        self.lines += 1
        res = self._json_line(obj)
        return self._with_due(res) if self.aborting else res

    def _with_due(self, res: Any) -> Any:
        """A line's records plus the aborts now past the window in which their 5xx could come."""
        if res is None or res is IGNORED or res == IGNORED:
            return res  # (a line that carries nothing keeps its outcome; they go with the next one)
        due = self._due_aborts(self.lines - ABORT_LINES)
        if not due:
            return res
        return [*res, *due] if type(res) is list else [res, *due]

    def _json_line(self, obj: dict[str, Any]) -> Any:
        msg = obj.get("message")
        if type(msg) is not str:
            return None
        name = obj.get("name")
        if type(name) is str and name.startswith("uvicorn") and (
                "vllm_process_name" in obj or obj.keys() <= _JSON_KEYS):
            # vLLM's JSON logging config formats uvicorn's records too: `IP:PORT - "POST /p HTTP/1.1" 200`
            if name != "uvicorn.access":
                return IGNORED
            rec = parse_uvicorn(msg, "vllm" if self.seen or "vllm_process_name" in obj else "")
            return IGNORED if rec is None else self._access(rec)
        ours = (type(name) is str and name.startswith("vllm")) or "vllm_process_name" in obj
        if not ours and not obj.keys() <= _JSON_KEYS:
            return None
        res = self._json(obj, sure=ours)
        if res is None:
            return None
        if not self.seen:
            self.seen = True
            self.shared["server"] = "vllm"
            claimed = self._claim()
            if claimed:
                return [*claimed, *res]
        return res

    def flush(self) -> list[dict[str, Any]]:
        return self._close() + self._stale_streams() + self._due_aborts(self.lines)

    def _claim(self) -> list[dict[str, Any]]:
        """The requests of the access lines seen before anything said they were vLLM's."""
        out: list[dict[str, Any]] = []
        unknown, self.unknown = self.unknown, []
        for rec in unknown:
            rec["provider"] = self.provider
            res = self._access(rec)
            out.extend(r for r in res if r["kind"] != "http")
        return out

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
        recs = self._message(msg)
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
        recs = self._message(msg) or []
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
        scope = errors.classify_event(p.first)[0]
        if p.incident and scope != errors.REQUEST:
            # the engine's own process failed: a server incident, never a failed request. With no
            # class from its lines, it is "engine_dead" (an incident line's own class, oom or
            # timeout, is the one classify_exception found above)
            if cls == errors.OTHER:
                cls = log["error_type"] = "engine_dead"
            self.error_class, self.error_class_at = cls, self.lines
            return [log, {"kind": "server_error", "provider": self.provider, "error_type": cls}]
        if cls != errors.OTHER:
            # not a request of its own: the failed request's access line (4xx/5xx) counts it, and
            # takes this class when its status says no more than "server error"
            self.error_class, self.error_class_at = cls, self.lines
        return [log]

    def _message(self, msg: str) -> list[dict[str, Any]] | None:
        """Records carried by one message (None: not a message vLLM is known to write)."""
        c = msg[:1]
        if c == "R":
            if msg.startswith("Received request "):
                rid = msg[17: 17 + MAX_ID + 2].split(":", 1)[0].split(" ", 1)[0]
                return self._received(rid, _prompt_tokens(msg), _lora_name(msg))
            if msg.startswith("Request "):
                return self._request_line(msg)
        if c == "A":
            if msg.startswith("Added request "):
                return self._received(_id(msg[14:]))
            if msg.startswith("Aborted request"):
                ids = msg[19:] if msg.startswith("Aborted request(s) ") else msg[16:]
                head = ids[: 40 * (MAX_ID + 1)]  # a bounded read: 40 ids of the longest length
                if len(head) < len(ids):
                    head = head.rpartition(",")[0]  # the id the bound cuts through is not read
                out = []
                for rid in head.split(","):
                    r = self._end(_id(rid.strip()), "aborted", None, None)
                    if r is not None:
                        out.append(r)
                return out
            if msg.startswith("Avg prompt throughput: "):
                return self._stats(msg, "")
        if c == "G" and msg.startswith("Generated response "):
            return self._generated(msg)
        if c == "F" and msg.startswith("Finished request "):
            # V0's end line, printed before a non-streamed response's access line and after a
            # stream's: it says nothing of which access line was its own
            r = self._end(_id(msg[17:]), "success", None, None, stream=None)
            return [r] if r is not None else []
        if c == "n" and msg.startswith("non-default args: "):
            if "'enable_log_outputs': True" in msg[:4000]:
                self.outputs_logged = True
            return None
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

    def _request_line(self, msg: str) -> list[dict[str, Any]]:
        """AsyncLLM's `Request ID aborted.`, `Request ID failed (engine dead).`, `Request ID failed
        (bad request): MESSAGE.`; DEBUG `Request ID details: prompt: ..., prompt_token_ids: [...]`."""
        rid, _, rest = msg[8: 8 + MAX_ID + 200].partition(" ")
        if rest.startswith("aborted"):
            r = self._end(rid, "aborted", None, None)
        elif rest.startswith("failed ("):
            why = rest[8:].split(")", 1)[0]
            # `(engine dead)` reads as engine_dead, `(bad request)` as validation unless its text
            # says more (out of memory, say)
            cls = errors.classify_message(msg[8 + len(rid):])
            r = self._end(rid, "error", None, None, cls, refused=why == "bad request")
            if self.carry is not None:
                out = [self.carry] if r is None else [self.carry, r]
                self.carry = None
                return out
        elif rest.startswith("details: "):
            key = self._resolve(rid)
            n = _prompt_tokens(msg)
            if key is not None and n is not None:
                self.requests[key].in_tokens = n
            return []
        else:
            return []
        return [r] if r is not None else []

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
        if (rec.get("generation_tps") or rec.get("prompt_tps")) and not (self.id_lines or self.access_requests):
            self.busy_stats += 1  # traffic, yet no line that names a request
            if self.busy_stats == STATS_BEFORE_HINT and not self.hinted:
                self.hinted = True
                return [rec, {"kind": "hint", "provider": self.provider, "hint": "vllm_stats_only"}]
        return [rec]

    def _generated(self, msg: str) -> list[dict[str, Any]]:
        self.outputs_logged = True
        # `Generated response ID[ (streaming delta)| (streaming complete)]: ...`: what follows the id
        # is read where the id ends, however long the id (a client's X-Request-Id may be long)
        end = msg.find(" ", 19)
        if end < 0:
            return []
        rid = msg[19:end].rstrip(":")
        mark = _DELTA if msg.startswith(_DELTA, end) else _COMPLETE if msg.startswith(_COMPLETE, end) else ""
        delta = mark == _DELTA
        head, sep, fr = msg.rpartition(", finish_reason: ")
        if not sep:
            # DEBUG `Generated response ID[ (streaming ...)] details: output_token_ids: [...]`
            i = end + len(mark)
            if not msg.startswith(_DETAILS, i):
                return []
            n = _count_ids(msg[i + len(_DETAILS):])
            known = self._resolve(rid)
            if n is not None and known is not None and mark != _COMPLETE:
                st = self.requests[known]
                st.out_tokens = (st.out_tokens or 0) + n if delta else n
            return []
        fr = fr.strip()
        ntok: int | None = None
        if head.endswith("]"):
            k = head.rfind(", output_token_ids: [")
            if k >= 0:
                ntok = _count_ids(head[k + 20:])
        key = self._resolve(rid)
        r = self.requests.get(key) if key is not None else None
        if delta and key is not None:
            self._stream(key)
        if delta:
            if ntok is not None and r is not None:  # newer versions log no token ids: then no count at all
                r.out_tokens = (r.out_tokens or 0) + ntok
            elif ntok is not None and fr in ("None", "", "streaming_complete"):
                self.spill.extend(self._received(rid))  # what starting it drops comes with the line
                key = self._resolve(rid)
                if key is not None:
                    self.requests[key].out_tokens = ntok
            if fr in ("None", "", "streaming_complete"):
                return []
            ntok = None  # the request's running total
        elif fr in ("None", "streaming_complete"):
            fr = ""
        outcome = "aborted" if fr == "abort" else "success"
        rec = self._end(rid, outcome, fr or None, ntok, stream=mark != "")
        out = [rec] if rec is not None else []
        if self.carry is not None:
            out.append(self.carry)
            self.carry = None
        return out

    # -- request state ---------------------------------------------------------------------------

    def _set(self, key: str, r: _Req, state: int) -> None:
        """Move a request to `state`, keeping the per-operation indexes in step: OPEN and ENDED
        requests await their access line (`unpaired`), WAIT ones their end line (`waiting`)."""
        r.state = state
        u = self.unpaired.setdefault(r.op, OrderedDict())
        w = self.waiting.setdefault(r.op, OrderedDict())
        if state in (_OPEN, _ENDED):
            u[key] = None
            w.pop(key, None)
        elif state == _WAIT:
            u.pop(key, None)
            w[key] = None
            r.waiting_since = self.clock()
        else:
            u.pop(key, None)
            w.pop(key, None)

    def _new(self, key: str, op: str, start: float | None) -> _Req:
        r = self.requests[key] = _Req(start, op, _OPEN)
        self._set(key, r, _OPEN)
        self.seq += 1
        r.seq = self.seq
        return r

    def _received(self, rid: str, in_tokens: int | None = None, adapter: str | None = None) -> list[dict[str, Any]]:
        """A request id's first line (`Received request`, `Added request`): remember it."""
        key = _key(rid)
        op = _operation(key)
        if op is None or not key:
            return []  # /tokenize and the like: not an inference request (nor a line with no id)
        first = not self.id_lines
        self.id_lines = True
        if self._resolve(rid) is not None:
            return []  # another prompt of a batch, or the engine's line for the same request
        r = self._new(key, op, self.clock())
        r.in_tokens, r.adapter = in_tokens, adapter
        o = self.orphan
        if first and o is not None and o[0] == op and self.lines - o[1] <= 2:
            # the log begins mid-way: a stream's access line (already counted) came just before
            # the first line of its request seen here
            r.by_access = True
            self._set(key, r, _DONE)
        self.orphan = None
        return self._bound()

    def _resolve(self, rid: str) -> str | None:
        """The key under which `rid` is tracked: vLLM's engine adds a `-xxxxxxxx` suffix to the
        serving id, `N_` for each of n>1 samples, and `-N` for each prompt of a completions batch."""
        rid = rid[:MAX_ID]
        if rid in self.requests:
            return rid
        base = rid
        i = base.find("_", 0, 6)
        if i > 0 and base[:i].isdigit():
            base = base[i + 1:]
            if base in self.requests:
                return base
        if len(base) > 9 and base[-9] == "-" and _is_hex(base[-8:]):
            base = base[:-9]
            if base in self.requests:
                return base
        k = _key(base)
        return k if k in self.requests else None

    def _stream(self, key: str) -> None:
        """A streaming line of `key`: a stream's access line comes before its first output, so if
        that line was paired with another request (still waiting), it was this one's."""
        r = self.requests[key]
        r.stream = True
        if r.state != _OPEN:
            return
        w = self.waiting.get(r.op)
        # the first access line after its start that another request holds (one whose own streaming
        # lines were seen holds its own)
        cands = [k for k in w or () if k != key and not self.requests[k].stream
                 and self.requests[k].access_seq > r.seq]
        other = min(cands, key=lambda k: self.requests[k].access_seq) if cands else None
        if other is not None:
            self._set(other, self.requests[other], _OPEN)
            self._set(key, r, _WAIT)
            return
        p = self.paired_ended.get(r.op)
        while p:  # else it was taken as the access line of a request ended by its own lines
            other, _ = p.popitem()
            o = self.requests.get(other)
            if o is not None and o.state == _DONE:
                self._set(other, o, _ENDED)
                self._set(key, r, _WAIT)
                return

    def _end(self, rid: str, outcome: str, finish: str | None, ntok: int | None,
             error_type: str = "", refused: bool = False, stream: bool | None = False) -> dict[str, Any] | None:
        """A line that ends request `rid` (output, abort, failure): its record, once per request.
        `refused`: it failed before any response began; `stream`: a streaming output line (None:
        the line does not say, as V0's `Finished request`)."""
        if not rid:
            return None
        key = self._resolve(rid)
        if key is None:
            key = _key(rid[:MAX_ID])
            op = _operation(key)
            if op is None:
                return None
            self.id_lines = True
            r = self._new(key, op, None)
            self.spill.extend(self._bound())
        else:
            r = self.requests[key]
        if stream:
            self._stream(key)
        if r.state == _WAIT or (r.state == _DONE and r.by_access):
            # a 2xx access line was paired with it. Was it its own? Not when it was refused, nor
            # when a non-streamed output ends it now (that access line follows its output); maybe
            # not when it failed or was aborted with no streaming line seen
            sure = refused or (outcome == "success" and stream is False)
            if sure or (outcome != "success" and not r.stream):
                moved, self.carry = self._reassign_access(key, r, keep=not sure)
                if moved or sure:
                    r.by_access = False
                    self._set(key, r, _OPEN)
        if r.state in (_ENDED, _DONE):
            return None  # already counted (n>1 outputs, `(streaming complete)` after the last delta)
        self.requests.move_to_end(key)
        if r.state == _WAIT:
            self._set(key, r, _DONE)  # its access line came already
        elif outcome == "aborted":
            # the client went away (no access line then), or vLLM aborted a request that failed
            # (its 5xx access line follows at once): an error access line soon after is its own
            r.error, r.aborted_at = True, self.lines
            self._set(key, r, _ENDED)
        else:
            r.error = outcome == "error"
            self._set(key, r, _ENDED)  # its access line is still to come
            self.seq += 1
            r.seq = self.seq
        rec = self._request(r.op, outcome, error_type, key, r)
        if finish:
            rec["finish_reason"] = finish
        if ntok is None:
            ntok = r.out_tokens
        if ntok is not None and outcome == "success":
            rec["output_tokens"] = ntok
        if r.in_tokens is not None:
            rec["input_tokens"] = r.in_tokens
        if r.start is not None:
            rec["duration_s"] = max(0.0, self.clock() - r.start)
        if r.aborted_at:
            r.held = rec  # counted once its window passes, or as the failure of the 5xx that follows
            self.aborting[key] = r.aborted_at
            return None
        return rec

    def _due_aborts(self, upto: int) -> list[dict[str, Any]]:
        """The held aborts from lines up to `upto`: no 5xx came for them, the client went away."""
        out: list[dict[str, Any]] = []
        while self.aborting:
            key, at = next(iter(self.aborting.items()))
            if at > upto:
                break
            del self.aborting[key]
            r = self.requests.get(key)
            if r is not None and r.held is not None:
                out.append(r.held)
                r.held = None
                self._set(key, r, _DONE)
        return out

    def _reassign_access(self, key: str, r: _Req, keep: bool) -> tuple[bool, dict[str, Any] | None]:
        """Hand the 2xx access line paired with `key` to the request it was: one of its operation
        that its own lines ended already (oldest), else one not yet ended (the newest: a stream's
        access line follows its start). With none: `keep` leaves it where it is; else it was a
        request with no id lines, counted now unless it was already. (moved?, record to add)"""
        q: dict[str, None] = self.unpaired.get(r.op) or {}
        at = r.access_seq  # only a request that moved before that access line can own it
        ended = next((k for k in q if k != key and self.requests[k].state == _ENDED
                      and not self.requests[k].error and self.requests[k].seq < at), None)
        if ended is not None:
            self._set(ended, self.requests[ended], _DONE)
            return True, None
        opened = next((k for k in reversed(q) if k != key and self.requests[k].state == _OPEN
                       and self.requests[k].seq < at), None)
        if opened is None:
            if keep or r.by_access:
                return False, None
            return False, self._request(r.op, "success", "", "")
        o = self.requests[opened]
        o.access_seq = at
        if r.by_access:
            o.by_access = True
            self._set(opened, o, _DONE)
        else:
            self._set(opened, o, _WAIT)
        return True, None

    def _access(self, rec: dict[str, Any]) -> Any:
        """An access line: always an HTTP record; on an inference path also the end of one request,
        unless it pairs with a request its id lines count (see the module docstring)."""
        op = _PATH_OPS.get(rec["path"])
        if op is None:
            return rec
        if rec["provider"] != "vllm":
            if len(self.unknown) < MAX_UNKNOWN:
                self.unknown.append(dict(rec))  # counted as vLLM's requests once a vLLM line names the server
            return rec
        self.access_requests = True
        code = int(rec["code"])
        q = self.unpaired.get(op)
        waits = self.outputs_logged and op in _OUTPUT_OPS
        key = None
        if q:
            want_error = code >= 400
            key = None
            for k in list(q):
                o = self.requests[k]
                if o.state != _ENDED:
                    continue
                if o.aborted_at and (code < 500 or self.lines - o.aborted_at > ABORT_LINES):
                    continue
                if o.error == want_error:
                    key = k
                    break
            if not want_error:
                # a request not yet ended: with its output logged, a stream just begun (the newest);
                # else one vLLM prints no end line for (the oldest)
                opened = (k for k in (reversed(q) if waits else q) if self.requests[k].state == _OPEN)
                other = next(opened, None)
                # an access line follows its request's last line: the request that moved last
                if other is not None and key is None:
                    key = other
        out: list[dict[str, Any]] = [rec]
        if key is not None:
            r = self.requests[key]
            self.seq += 1
            r.access_seq = self.seq
            if r.state == _ENDED:
                self._set(key, r, _DONE)  # counted by its own lines already
                if r.held is not None:  # an abort, then its 500: one failed request
                    held, r.held = r.held, None
                    self.aborting.pop(key, None)
                    held["outcome"], held["error_type"] = "error", self._status_class(code)
                    out.append(held)
                if not r.error:
                    p = self.paired_ended.setdefault(op, OrderedDict())
                    p[key] = None
                    if len(p) > 64:
                        p.popitem(last=False)
            elif waits:
                self._set(key, r, _WAIT)  # a stream: its end line (finish reason, latency) comes later
            else:
                r.by_access = True  # vLLM prints no end line for it: the access line ends it
                self._set(key, r, _DONE)
                out.append(self._request(op, "success", "", key, r))
            return out
        if code >= 400:
            out.append(self._request(op, "error", self._status_class(code), ""))
        else:
            out.append(self._request(op, "success", "", ""))
            if not self.id_lines:
                self.orphan = (op, self.lines)
        if not self.id_lines:
            self.access_only += 1
            if self.access_only == ACCESS_BEFORE_HINT and not self.hinted:
                self.hinted = True
                out.append({"kind": "hint", "provider": self.provider, "hint": "vllm_access_log_only"})
        return out

    def _status_class(self, code: int) -> str:
        """A failed request's class from its status, or from the error record just before it when
        the status says only "server error" (e.g. a 500 after an out-of-memory record)."""
        cls = errors.from_http_status(code)
        if cls == errors.OTHER and self.error_class and self.lines - self.error_class_at <= ERROR_CLASS_LINES:
            cls = self.error_class
        self.error_class = ""
        return cls

    def _request(self, op: str, outcome: str, error_type: str, rid: str, r: _Req | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": "request", "provider": self.provider, "operation": op,
                               "model": self.model, "outcome": outcome, "error_type": error_type}
        if rid:
            rec["request_id"] = rid
        if r is not None and r.in_tokens is not None:
            rec["input_tokens"] = r.in_tokens
        if r is not None and r.adapter:
            rec["adapter"] = r.adapter
        return rec

    @property
    def evicted(self) -> int:
        """Request ids dropped from the table while it was full."""
        return self.requests.evicted

    def _bound(self) -> list[dict[str, Any]]:
        """Drop the oldest ids past MAX_TRACKED (counted); a stream still awaiting its end line is
        counted now, and so is an abort still waiting to see whether a 5xx follows."""
        out: list[dict[str, Any]] = []
        n = 0
        for key, r in self.requests.evict():
            n += 1
            if r.state == _WAIT:
                out.append(self._request(r.op, "success", "", key, r))
            elif r.held is not None:
                out.append(r.held)
                r.held = None
                del self.aborting[key]
            self._set(key, r, _DONE)
        if n:
            out.append(evicted_record(self.provider, n))
        return out

    def _stale_streams(self) -> list[dict[str, Any]]:
        """Requests whose access line came STREAM_GRACE seconds ago and whose end line never did
        (a chat answer with no text prints none): counted then, without a finish reason."""
        out: list[dict[str, Any]] = []
        now = self.clock()
        for w in self.waiting.values():
            for key in [k for k in w if now - self.requests[k].waiting_since >= STREAM_GRACE]:
                r = self.requests[key]
                self._set(key, r, _DONE)
                out.append(self._request(r.op, "success", "", key, r))
        return out


class _Req:
    """One request id being tracked: when it started (our clock), its operation, where it stands."""

    __slots__ = ("aborted_at", "access_seq", "adapter", "by_access", "error", "held", "in_tokens", "op", "out_tokens",
                 "seq", "start", "state", "stream", "waiting_since")

    def __init__(self, start: float | None, op: str, state: int) -> None:
        self.start, self.op, self.state = start, op, state
        self.error = False
        self.by_access = False  # counted as a success at the 2xx access line paired with it
        self.seq = 0  # when it last started or ended
        self.access_seq = 0  # when the access line paired with it came
        self.aborted_at = 0  # the line its abort came on (an error access line may follow)
        self.held: dict[str, Any] | None = None  # its aborted record, until that is decided
        self.stream = False  # a streaming output line of it was seen
        self.in_tokens: int | None = None
        self.out_tokens: int | None = None
        self.waiting_since = 0.0
        self.adapter: str | None = None  # the LoRA adapter of its `Received request` line


def _lora_name(msg: str) -> str | None:
    """The LoRA adapter of a `Received request` line: `lora_request: LoRARequest(lora_name='x', ...)`,
    read from the right (the prompt before it is user text); None for `lora_request: None`, also when
    the prompt quotes a `LoRARequest(...)` of its own."""
    i = msg.rfind(", lora_request: ")
    if i < 0 or not msg.startswith("LoRARequest(", i + 16):
        return None
    j = msg.find("lora_name=", i + 28, i + 60)
    if j < 0:
        return None
    q = msg[j + 10: j + 11]
    if q not in ("'", '"'):
        return None
    k = msg.find(q, j + 11, j + 11 + 256)
    return msg[j + 11: k] or None if k > 0 else None


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def _key(rid: str) -> str:
    """One HTTP request's key: `cmpl-X-0`, `cmpl-X-1` (the prompts of one completions call) are `cmpl-X`."""
    rid = rid[:MAX_ID]
    if rid.startswith("cmpl-"):
        head, sep, tail = rid.rpartition("-")
        if sep and tail.isdigit() and len(head) > 5:
            return head
    return rid


def _count_ids(s: str) -> int | None:
    """How many ids a `[1, 2, 3]` list holds (None when `s` does not start with one)."""
    s = s.lstrip()
    if not s.startswith("["):
        return None
    j = s.find("]")
    if j < 0:
        return None
    body = s[1:j].strip()
    return body.count(",") + 1 if body else 0


def _prompt_tokens(msg: str) -> int | None:
    """The prompt's token count from `prompt_token_ids: [...]` (vLLM before 0.10 at INFO, newer ones
    at DEBUG), read from the right so a prompt's text cannot fake it; None when absent."""
    k = msg.rfind("prompt_token_ids: [")
    if k < 0:
        return None
    return _count_ids(msg[k + 18:])


def _id(s: str) -> str:
    return s.split(" ", 1)[0].rstrip(".").strip()


def _operation(rid: str) -> str | None:
    """The operation of a request id by vLLM's prefix; None for ids that are no inference request."""
    for prefix, op in _ID_OPS:
        if rid.startswith(prefix):
            return op
    if rid.startswith(_NOT_INFERENCE):
        return None
    return ""
