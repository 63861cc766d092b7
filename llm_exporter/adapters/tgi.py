"""Hugging Face TGI: the router's `Success` lines and error lines, text and `--json-output`.

Text lines are `<RFC3339>Z <LEVEL> [<span chain>: ]<target>: [<file>:<line>: ]<message>`. The span
chain can hold Debug-printed request parameters (stop strings are user text), so it is never
split or matched as a whole: a `Success` line is recognised by its end, and its timing fields
are read from the last ` total_time="` onwards, the part TGI writes after the parameters.

Each `Success` is one finished request: duration, queue and inference time, time per token,
and output tokens = round(inference_time / time_per_token) (Rust's `Duration / u32` truncates to
whole nanoseconds, so this is exact to ±1 token). Errors logged inside a request's span, or
saying that one request failed (`Failed to send event. Receiver dropped.`: the client went away),
are one failed or aborted request each, classified by message (`no permits available` →
overloaded, ...); shard and launcher failures are server incidents, never requests. Lines that
follow a record without any prefix (Python tracebacks relayed by the launcher, multi-line CUDA
messages, prompts in DEBUG lines) belong to it: a record is counted once, and an error record
is classified when its last line has been seen. JSON lines (two shapes: the launcher's with the
message under `fields`, the router's flattened) carry the same data.
"""

from __future__ import annotations

import re
from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.base import IGNORED, Adapter, Invalid
from llm_exporter.units import parse_duration

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_LEVEL_STARTS = ("INFO ", "WARN ", "ERROR ", "DEBUG ", "TRACE ")
#: spans a request's own log lines are logged in, and the operation each one serves
REQUEST_SPANS = {
    "chat_completions": "chat",
    "completions": "text_completion",
    "generate": "text_completion",
    "generate_stream": "text_completion",
    "compat_generate": "text_completion",
    "vertex_compatibility": "",
    "sagemaker_compatibility": "",
    "HTTP request": "",
}
_TIMING = re.compile(r'(\w+)="([^"]*)"')
#: a request span inside a wrapper span (`HTTP request{...}:generate{...}`): its name, whole
_INNER_SPAN = re.compile(":(" + "|".join(n for n, op in REQUEST_SPANS.items() if op) + r")(?=[{:]|$)")
#: how far into a wrapper span's chain the request span inside it is looked for
INNER_SCAN = 2000
MAX_BLOCK_LINES = 200
#: how the launcher's `Args` line starts (the Debug print of its arguments; `model_id` comes first)
_ARGS = 'Args { model_id: "'
#: the longest model id read from it (a longer one is cut or not a model id: left unread)
MAX_MODEL_ID = 255


class _Block:
    """A record whose continuation lines may still come."""

    __slots__ = ("error", "lines", "operation", "text")

    def __init__(self, text: str, error: bool, operation: str | None) -> None:
        self.text, self.error, self.operation = text, error, operation
        self.lines = 1


