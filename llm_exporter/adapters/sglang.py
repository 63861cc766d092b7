"""SGLang: the scheduler's `Prefill batch` / `Decode batch` lines, its access lines, its crashes.

Prefixes: `[2024-11-29 10:28:25 TP0] `, `[04:40:55 TP0] `, none (a bare `[date] ` or Python logging's
`2026-06-07 10:59:31,843 ` is a timestamp the envelope peels, leaving `[INFO] sglang.srt...: `). The
batch line is a comma-separated `key: value` list whose keys vary by version and feature, so it is
read as such a list, not with one fixed pattern. `token usage` is already a fraction (0-1); `cache
hit rate` is a percent. The rank tag (`TP0`, `DP1 TP0`) becomes the `engine` label.

Accounting: SGLang prints no per-request line unless `--log-requests` is on, so an access line on
an inference path (`POST /generate`, `/v1/chat/completions`, ...) is one finished request, its
outcome from the status. A `Prefill batch` line's `#new-token` + `#cached-token` are prompt tokens
processed in that batch and `#cached-token` the part served from the radix cache
(`llm_prompt_tokens_total`, `llm_prompt_cached_tokens_total`). `Scheduler hit an exception` (with
the traceback that follows it) and `Received sigquit from a child process` are server incidents.
"""

from __future__ import annotations

from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import access_request, inference_operation, parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter, nonneg
from llm_exporter.adapters.pytrace import TraceTail

_RATIO_KEYS = {"token usage": "kv_cache_usage", "full token usage": "kv_cache_usage"}
_COUNT_KEYS = {"#running-req": "running", "#queue-req": "waiting"}
_TPS_KEYS = {"gen throughput (token/s)": "generation_tps", "input throughput (token/s)": "prompt_tps"}
#: lines SGLang writes at start-up (recognised bare too: the envelope peels their timestamp)
_KNOWN_MESSAGES = ("The server is fired up", "Load weight", "Memory pool end", "Capture cuda graph",
                   "KV Cache is allocated", "Init torch distributed", "server_args=", "max_total_num_tokens=",
                   "Using KV cache dtype", "Capture piecewise", "Attention backend", "Loading pt checkpoint",
                   "Loading safetensors checkpoint", "Init torch", "Load tokenizer", "Start of co-locate",
                   "Using default HuggingFace chat template", "Overlap scheduler", "Init attention backend",
                   "Mem pool end", "Automatically adjust", "Detected fp8 checkpoint", "Capture cuda graph end",
                   "Using model weights format", "Downcasting", "Decode out of memory", "Prefill out of memory",
                   "Ignore import error", "Multi-thread loading", "Using ModelOptModelLoader", "Chunked prefix")
#: what the scheduler prints after an out-of-memory retraction (a crash, if any, is its own line)
_OOM_DETAIL = ("Try to allocate ", "Available tokens: ", "Avaliable tokens: ", "self.token_to_kv_pool",
               "self.tree_cache.")
_INCIDENTS = ("Scheduler hit an exception", "Received sigquit", "DataParallelController hit an exception",
              "DetokenizerManager hit an exception", "TokenizerManager hit an exception")
_PY_LEVELS = ("[INFO] ", "[WARNING] ", "[ERROR] ", "[DEBUG] ", "[CRITICAL] ")




def _int(v: str) -> int | None:
    v = v.strip()
    return int(v) if v.isdigit() else None


