"""llama.cpp (`llama-server`, the library, llama-cpp-python): per-request timing blocks, access lines.

A finished request prints a timing block whose wording stayed the same across four eras while
its framing changed: the library's `llama_print_timings:` lines, the 2024 server's JSON lines
(`"function":"print_timings","msg":"prompt eval time = ..."`), the mid-2024 text
`INFO [ print_timings] prompt eval time = ... | k=v ...`, and since late 2024 a header
`slot print_timing: id 0 | task N | ` followed by three unprefixed lines (newest builds prefix
each line, `[port] ` and an elapsed-time `m.ss.mmm.uuu I ` may precede them all). So one parser
reads the timing text (`prompt eval time = X ms / N tokens`, `eval time = X ms / N tokens`,
`total time = X ms / N tokens`) and a block collects it: it is handed out as one request at
its `total time` line, or when the next block starts, or by `flush()`.

Record: input tokens = prompt-eval tokens (the uncached part of the prompt), output tokens =
eval tokens, duration = total time, time to first token = prompt eval time (prefill; excludes any
wait for a free slot), time per output token = eval time / eval tokens. A block cut before its
`total time` line gives only what it holds (no duration is made up). Response bodies' `timings`
objects give the same fields, their duration derived as `prompt_ms + predicted_ms`, and the prompt
(`prompt_n + cache_n`) and its cached part (`cache_n`) for `llm_prompt_tokens_total`.

Accounting: one request per task id. A finished task prints its timing block; a failed one prints
`send_error: task id = N, error: ...` (one failed request, classified: a prompt over the context
size is `validation`); a task whose client went away prints `cancel task, id_task = N` (one aborted
request). Whichever comes first counts the task, later lines of the same task do not. Not server
requests: the timing block an interactive `llama-cli` (or `llama-simple`) session prints at exit
(recognised by the CLI's own lines: `llama_perf_sampler_print`, `common_perf_print`, `Interrupted by
user`, `== Running in interactive mode. ==`), and the blocks of a llama.cpp runner behind a front
door (Ollama, llama-swap) in the same stream: that front door's access line is the request.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import http_record
from llm_exporter.adapters.base import IGNORED, Adapter, nonneg

_LEVEL_LETTERS = {"I": "INFO", "W": "WARNING", "E": "ERROR", "D": "DEBUG"}
_ERA2_LEVELS = {"INFO": "INFO", "WARN": "WARNING", "ERR": "ERROR", "VERB": "DEBUG", "DEBUG": "DEBUG"}
_TIMING_STARTS = ("prompt eval time", "eval time", "generation eval time", "total time", "load time",
                  "sample time", "graphs reused")
_OWN_STARTS = ("slot ", "srv ", "main: ", "que ", "llama_", "common_", "build: ", "system info", "load_",
               "print_info", "init: ", "request: ", "done request: ", "cmd_child_to_router:", "ggml_",
               "system_info:", "clip_", "mtmd_", "gguf_", "llm_load_", "[")
_LIB_PREFIXES = ("llama_print_timings:", "llama_perf_context_print:", "llama_perf_sampler_print:",
                 "common_perf_print:")
#: lines only the command-line tools print: their timing block is a session, not a server request
_CLI_MARKS = ("llama_perf_sampler_print:", "common_perf_print:", "Interrupted by user",
              "== Running in interactive mode. ==", "main: interactive mode on", "sampler seed:",
              "generate: n_ctx =", "main: prompt:", "> EOF by user")
MAX_TASKS = 4096
#: the elapsed-time stamp of newer builds' lines, `m.ss.mmm.uuu ` (common/log.cpp: "%d.%02d.%03d.%03d ")
_ELAPSED = re.compile(r"\d+\.\d\d\.\d\d\d\.\d\d\d ")


def _timing(text: str) -> tuple[str, float | None, int | None] | None:
    """(`prompt`/`eval`/`total`/`other`, ms, count) of a timing line, or None when it is not one."""
    name, sep, rest = text.partition("=")
    if not sep:
        return None
    name = name.strip()
    if name == "prompt eval time":
        kind = "prompt"
    elif name in ("eval time", "generation eval time"):
        kind = "eval"
    elif name == "total time":
        kind = "total"
    elif name in ("load time", "sample time", "graphs reused"):
        return ("other", None, None)
    else:
        return None
    parts = rest.split()
    try:
        ms = float(parts[0])
    except (ValueError, IndexError):
        return None
    n: int | None = None
    if len(parts) >= 4 and parts[1] == "ms" and parts[2] == "/":
        try:
            n = int(parts[3])
        except ValueError:
            n = None
    if ms < 0 or ms != ms or ms == float("inf") or (n is not None and n < 0):
        return None
    return (kind, ms, n)


def _elapsed(s: str) -> bool:
    """Whether `s` starts with llama.cpp's elapsed-time stamp `m.ss.mmm.uuu `."""
    return _ELAPSED.match(s) is not None