class TgiAdapter(Adapter):
    """TGI launcher and router lines, default text format and `--json-output`."""

    name = "tgi"
    provider = "tgi"
    wants_obj = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.model = ""
        self.block: _Block | None = None

    # -- text ------------------------------------------------------------------------------------

    def parse_text(self, text: str) -> Any:
        c = text[:1]
        rest: str | None = None
        if c.isdigit():
            if len(text) > 27 and text[4] == "-" and text[10] == "T" and text[13] == ":":
                sp = text.find(" ", 19, 40)
                if sp > 0 and text[sp - 1] == "Z":
                    rest = text[sp:].lstrip()
        elif text.startswith(_LEVEL_STARTS) and len(text) > 6 and not text[6].isdigit():
            rest = text
        if rest is not None:
            sp = rest.find(" ")
            level = rest[:sp]
            if level in LEVELS:
                res = self._line(level, rest[sp + 1:].lstrip())
                if res is not None:
                    return res
        if text.startswith("Error: ") and text[7:].strip().isidentifier() and self.block is not None:
            # the launcher's exit (`Error: ShardCannotStart`, `Error: WebserverFailed`): the server died
            return [*self._close(), {"kind": "server_error", "provider": self.provider, "error_type": "engine_dead"},
                    *_log("ERROR")]
        return self._continuation(text)

    def _continuation(self, text: str) -> Any:
        b = self.block
        if b is None or b.lines >= MAX_BLOCK_LINES:
            return None
        b.lines += 1
        if b.error and b.lines <= 40:
            b.text += "\n" + text[:300]
        return []

    def _line(self, level: str, body: str) -> Any:
        if body.startswith("text_generation"):
            spans = ""
            after = body
        else:
            # A Success line ends with its message, so its target is the last one; elsewhere the
            # first (a message may quote a Python path such as `text_generation_server/...`).
            i = body.rfind(": text_generation") if body.endswith(": Success") else body.find(": text_generation")
            if i < 0:
                return None
            spans = body[:i]
            after = body[i + 2:]
        k = after.find(": ")
        if k < 0:
            target, msg = after.rstrip(":"), ""
        else:
            target, msg = after[:k], after[k + 2:]
            head, sep, tail = msg.partition(": ")
            if sep and ".rs:" in head and " " not in head:
                msg = tail
        out = self._close()
        op = _request_operation(spans)
        if level == "INFO" and msg == "Success":
            return [*out, self._success(spans, op or ""), *_log(level)]
        if target == "text_generation_launcher":
            self._model_from_args(msg)
        if level != "INFO" or target == "text_generation_launcher":
            # only these go on over unprefixed lines (tracebacks, prompts, shard messages)
            self.block = _Block(msg, level == "ERROR", op)
        if level == "ERROR":
            return out  # handed out when its last line has been seen
        return out + _log(level)

    def _success(self, spans: str, op: str) -> dict[str, Any]:
        i = spans.rfind(' total_time="')
        if i < 0:
            i = spans.rfind('{total_time="')
        if i < 0:
            raise Invalid("tgi_no_timings")
        fields = dict(_TIMING.findall(spans, i))
        rec = self._request_from_timings(fields, op)
        adapter = _adapter_id(spans, i)
        if adapter:
            rec["adapter"] = adapter
        return rec

    def _request_from_timings(self, fields: dict[str, Any], op: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": "request", "provider": self.provider, "operation": op,
                               "model": self.model, "outcome": "success", "error_type": ""}
        for name, canon in (("total_time", "duration_s"), ("queue_time", "queue_s"),
                            ("inference_time", "inference_s"), ("time_per_token", "tpot_s")):
            v = fields.get(name)
            if v is None:
                continue
            s = parse_duration(v)
            if s is None or not any(ch.isalpha() for ch in v):
                raise Invalid("bad_duration")
            rec[canon] = s
        inf, tpot = rec.get("inference_s"), rec.get("tpot_s")
        if inf is not None and tpot:
            rec["output_tokens"] = round(inf / tpot)
        if "duration_s" not in rec:
            raise Invalid("tgi_no_timings")
        return rec

    def _model_from_args(self, msg: str) -> None:
        """The model of the launcher's `Args { model_id: "...", ... }` line (other lines: nothing)."""
        if not msg.startswith(_ARGS):
            return
        name, quote, _ = msg[len(_ARGS): len(_ARGS) + MAX_MODEL_ID + 1].partition('"')
        if quote:
            self.model = name

    def _close(self) -> list[dict[str, Any]]:
        b = self.block
        self.block = None
        if b is None or not b.error:
            return []
        return _error_records(self.provider, self.model, b.text, b.operation)

    def flush(self) -> list[dict[str, Any]]:
        return self._close()

    # -- JSON ------------------------------------------------------------------------------------

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        if obj is None:
            return None
        target = obj.get("target")
        if type(target) is not str or not target.startswith("text_generation"):
            return None
        msg = obj.get("message")
        if msg is None:
            f = obj.get("fields")
            msg = f.get("message") if type(f) is dict else None
        if type(msg) is not str:
            return IGNORED
        lv = obj.get("level")
        level = lv if type(lv) is str and lv in LEVELS else ""
        out = self._close()
        op = _json_operation(obj)
        if level == "INFO" and msg == "Success":
            span = obj.get("span")
            if type(span) is not dict:
                raise Invalid("tgi_no_timings")
            fields = {k: v for k, v in span.items() if type(v) is str}
            name = span.get("name")
            op = REQUEST_SPANS.get(name, "") if type(name) is str else ""
            rec = self._request_from_timings(fields, op)
            params = span.get("parameters")
            if type(params) is str and (adapter := _adapter_id(params, len(params))):
                rec["adapter"] = adapter
            return [*out, rec, *_log(level)]
        if target == "text_generation_launcher":
            self._model_from_args(msg)
        if level == "ERROR":
            return [*out, *_error_records(self.provider, self.model, msg, op)]
        return out + _log(level) if level else (out or IGNORED)