class SglangAdapter(Adapter):
    """SGLang scheduler lines, its access lines and its crash records."""

    name = "sglang"
    provider = "sglang"
    wants_obj = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.incident: str | None = None  # the class of a crash whose traceback is still coming
        self.tail = TraceTail()

    def parse_text(self, text: str) -> Any:
        if self.incident is not None:
            if self.tail.feed(text):
                if self.tail.cls in ("oom", "timeout"):
                    self.incident = self.tail.cls
                return []
            out = self._close()
            res = self._text(text)
            if res is None or res is IGNORED:
                return out if res is None else out or IGNORED
            return out + (res if type(res) is list else [res])
        return self._text(text)

    def _text(self, text: str) -> Any:
        c = text[:1]
        tag = ""
        msg = text
        known_prefix = False
        if c == "[":
            if text.startswith(_PY_LEVELS):  # Python logging, its timestamp peeled
                j = text.find("] sglang.", 0, 20)  # `[CRITICAL] sglang.` fits in 20
                k = text.find(": ", j) if j > 0 else -1
                if k < 0:
                    return None
                msg = text[k + 2:]
                known_prefix = True
            else:
                j = text.find("] ", 1, 48)
                if j < 0:
                    return None
                inside = text[1:j]
                if ":" not in inside or not inside[:1].isdigit():
                    return None
                words = inside.split(" ")
                tags = [w for w in words if w[:1].isalpha()]
                tag = " ".join(tags)
                known_prefix = bool(tags)
                msg = text[j + 2:]
        elif c.isdigit():
            k = text.find("] sglang.", 20, 44)  # after `2026-06-07 10:59:31,843 [CRITICAL]`
            if k < 0 or text[4] != "-":
                return None
            j = text.find(": ", k)
            if j < 0:
                return None
            msg = text[j + 2:]
            known_prefix = True
        m0 = msg[:1]
        if (m0 == "P" and msg.startswith(("Prefill batch.", "Prefill batch,"))) or (
                m0 == "D" and msg.startswith(("Decode batch.", "Decode batch,"))):
            self.shared["server"] = "sglang"
            return self._batch(msg[14:], tag, m0 == "P")
        if m0 == "n" and msg.startswith("new fill batch. "):  # the 2024 scheduler's prefill line
            self.shared["server"] = "sglang"
            return self._fill(msg[16:], tag)
        if m0 == "#" and msg.startswith("#running-req: ") and ", token usage: " in msg:  # its decode line
            self.shared["server"] = "sglang"
            return self._batch(msg, tag, False)
        if msg.startswith(_INCIDENTS):
            self.shared["server"] = "sglang"
            _, cls = errors.classify_event(msg)
            self.incident = cls if cls in ("oom", "timeout") else "engine_dead"
            self.tail = TraceTail()
            if msg.endswith("Traceback (most recent call last):"):
                self.tail.feed("Traceback (most recent call last):")
            else:
                self.tail.lines = 1
            return [{"kind": "log", "provider": self.provider, "level": "ERROR"}]
        if m0 == "I" and msg.startswith(("INFO:  ", "WARNING:  ", "ERROR:    ")) and (
                msg is not text or self.shared.get("server") == "sglang"):
            rec = parse_uvicorn(msg, self.provider)
            if rec is not None:
                op = inference_operation(rec["method"], rec["path"])
                if op is None:
                    return rec
                return [rec, access_request(self.provider, op, rec["code"])]
            return IGNORED if msg is not text else None
        if msg.startswith(_KNOWN_MESSAGES):
            if msg is not text:  # behind SGLang's own prefix; a bare one (a weight-loading progress bar)
                self.shared.setdefault("server", "sglang")  # vLLM prints too, and names no server
            return IGNORED
        if msg.startswith(_OOM_DETAIL) and self.shared.get("server") == "sglang":
            return IGNORED  # the lines after `Decode out of memory. Try to lower your batch size.`
        if known_prefix:
            return IGNORED
        return None

    def _batch(self, body: str, engine: str, prefill: bool) -> Any:
        rec: dict[str, Any] = {"kind": "stats", "provider": self.provider, "model": "", "engine": engine}
        new_tok = cached = None
        for part in body.split(", "):
            k, sep, v = part.strip().rstrip(",").partition(": ")
            if not sep:
                continue
            if k in _COUNT_KEYS or k in _TPS_KEYS:
                f = nonneg(v)
                if f is not None:
                    rec[_COUNT_KEYS.get(k) or _TPS_KEYS[k]] = f
            elif k in _RATIO_KEYS:
                f = nonneg(v)
                if f is not None and f <= 1.0 and (k == "token usage" or "kv_cache_usage" not in rec):
                    rec["kv_cache_usage"] = f
            elif k == "cache hit rate" and v.endswith("%"):
                f = nonneg(v[:-1])
                if f is not None and f <= 100.0:
                    rec["prefix_cache_hit"] = f / 100.0
            elif prefill and k == "#new-token":
                new_tok = _int(v)
            elif prefill and k == "#cached-token":
                cached = _int(v)
        return rec if new_tok is None else [rec, self._prompt_tokens(new_tok, cached, engine)]

    def _prompt_tokens(self, new_tok: int, cached: int | None, engine: str) -> dict[str, Any]:
        """A prefill batch's prompt tokens: new plus those served from the prefix cache."""
        tok: dict[str, Any] = {"kind": "tokens", "provider": self.provider, "model": "", "engine": engine,
                               "prompt_tokens": new_tok + (cached or 0)}
        if cached is not None:
            tok["cached_tokens"] = cached
        return tok

    def _fill(self, body: str, engine: str) -> Any:
        """`new fill batch. #seq: 1. #cached_token: 478. #new_token: 254. #remaining_req: 0. #running_req:
        4. tree_cache_hit_rate: 80.81%.` (SGLang 2024): gauges and the batch's prompt tokens."""
        rec: dict[str, Any] = {"kind": "stats", "provider": self.provider, "model": "", "engine": engine}
        vals: dict[str, str] = {}
        for part in body.split(". "):
            k, sep, v = part.partition(": ")
            if sep:
                vals[k.strip()] = v.strip().rstrip(".")
        for k, f in (("#running_req", "running"), ("#remaining_req", "waiting")):
            n = nonneg(vals.get(k, "x"))
            if n is not None:
                rec[f] = n
        hit = vals.get("tree_cache_hit_rate", "")
        if hit.endswith("%") and (h := nonneg(hit[:-1])) is not None and h <= 100.0:
            rec["prefix_cache_hit"] = h / 100.0
        new_tok, cached = _int(vals.get("#new_token", "")), _int(vals.get("#cached_token", ""))
        return rec if new_tok is None else [rec, self._prompt_tokens(new_tok, cached, engine)]

    def _close(self) -> list[dict[str, Any]]:
        cls = self.incident
        if cls is None:
            return []
        self.incident = None
        return [{"kind": "server_error", "provider": self.provider, "error_type": cls}]

    def flush(self) -> list[dict[str, Any]]:
        return self._close()