class _Block:
    __slots__ = ("eval_ms", "eval_n", "prompt_ms", "prompt_n", "task", "total_ms")

    def __init__(self, task: str) -> None:
        self.task = task
        self.prompt_ms: float | None = None
        self.prompt_n: int | None = None
        self.eval_ms: float | None = None
        self.eval_n: int | None = None
        self.total_ms: float | None = None


class LlamacppAdapter(Adapter):
    """llama.cpp timing blocks (all eras), its access lines and its other server lines."""

    name = "llamacpp"
    provider = "llamacpp"
    wants_obj = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.block: _Block | None = None
        self.tasks: OrderedDict[str, None] = OrderedDict()  # task ids already counted
        self.template = 0  # inside a multi-line chat template print-out: its lines so far (0: not)

    # -- text ------------------------------------------------------------------------------------

    def parse_text(self, text: str) -> Any:
        res = self._text(text)
        if res is not None and "server" not in self.shared:
            self.shared["server"] = self.provider
        return res

    def _text(self, text: str) -> Any:
        c = text[:1]
        if self.template and c != "[":  # the lines of a chat template printed by the line before
            if not _elapsed(text) and not text.startswith(_OWN_STARTS[:-1]) and self.template < 200:
                self.template = 0 if text.endswith("'") else self.template + 1
                return []
            self.template = 0
        if text.startswith(_CLI_MARKS):
            self.shared["cli"] = True
            if not text.startswith(_LIB_PREFIXES):
                return IGNORED
        if c == "D" and text.startswith("Device ") and ": " in text[7:12] and self.shared.get("server"):
            return IGNORED  # ggml's device list (`  Device 0: NVIDIA ..., compute capability 8.9`)
        if not (c.isalpha() or c.isdigit() or c == "["):
            if c == "{" and text.startswith('{"timestamp":') and '"function":"' in text[:120]:
                return IGNORED  # a JSON log line of the 2023 server, cut short by a pager
            return None
        s = text
        if c == "[":
            j = s.find("] ", 1, 12)
            if j > 1 and s[1:j].isdigit():  # the router's `[port] ` of a child server (or a Unix time)
                s = s[j + 2:].lstrip()
                if self.template and not _elapsed(s) and self.template < 200:  # a router child's template
                    self.template = 0 if s.endswith("'") else self.template + 1
                    return []
                self.template = 0
                if not s[:1].isdigit() and not s.startswith(_OWN_STARTS) and not s.startswith(_TIMING_STARTS):
                    return IGNORED  # the child's other output (`warming up the model`, ...)
            elif s.startswith("[") and s.endswith(" blob data]") and self.block is not None:
                return []  # journald hid a timing line
            else:
                return None
        if s[:1].isdigit():  # elapsed time `1.37.495.377 I `
            m = _ELAPSED.match(s)
            if m is None or s[m.end() + 1: m.end() + 2] != " ":
                return None
            level = _LEVEL_LETTERS.get(s[m.end()], "")
            if not level:
                return None
            s = s[m.end() + 2:].lstrip()  # a `cmn ` tag left on reads as no server line: its log record
            res = self._server_line(s, level)
            return res if res is not None else _log(level)
        elif s is text:
            if s.startswith(_LIB_PREFIXES):
                res = self._timing_text(s.split(":", 1)[1].strip(), "lib", "")
                return IGNORED if res is None else res  # `sampling time`, `unaccounted time`, ...
            if s.startswith(_TIMING_STARTS):
                return self._timing_text(s, None, "")
            sp = s.find(" [", 0, 8)
            if sp > 0 and s[:sp] in _ERA2_LEVELS:  # mid-2024 `INFO [ function] msg | k=v ...`
                j = s.find("] ", sp, sp + 40)
                if j < 0:
                    return None
                func = s[sp + 2: j].strip()
                msg = s[j + 2:].rpartition(" | ")[0] or s[j + 2:]
                lv = _ERA2_LEVELS[s[:sp]]
                if func == "print_timings":
                    res = self._timing_text(msg.strip(), None, lv)
                    return IGNORED if res is None else res
                return _log(lv)
            if not s.startswith(_OWN_STARTS):
                return None
        return self._server_line(s, "")  # no level: a bare line, or one behind a router's `[port] `

    def _server_line(self, s: str, level: str) -> Any:
        if s.startswith("slot print_timing:"):
            parts = s.split("|", 2)
            task = parts[1].strip().removeprefix("task ") if len(parts) > 1 else ""  # `task 388`: as send_error's
            content = parts[2].strip() if len(parts) > 2 else ""
            if not content:
                out = self._close()
                self.block = _Block(task)
                return out + _log(level)
            res = self._timing_text(content, task, level)
            return (_log(level) or IGNORED) if res is None else res  # interim progress lines
        if s.startswith(_TIMING_STARTS):
            res = self._timing_text(s, None, level)
            if res is not None:
                return res
        if s.startswith("srv "):  # send_error and cancel lines are the server's (SRV_ERR, SRV_WRN)
            res = self._task_event(s, level)
            if res is not None:
                return res
        if "example_format: '" in s and not s.endswith("'"):
            self.template = 1  # a chat template printed over the following lines
        if s.startswith(("srv  log_server_r:", "request: ", "done request: ")):
            i = s.find("request: ")
            parts = s[i + 9:].split()
            if len(parts) == 4 and parts[3].isdigit() and len(parts[3]) == 3:
                return [http_record(self.provider, parts[0], parts[1], parts[3]), *_log(level)]
        if s.startswith(_OWN_STARTS[:-1]):
            return _log(level) or IGNORED
        return None

    def _timing_text(self, text: str, task: str | None, level: str) -> Any:
        t = _timing(text)
        if t is None:
            return None
        kind, ms, n = t
        out: list[dict[str, Any]] = []
        if kind == "other":
            if text.startswith(("graphs reused", "load time")):
                out = self._close()  # `graphs reused` ends a newest build's block; `load time` starts the library's
            return out + _log(level)
        b = self.block
        if b is not None and ((task is not None and task != b.task) or (kind == "prompt" and b.prompt_ms is not None)
                              or (kind == "eval" and b.eval_ms is not None)):
            out = self._close()  # another task's line, or a second prompt or eval line: the block before is done
            b = None
        if b is None:
            b = self.block = _Block(task or "")
        if kind == "prompt":
            b.prompt_ms, b.prompt_n = ms, n
        elif kind == "eval":
            b.eval_ms, b.eval_n = ms, n
        elif kind == "total":
            b.total_ms = ms
            out += self._close()
        return out + _log(level)

    def _close(self) -> list[dict[str, Any]]:
        b = self.block
        self.block = None
        if b is None or (b.eval_ms is None and b.prompt_ms is None and b.total_ms is None):
            return []
        if b.task == "lib" and self.shared.get("cli"):
            return []  # an interactive session's summary, not a server request
        if b.task and b.task != "lib" and not self._first(b.task):
            return []  # this task was counted already (its error or cancel line came first)
        if self.shared.get("front_door"):
            return []  # the front door's access line counts this request
        self.shared["engine_counted"] = self.shared.get("engine_counted", 0) + 1
        return [request_record(self.provider, b.prompt_ms, b.prompt_n, b.eval_ms, b.eval_n, b.total_ms)]

    def _first(self, task: str) -> bool:
        """Whether `task` is seen for the first time (then it is remembered; bounded)."""
        tasks = self.tasks
        if task in tasks:
            return False
        tasks[task] = None
        if len(tasks) > MAX_TASKS:
            tasks.popitem(last=False)
        return True

    def _task_event(self, s: str, level: str) -> list[dict[str, Any]] | None:
        """`send_error` (a failed request) and `cancel task` (an aborted one) lines; None for others."""
        i = s.find("send_error:", 0, 40)
        if i >= 0:
            rest = s[i + 11:]
            k = rest.find("error")
            head, err = (rest[:k], rest[k + 5:]) if k >= 0 else (rest, "")
            task = "".join(ch for ch in head if ch.isdigit())
            _, cls = errors.classify_event(err)
            rec = {"kind": "request", "provider": self.provider, "operation": "", "model": "",
                   "outcome": "error", "error_type": cls}
        elif "cancel task, id_task = " in s[:60]:
            task = s.rsplit("=", 1)[1].strip()
            rec = {"kind": "request", "provider": self.provider, "operation": "", "model": "",
                   "outcome": "aborted", "error_type": ""}
        else:
            return None
        out = _log(level)
        if not task.isdigit() or not self._first(task) or self.shared.get("front_door"):
            return out or []
        return [rec, *out]

    def flush(self) -> list[dict[str, Any]]:
        return self._close()

    # -- JSON ------------------------------------------------------------------------------------

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        if obj is None:
            return None
        timings = obj.get("timings")
        if type(timings) is dict and ("predicted_n" in timings or "prompt_n" in timings):
            return _from_timings(self.provider, timings, obj)
        func, msg = obj.get("function"), obj.get("msg")
        if msg is None:
            msg = obj.get("message")  # the 2023 server
        if type(func) is not str or type(msg) is not str or not ("tid" in obj or "id_slot" in obj
                                                                  or "timestamp" in obj):
            return None
        lv = obj.get("level")
        level = _ERA2_LEVELS.get(lv, "") if type(lv) is str else ""
        if func == "print_timings":
            tid = obj.get("id_task", obj.get("task_id"))
            res = self._timing_text(msg.strip(), str(tid) if tid is not None else None, level)
            if res is not None:
                return res
        if func == "log_server_request":
            method, path, status = obj.get("method"), obj.get("path"), obj.get("status")
            if type(method) is str and type(path) is str and type(status) is int:
                return [http_record(self.provider, method, path, str(status)), *_log(level)]
        return _log(level) or IGNORED