def _adapter_id(text: str, end: int) -> str | None:
    """The LoRA adapter of a request's parameters: `adapter_id: Some("org/name") }` must close the
    `GenerateParameters` that ends at `end` (it is its last field; the stop strings and grammar
    before it are user text, so nothing earlier is matched)."""
    seg = text[max(0, end - 400): end]
    if not seg.endswith('") }'):
        return None
    i = seg.rfind('adapter_id: Some("')
    if i < 0:
        return None
    name = seg[i + 18: -4]
    return name if name and '"' not in name else None


def _log(level: str) -> list[dict[str, Any]]:
    return [{"kind": "log", "provider": "tgi", "level": "WARNING" if level == "WARN" else level}]


def _request_operation(spans: str) -> str | None:
    """The operation of a request span chain (`generate_stream{...}:async_stream:...`), or None
    when the line is not logged inside a request (batch-level spans, launcher lines)."""
    name = spans.partition("{")[0].partition(":")[0]
    op = REQUEST_SPANS.get(name)
    if op == "":
        # a wrapper span: the first request span inside it names the operation
        m = _INNER_SPAN.search(spans, len(name), len(name) + INNER_SCAN)
        if m is not None:
            return REQUEST_SPANS[m[1]]
    return op


def _json_operation(obj: dict[str, Any]) -> str | None:
    spans = obj.get("spans")
    first = spans[0] if type(spans) is list and spans and type(spans[0]) is dict else obj.get("span")
    name = first.get("name") if type(first) is dict else None
    if type(name) is str and name in REQUEST_SPANS:
        return REQUEST_SPANS[name]
    return None


def _error_records(provider: str, model: str, text: str, operation: str | None) -> list[dict[str, Any]]:
    """A TGI error record: an incident (shard failure, `Method Prefill encountered an error`, ...) is
    a server error; an error that says one request failed, or one logged in a request's span, is a
    failed (or, for a client gone away, aborted) request; anything else is an ERROR log record."""
    scope, cls = errors.classify_event(text)
    for ln in reversed(text.splitlines()[-20:]):  # a relayed traceback's exception line says more
        c = errors.classify_exception(ln.strip())
        if c != errors.OTHER and (cls == errors.OTHER or scope == errors.INCIDENT):
            cls = c
            break
    log = {"kind": "log", "provider": provider, "level": "ERROR", "error_type": cls}
    if scope == errors.INCIDENT:
        return [log, {"kind": "server_error", "provider": provider, "error_type": cls}]
    if operation is None:
        if scope != errors.REQUEST:
            return [log]
        # `Failed to send event. Receiver dropped.` is logged outside the span, by the
        # multi-prompt /v1/completions handler only
        operation = "text_completion" if "receiver dropped" in text[:200].lower() else ""
    if cls == "client_disconnect":
        return [log, {"kind": "request", "provider": provider, "operation": operation, "model": model,
                      "outcome": "aborted", "error_type": ""}]
    return [log, {"kind": "request", "provider": provider, "operation": operation, "model": model,
                  "outcome": "error", "error_type": cls}]
