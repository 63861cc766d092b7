"""Start-up lines: how long a server took to load and what capacity it ended up with.

LLM servers print, once per start, how long loading the weights, building the engine, capturing
CUDA graphs and warming up took, how many tokens the KV cache holds, how many requests fit at
once and how much memory each part took. `StartupScanner.scan(text, ts_now)` recognises those
lines (vLLM, TGI, SGLang, llama.cpp, Ollama) and returns one `startup` record per line, or None.
It runs beside the format adapters (the pipeline calls it on lines that are not request or
stats records), so an adapter never has to know about it, and it costs one substring test on
lines that are not start-up lines.

Figures are taken as the server printed them. A phase the server only marks with a begin and an
end line (TGI's warm-up, SGLang's weight load in older versions, "ready") is the difference of
the two lines' own timestamps, or of the times they were read when a line has none.

A `startup` record: `provider`; `start` (True on a line that opens a start: the server's version
or arguments banner); `ready` (True on the line that says it serves); `phases` (phase ->
seconds); `kv_cache_tokens`; `max_concurrency`; `memory_use` and `memory_bytes` (summed over the
devices and ranks of one start).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

#: the phases a start-up figure can belong to (the `phase` label's whole value set)
PHASES = ("weights", "model_init", "compile", "cuda_graphs", "engine_init", "warmup", "ready")
#: what `llm_server_memory_bytes{use}` can be
MEMORY_USES = ("weights", "kv_cache", "cuda_graphs", "compute")
PROVIDERS = ("vllm", "tgi", "sglang", "llamacpp", "ollama")

_GIB = 1 << 30
_UNIT = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": _GIB, "TiB": 1 << 40, "KB": 1e3, "MB": 1e6,
         "GB": _GIB, "TB": 1 << 40}  # SGLang and vLLM V0 print "GB" for GiB (bytes / 2**30)
_DUR = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}

_F = r"([0-9][0-9,]*(?:\.[0-9]+)?)"  # a number, thousands commas allowed


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _size(v: str, unit: str) -> float:
    return _num(v) * _UNIT.get(unit, 1)


Fact = dict[str, Any]
Rule = tuple[str, str, re.Pattern[str], Callable[[re.Match[str]], Fact]]


def _phase(name: str, group: int = 1, unit: str = "s") -> Callable[[re.Match[str]], Fact]:
    return lambda m: {"phase": name, "seconds": _num(m.group(group)) * _DUR[unit]}


def _vllm_model_loading(m: re.Match[str]) -> Fact:
    out: Fact = {}
    if m.group(1):
        out.update(memory_use="weights", memory_bytes=_size(m.group(1), m.group(2)))
    if m.group(3):
        out.update(phase="model_init", seconds=_num(m.group(3)))
    return out


_VLLM_CONCURRENCY = re.compile(r"Maximum concurrency for " + _F + r" tokens per request: " + _F + r"x")


def _vllm_kv_size(m: re.Match[str]) -> Fact:
    out: Fact = {"kv_cache_tokens": int(_num(m.group(1)))}
    c = _VLLM_CONCURRENCY.search(m.string, m.end())  # 0.32 prints both on one line
    if c:
        out["max_concurrency"] = _num(c.group(2))
    return out


def _vllm_graphs(m: re.Match[str]) -> Fact:
    out: Fact = {"phase": "cuda_graphs", "seconds": _num(m.group(1))}
    if m.group(2):
        out.update(memory_use="cuda_graphs", memory_bytes=_num(m.group(2)) * _GIB)
    return out


def _tgi_shard(m: re.Match[str]) -> Fact:
    return {"phase": "model_init", "seconds": _num(m.group(1)) * _DUR[m.group(2)]}


def _sglang_weights(m: re.Match[str]) -> Fact:
    out: Fact = {}
    if m.group(1):
        out.update(phase="weights", seconds=_num(m.group(1)))
    else:
        out.update(end="weights")
    if m.group(2) and not m.group(2).startswith("-"):
        out.update(memory_use="weights", memory_bytes=_num(m.group(2)) * _GIB)
    return out


def _sglang_kv(m: re.Match[str]) -> Fact:
    out: Fact = {"kv_cache_tokens": int(m.group(1))}
    if m.group(2) and m.group(3):
        out.update(memory_use="kv_cache", memory_bytes=(_num(m.group(2)) + _num(m.group(3))) * _GIB)
    elif m.group(4):
        out.update(memory_use="kv_cache", memory_bytes=_num(m.group(4)) * _GIB)
    return out


def _sglang_pool(m: re.Match[str]) -> Fact:
    out: Fact = {"kv_cache_tokens": int(m.group(1))}
    c = re.search(r"max_running_requests=(\d+)", m.string)
    if c:
        out["max_concurrency"] = float(c.group(1))
    return out


def _buffer(use: str) -> Callable[[re.Match[str]], Fact]:
    def fact(m: re.Match[str]) -> Fact:
        if m.group(1).endswith("_Mapped"):  # a memory-mapped file, not an allocation
            return {}
        return {"memory_use": use, "memory_bytes": _size(m.group(2), m.group(3) if m.lastindex == 3 else "MiB")}
    return fact


def _ollama_runner(m: re.Match[str]) -> Fact:
    out: Fact = {"start": True}
    ctx = re.search(r"--ctx-size (\d+)", m.string)
    par = re.search(r"--parallel (\d+)", m.string)
    if ctx:
        out["kv_cache_tokens"] = int(ctx.group(1))
    if par:
        out["max_concurrency"] = float(par.group(1))
    return out


def _ollama_load(m: re.Match[str]) -> Fact:
    out: Fact = {"kv_cache_tokens": int(m.group(2))}
    out["max_concurrency"] = float(m.group(1))
    return out


_OLLAMA_USE = {"model weights": "weights", "kv cache": "kv_cache", "compute graph": "compute"}


def _ollama_memory(m: re.Match[str]) -> Fact:
    dev = re.search(r"\b(?:device|buffer_type|buffer)=(\S+)", m.group(2))
    if dev is not None and dev.group(1).endswith("_Mapped"):
        return {}
    return {"memory_use": _OLLAMA_USE[m.group(1)], "memory_bytes": _size(m.group(3), m.group(4))}


#: (provider, pattern, what the match says); tried in order, the first match wins
def _rx(p: str) -> re.Pattern[str]:
    return re.compile(p)


_START: Callable[[re.Match[str]], Fact] = lambda m: {"start": True}  # noqa: E731
_READY: Callable[[re.Match[str]], Fact] = lambda m: {"phase": "ready"}  # noqa: E731
_VLLM_MODEL = _rx(r"(?:Model loading|Initializing model|Loading model weights) took "
                  r"(?:" + _F + r" ?(GiB|GB)(?: memory)?(?: and )?)?(?:" + _F + r" ?s(?:econds|ecs)?)?")
_OLLAMA_MEMORY = _rx(r'msg="(model weights|kv cache|compute graph)"(.*?) size="([0-9.]+) ?([KMGT]?i?B)"')

#: (provider, a literal every matching line holds, pattern, what the match says), tried in order;
#: a rule's pattern runs only on lines holding its literal, and the first match wins
RULES: list[Rule] = [
    # -- vLLM (V0 and V1; 0.7 to 0.3x) -------------------------------------------------------
    # the version banner (0.7: "vLLM API server version 0.7.3"; 0.11 on: block-letter art, "version 0.32.0")
    ("vllm", "vLLM API server version ", _rx(r"vLLM API server version "), _START),
    ("vllm", " version ", _rx(r"[\u2580-\u259f]\s+version \d"), _START),
    ("vllm", " LLM engine", _rx(r"Initializing an? V\d LLM engine"), _START),
    ("vllm", "Loading weights took", _rx(r"Loading weights took " + _F + r" ?s(?:econds|ecs)?\b"), _phase("weights")),
    ("vllm", "Model loading took", _VLLM_MODEL, _vllm_model_loading),
    ("vllm", "Initializing model took", _VLLM_MODEL, _vllm_model_loading),
    ("vllm", "Loading model weights took", _VLLM_MODEL, _vllm_model_loading),
    ("vllm", "torch.compile t", _rx(r"torch\.compile t(?:akes|ook) " + _F + r" ?s in total"), _phase("compile")),
    ("vllm", "Graph capturing finished",
     _rx(r"Graph capturing finished in " + _F + r" ?s(?:ecs?|econds)?(?:, took " + _F + r" GiB)?"), _vllm_graphs),
    ("vllm", "Available KV cache memory", _rx(r"Available KV cache memory: " + _F + r" ?(GiB|GB)"),
     lambda m: {"memory_use": "kv_cache", "memory_bytes": _size(m.group(1), m.group(2))}),
    ("vllm", "GiB for KV cache", _rx(r"Auto set \(" + _F + r"/[0-9.]+\) GiB for KV cache"),  # the CPU build
     lambda m: {"memory_use": "kv_cache", "memory_bytes": _num(m.group(1)) * _GIB}),
    ("vllm", "KV cache size: ", _rx(r"\b[GC]PU KV cache size: " + _F + r" tokens"), _vllm_kv_size),
    ("vllm", "Maximum concurrency for", _VLLM_CONCURRENCY, lambda m: {"max_concurrency": _num(m.group(2))}),
    ("vllm", "init engine (",
     _rx(r"init engine \(profile, create kv cache, warmup model\) took " + _F + r" ?s(?:econds)?"),
     _phase("engine_init")),
    ("vllm", "Starting vLLM", _rx(r"Starting vLLM (?:API )?server\b"), _READY),
    # -- TGI (launcher and router, text or --json-output) -------------------------------------
    ("tgi", "Args {", _rx(r"\bArgs \{\s*(?:model_id|$)"), _START),
    ("tgi", "Shard ready in", _rx(r"Shard ready in " + _F + r"(s|ms|µs|us|ns)\b"), _tgi_shard),
    ("tgi", "Warming up model", _rx(r"(?:^|: )Warming up model\s*$"), lambda m: {"begin": "warmup"}),
    ("tgi", "Setting max batch total tokens", _rx(r"Setting max batch total tokens to (\d+)"),
     lambda m: {"kv_cache_tokens": int(m.group(1))}),
    ("tgi", "Connected", _rx(r"(?:^|text_generation_router\S*: \S+: )Connected\s*$"),
     lambda m: {"end": "warmup", "phase": "ready"}),
    # -- SGLang ---------------------------------------------------------------------------------
    ("sglang", "server_args=ServerArgs(", _rx(r"server_args=ServerArgs\("), _START),
    ("sglang", "Load weight begin.", _rx(r"Load weight begin\."), lambda m: {"begin": "weights"}),
    ("sglang", "Load weight end.",
     _rx(r"Load weight end\.(?: elapsed=" + _F + r" s)?(?:.*?mem usage=(-?[0-9.]+) GB)?"), _sglang_weights),
    ("sglang", "KV Cache is allocated",
     _rx(r"KV Cache is allocated\. #tokens: (\d+),(?: K size: ([0-9.]+) GB, V size: ([0-9.]+) GB"
         r"| KV size: ([0-9.]+) GB)?"), _sglang_kv),
    ("sglang", "raph end.",
     _rx(r"(?i:capture) (?:\w+ )*?(?i:cuda graph) end\. (?:Time elapsed: |elapsed=)" + _F + r" ?s"),
     _phase("cuda_graphs")),
    ("sglang", "max_total_num_tokens=", _rx(r"max_total_num_tokens=(\d+)"), _sglang_pool),
    ("sglang", "fired up and ready to roll", _rx(r"The server is fired up and ready to roll!"), _READY),
    # -- llama.cpp (llama-server; also inside Ollama's output) ---------------------------------
    ("llamacpp", "loading model", _rx(r"\b(?:load_model|main): loading model\b"), _START),
    ("llamacpp", "load_tensors:", _rx(r"\b(?:llm_)?load_tensors: +(\S+) (?:model )?buffer size = +([0-9.]+) MiB"),
     _buffer("weights")),
    ("llamacpp", " cells", _rx(r"\bllama_kv_cache\w*: +size = +([0-9.]+) MiB \( *(\d+) cells"),
     lambda m: {"kv_cache_tokens": int(m.group(2))}),
    ("llamacpp", "KV buffer size", _rx(r"\bllama_kv_cache\w*: +(\S+) KV buffer size = +([0-9.]+) MiB"),
     _buffer("kv_cache")),
    ("llamacpp", "compute buffer size",
     _rx(r"\b(?:llama_context|llama_new_context_with_model|sched_reserve): +(\S+) compute buffer size = +"
         r"([0-9.]+) MiB"), _buffer("compute")),
    ("llamacpp", "n_slots =", _rx(r"initializing slots, n_slots = (\d+)"),
     lambda m: {"max_concurrency": float(m.group(1))}),
    ("llamacpp", "model loaded", _rx(r"(?:\b(?:main|llama_server): |^)model loaded\s*$"),
     lambda m: {"since_start": "model_init"}),
    ("llamacpp", "server is listening on", _rx(r"\bserver is listening on \S+"), _READY),
    # -- Ollama (Go slog, logfmt) ---------------------------------------------------------------
    ("ollama", 'msg="starting ', _rx(r'msg="starting (?:runner|llama server)"'), _ollama_runner),
    ("ollama", "llama runner started in", _rx(r'msg="llama runner started in ' + _F + r' seconds"'),
     _phase("ready")),
    ("ollama", " request=", _rx(r'msg="?load"? request="\{[^}]*?Parallel:(\d+)[^}]*?KvSize:(\d+)'), _ollama_load),
    ("ollama", ' size="', _OLLAMA_MEMORY, _ollama_memory),
]

_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?")
_VLLM_TS = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\b")
_EPOCH = re.compile(r"\d{9,11}(?:\.\d+)?")
_LLAMA_TS = re.compile(r"^(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) [IWEDT] ")


def line_time(text: str) -> float | None:
    """Seconds on the line's own clock (only differences between lines of one stream mean anything),
    or None when the line carries no timestamp we know."""
    if text[:1].isdigit() and _EPOCH.fullmatch(text):  # a JSON log's epoch seconds
        return float(text)
    m = _ISO.search(text, 0, 80) or _ISO.search(text)
    if m:
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        frac = m.group(7)
        try:
            t = datetime(y, mo, d, h, mi, s).timestamp()
        except ValueError:
            return None
        return t + (int(frac) / 10 ** len(frac) if frac else 0.0)
    m = _VLLM_TS.search(text)
    if m:  # vLLM prints no year: one leap year keeps 02-29 valid
        mo, d, h, mi, s = (int(x) for x in m.groups())
        try:
            return datetime(2000, mo, d, h, mi, s).timestamp()
        except ValueError:
            return None
    m = _LLAMA_TS.match(text)
    if m:  # llama.cpp's log prefix: minutes.seconds.milliseconds.microseconds since it started
        mi, s, ms, us = (int(x) for x in m.groups())
        return mi * 60 + s + ms / 1e3 + us / 1e6
    return None


class StartupScanner:
    """Recognises start-up lines in one stream; keeps the begin marks of two-line phases.

    A stream is one server's output: once its server is known (from a start-up line, or from the
    provider of a log record an adapter made of one of its lines), only that server's rules are
    tried (with llama.cpp's inside Ollama's output), which keeps the cost per line to a few
    substring tests."""

    __slots__ = ("_all", "_begins", "_host", "_pinned", "_rules", "_start_ts")

    def __init__(self, fmt: str = "auto") -> None:
        wanted = set(PROVIDERS) if fmt == "auto" else {fmt} | ({"llamacpp"} if fmt == "ollama" else set())
        self._all = [r for r in RULES if r[0] in wanted]
        self._rules = self._all
        self._pinned = fmt != "auto"
        self._begins: dict[tuple[str, str], tuple[float, bool]] = {}
        self._start_ts: dict[str, tuple[float, bool]] = {}
        #: the server whose output embeds llama.cpp's lines (Ollama), once one of its lines was seen
        self._host: str | None = "ollama" if fmt == "ollama" else None

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def pin(self, provider: str) -> None:
        """Keep only `provider`'s rules from now on (the stream's server is known)."""
        if self._pinned or provider not in PROVIDERS:
            return
        self._pinned = True
        keep = {provider, "llamacpp"} if provider == "ollama" else {provider}
        self._rules = [r for r in self._all if r[0] in keep]
        if provider == "ollama":
            self._host = "ollama"

    def may_match(self, text: str) -> bool:
        """Whether `text` holds the literal of any rule (a start-up line may be in it)."""
        return any(r[1] in text for r in self._rules)

    def scan(self, text: str, now: float, stamp_text: str | None = None) -> dict[str, Any] | None:
        """The `startup` record of one line (`text`: the message; `stamp_text`: where its timestamp
        is, default the text itself; `now`: when it was read), or None for any other line."""
        if self._host is None and not self._pinned and "source=" in text and " msg=" in text:
            self.pin("ollama")  # Ollama's own slog lines: llama.cpp's lines here are Ollama's runner
        for provider, key, rx, fact in self._rules:
            if key not in text:
                continue
            m = rx.search(text)
            if m is None:
                continue
            f = fact(m)
            if provider == "ollama":
                self._host = "ollama"
            elif provider == "llamacpp" and self._host is not None:
                provider = self._host
            self.pin(provider)
            return self._record(provider, f, text if stamp_text is None else stamp_text, now)
        return None

    def _record(self, provider: str, f: Fact, stamp_text: str, now: float) -> dict[str, Any] | None:
        # a time is (seconds, on the line's own clock?): only times on the same clock are subtracted
        ts: tuple[float, bool] | None = None

        def t() -> tuple[float, bool]:
            nonlocal ts
            if ts is None:
                own = line_time(stamp_text)
                ts = (now, False) if own is None else (own, True)
            return ts

        def since(mark: tuple[float, bool] | None) -> float | None:
            if mark is None or mark[1] != t()[1] or t()[0] < mark[0]:
                return None
            return t()[0] - mark[0]

        rec: dict[str, Any] = {"kind": "startup", "provider": provider}
        started = self._start_ts.get(provider)
        if f.pop("start", False):
            rec["start"] = True
            started = self._start_ts[provider] = t()
            self._begins = {k: v for k, v in self._begins.items() if k[0] != provider}
        elif started is None:  # read from the middle of a start: phases measured from here would be short
            self._start_ts[provider] = t()
        phases: dict[str, float] = {}
        phase = f.pop("phase", None)
        seconds = f.pop("seconds", None)
        if phase is not None and seconds is not None:
            phases[phase] = seconds
        begin = f.pop("begin", None)
        if begin is not None:
            self._begins[(provider, begin)] = t()
        end = f.pop("end", None)
        if end is not None:
            d = since(self._begins.pop((provider, end), None))
            if d is not None:
                phases[end] = d
        upto = f.pop("since_start", None)
        if upto is not None:
            d = since(started)
            if d is not None:
                phases[upto] = d
        if phase == "ready":  # the start is over: the next one is timed from its own first line
            rec["ready"] = True
            d = since(started)
            if seconds is None and d is not None:
                phases["ready"] = d
            self._start_ts.pop(provider, None)
            self._begins = {k: v for k, v in self._begins.items() if k[0] != provider}
        if phases:
            rec["phases"] = phases
        rec.update(f)
        if len(rec) == 2:
            return None  # a line of the right kind that carried nothing (a mapped file's buffer)
        return rec


_JSON_MESSAGE = ("message", "msg")


def scan_line(scanner: StartupScanner, line: bytes, outcome: str, result: Any,
              clock: Callable[[], float]) -> tuple[str, Any]:
    """The pipeline's hook: add the `startup` record of `line` (if it is a start-up line) to what
    the adapters made of it. Request, stats and HTTP records are left alone (a start-up line is a
    log line); a line no adapter knew becomes a `record` line when it is a start-up line."""
    if not scanner.active or not _log_only(result):
        return outcome, result
    if result is not None and result != "ignored":  # a log record: its adapter knows the server
        first = result if type(result) is dict else result[0]
        scanner.pin(first.get("provider", ""))
    text = line.decode("utf-8", "replace")
    stamp = None
    if line[:1] == b"{":  # JSON logs (vLLM, TGI, llama.cpp): the message is the line
        if not scanner.may_match(text):
            return outcome, result
        from llm_exporter.adapters.base import json_object

        obj = json_object(line)
        if obj is None:
            return outcome, result
        msg = next((obj[k] for k in _JSON_MESSAGE if isinstance(obj.get(k), str)), None)
        fields = obj.get("fields")
        if msg is None and isinstance(fields, dict) and isinstance(fields.get("message"), str):
            msg = fields["message"]  # TGI launcher
        if msg is None:
            return outcome, result
        stamp = next((str(obj[k]) for k in ("timestamp", "asctime", "time") if k in obj), "")
        text = msg
    rec = scanner.scan(text, clock(), stamp)
    if rec is None:
        return outcome, result
    if result is None or result == "ignored":
        return "record", rec
    if type(result) is list:
        return "record", [*result, rec]
    return "record", [result, rec]


def _log_only(result: Any) -> bool:
    if result is None or result == "ignored":
        return True
    if type(result) is dict:
        return result.get("kind") == "log"
    if type(result) is list:
        return bool(result) and all(type(r) is dict and r.get("kind") == "log" for r in result)
    return False