def _log(level: str) -> list[dict[str, Any]]:
    return [{"kind": "log", "provider": "llamacpp", "level": level}] if level else []


def _num(v: Any) -> float | None:
    """A timings figure: a JSON number only (text is not a figure in llama.cpp's JSON)."""
    return None if type(v) is str else nonneg(v)


def _from_timings(provider: str, t: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    pn, en = _num(t.get("prompt_n")), _num(t.get("predicted_n"))
    pms, ems = _num(t.get("prompt_ms")), _num(t.get("predicted_ms"))
    total = (pms or 0.0) + (ems or 0.0) if pms is not None or ems is not None else None  # derived
    rec = request_record(provider, pms, int(pn) if pn is not None else None,
                         ems, int(en) if en is not None else None, total)
    cn = _num(t.get("cache_n"))
    if pn is not None and cn is not None:
        rec["prompt_tokens"] = int(pn) + int(cn)
        rec["cached_tokens"] = int(cn)
    model = obj.get("model")
    if type(model) is str:
        rec["model"] = model[:128]
    return rec


def request_record(provider: str, prompt_ms: float | None, prompt_n: int | None, eval_ms: float | None,
                   eval_n: int | None, total_ms: float | None) -> dict[str, Any]:
    """One request from llama.cpp's timing numbers (milliseconds and token counts)."""
    rec: dict[str, Any] = {"kind": "request", "provider": provider, "operation": "", "model": "",
                           "outcome": "success", "error_type": ""}
    if prompt_n is not None:
        rec["input_tokens"] = prompt_n
    if eval_n is not None:
        rec["output_tokens"] = eval_n
    if total_ms is not None:
        rec["duration_s"] = total_ms / 1000.0
    if prompt_ms is not None:
        rec["ttft_s"] = prompt_ms / 1000.0
    if eval_ms is not None and eval_n:
        rec["tpot_s"] = eval_ms / eval_n / 1000.0
    return rec
