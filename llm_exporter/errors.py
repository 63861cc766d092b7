"""The bounded vocabulary of error types, and the one classifier every adapter uses.

Well-known exception names fold into the shared classes (`oom`, `timeout`, ...) so that one
alert works for every server; any other short identifier an application logs is kept as is
(the cardinality limit still applies); anything else becomes `_OTHER`.

Free text (a server's error line, an application's `error` field) goes through
`classify_event`, which also says what the line is about: `request` (one request failed or was
cut off: count that request once, with this class), `incident` (the engine itself failed: engine
death and its traceback, a fatal scheduler or shard error, a runner crash, OOM while loading;
counted in `llm_server_errors_total`, never as a failed request), or neither (the caller's
context decides). Request phrases are tried before incident phrases, so `Request X failed
(engine dead).` is one failed request of class `engine_dead`, not an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import re2  # type: ignore[import-untyped]

from llm_exporter.labels import OTHER as OTHER

#: Shared classes, in the words of ../CONTRACT.md.
CLASSES = ("validation", "not_found", "overloaded", "oom", "timeout", "engine_dead", "client_disconnect",
           "template")

_KNOWN: dict[str, str] = {}
for _cls, _names in {
    "oom": ("oom", "outofmemory", "outofmemoryerror", "cudaoutofmemoryerror", "memoryerror", "out_of_memory"),
    "timeout": ("timeout", "timeouterror", "readtimeout", "timeoutexception", "deadlineexceeded",
                "requesttimeout", "connecttimeout", "timed_out"),
    "validation": ("validation", "validationerror", "vllmvalidationerror", "requestvalidationerror",
                   "invalid_request", "invalid_request_error", "badrequesterror", "exceed_context_size_error",
                   "context_length_exceeded", "contextwindowexceedederror", "unprocessableentityerror",
                   "unsupportedparamserror"),
    "overloaded": ("overloaded", "toomanyrequests", "ratelimiterror", "rate_limit", "rate_limited", "rate_limit_error",
                   "queuefull", "overloadederror", "serviceunavailableerror"),
    "engine_dead": ("engine_dead", "enginedeaderror", "asyncenginedeaderror", "mqenginedeaderror"),
    "client_disconnect": ("client_disconnect", "clientdisconnect", "clientdisconnected",
                          "cancellederror", "disconnected", "aborted", "cancelled", "canceled"),
    "template": ("template", "templateerror", "templatesyntaxerror", "template_error"),
}.items():
    for _n in _names:
        _KNOWN[_n] = _cls

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
#: an error name kept as a label value: an identifier, length-capped, few digits (see label_rules)
_LABEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}", re.ASCII)


def normalize(name: str) -> str:
    """Map an application's error name (`torch.OutOfMemoryError`, `ValueError`) to a label value."""
    last = name.strip().rpartition(".")[2]
    known = _KNOWN.get(last.lower())
    if known is not None:
        return known
    if _LABEL_NAME.fullmatch(last) and sum(c.isdigit() for c in last) <= 4:
        return last
    return classify_event(name)[1]  # free text (`Error code: 400 - {...}`): its class, or _OTHER


def error_name(v: Any) -> str:
    """The error name a JSON request line's error field gives, for `normalize` (`` for none): a
    string as it is; a number as its digits; an error object's `type`, else its `code`, each read
    the same way; `true` a failure of no known class (`_OTHER`); false, null, an empty string, a
    list or an object inside the object name none. Shared by every JSON request reader."""
    if type(v) is dict:
        v = v.get("type") or v.get("code")
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is bool:
        return OTHER if v else ""
    if t is int or t is float:
        return str(v)
    return ""


def from_http_status(code: int) -> str:
    """Error type for a failed HTTP status code logged in place of an error name."""
    if code == 429 or code == 503:
        return "overloaded"
    if code in (408, 504):
        return "timeout"
    if code in (400, 413, 422):
        return "validation"
    if code == 499:
        return "client_disconnect"
    if code == 404:
        return "not_found"
    return OTHER


# Free-text rules: ordered, first match wins; matched on a lower-cased, length-capped copy of the
# message only, never on a whole payload.
_MESSAGE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("oom", ("out of memory", "outofmemoryerror", "cuda oom", "oom-kill", "failed to allocate memory",
             "cudamalloc failed", "memory allocation failed")),
    ("engine_dead", ("enginedeaderror", "engine loop is not running", "enginecore encountered",
                     "engine is dead", "engine dead", "engine core died", "background loop has errored",
                     "engine_dead")),
    ("overloaded", ("no permits available", "model is overloaded", "too many requests", "queue is full",
                    "server is busy", "overloaded", "rate limit", "ratelimiterror", "no deployments available",
                    "no healthy deployment")),
    ("template", ("template error", "templateerror", "templatesyntaxerror", "chat template")),
    ("client_disconnect", ("receiver dropped", "client disconnected", "client disconnect",
                           "client closing the connection", "client closed", "cancel task",
                           "connection reset by peer", "broken pipe")),
    ("timeout", ("timed out", "timeout", "deadline exceeded")),
    ("validation", ("validation", "maximum context length", "must be <=", "must be <", "must be >",
                    "must be strictly positive", "must be positive", "must be non-negative",
                    "cannot be empty", "must have less than", "is not supported", "does not support parameters",
                    "invalid input",
                    "must be at most", "must be at least", "bad request", "badrequesterror", "is too long",
                    "exceeds the", "exceed_context_size", "context size has been exceeded",
                    "context length", "context_length_exceeded", "context window", "exceeds the maximum",
                    "invalid_request_error")),
)
MESSAGE_SCAN = 400  # characters of a message the classifier looks at

#: phrases that say one request failed or was cut off (tried first)
_REQUEST_PHRASES = ("request failed", "failed (engine dead)", "receiver dropped", "aborting completion request",
                    "client closing the connection", "cancel task", "send_error", "no permits available",
                    "aborted request", "abort request", "exceed_context_size_error",
                    "exceeds the available context size", "context size has been exceeded",
                    "is longer than the model's context length", "maximum context length",
                    "input validation error", "must be <=", "template error", "incomplete generation")
#: phrases that say the engine itself failed (never a request's failure)
_INCIDENT_PHRASES = ("scheduler hit an exception", "received sigquit", "hit an exception",
                     "enginecore encountered", "enginecore failed", "engine core initialization failed",
                     "enginedeaderror", "engine loop is not running", "background loop has errored",
                     "engine core proc", "worker proc", "workerproc", "died unexpectedly",
                     "llama runner process", "llama runner terminated", "error loading llama server",
                     "error loading model", "exception loading model", "failed to load model",
                     "shard complete standard error", "shard process was signaled", "failed to start",
                     "shardcannotstart", "shardfailed", "webserverfailed", "webserver crashed",
                     "encountered an error", "shard terminated unexpectedly",
                     "sigsegv:", "sigabrt:", "sigbus:", "sigill:", "fatal error:", "panic:", "segmentation fault",
                     "core dumped", "illegal memory access", "nccl error", "watchdog caught collective",
                     "panicked at", "failed to start process", "upstream command exited")

REQUEST = "request"
INCIDENT = "incident"


class _AnyOf:
    """Finds any of some plain phrases in a line: one RE2 scan (a DFA over all the phrases, linear
    in the line) instead of a Python loop of `in` tests; Python's `re` stands in for a string RE2
    cannot take (lone surrogates). Same answer as `any(p in t for p in phrases)` (one phrase or more)."""

    __slots__ = ("_re", "_re2")

    def __init__(self, phrases: Iterable[str]) -> None:
        pattern = "|".join(map(re.escape, phrases))
        self._re2 = re2.compile(pattern)
        self._re = re.compile(pattern)

    def __call__(self, t: str) -> bool:
        try:
            return self._re2.search(t) is not None
        except UnicodeError:
            return self._re.search(t) is not None


#: each class's phrases as one pattern, in rule order; and every phrase of every class
_MESSAGE_RES = tuple((cls, _AnyOf(needles)) for cls, needles in _MESSAGE_RULES)
_ANY_MESSAGE = _AnyOf(n for _, needles in _MESSAGE_RULES for n in needles)
_REQUEST_RE = _AnyOf(_REQUEST_PHRASES)
_INCIDENT_RE = _AnyOf(_INCIDENT_PHRASES)


def _message_class(t: str) -> str:
    if not _ANY_MESSAGE(t):  # most lines name no class: one scan and out
        return OTHER
    for cls, found in _MESSAGE_RES:
        if found(t):
            return cls
    return OTHER


def classify_message(text: str) -> str:
    """The error class of a server's free-text error message; `_OTHER` when none fits."""
    return _message_class(text[:MESSAGE_SCAN].lower())


def classify_event(text: str) -> tuple[str, str]:
    """(scope, error_type) of a free-text error line: scope `request` (one request failed or was cut
    off), `incident` (the engine failed; not a request), or `` (the line does not say)."""
    t = text[:MESSAGE_SCAN].lower()
    cls = _message_class(t)
    if _REQUEST_RE(t):
        return REQUEST, cls
    if _INCIDENT_RE(t):
        return INCIDENT, cls if cls in ("oom", "timeout") else "engine_dead"
    return "", cls


#: the most characters an exception's name (with its module path) may take, colon included
_NAME_SCAN = 200


def exception_name(line: str) -> str | None:
    """`torch.OutOfMemoryError` from `torch.OutOfMemoryError: CUDA out of memory...`, or from a
    traceback's last line without a message (`asyncio.exceptions.CancelledError`); else None."""
    head = line[:_NAME_SCAN].partition(":")[0]
    if not head or len(head) == _NAME_SCAN or " " in head:
        return None
    last = head.rpartition(".")[2]
    if last.endswith(("Error", "Exception", "Exit", "Interrupt")) and _IDENT.fullmatch(last):
        return head
    return None


def classify_exception(line: str) -> str:
    """Class of an exception line (`ValueError: This model's maximum context length ...`):
    a known exception name first, else its message; `_OTHER` when neither says."""
    name = exception_name(line)
    if name is not None:
        known = _KNOWN.get(name.rpartition(".")[2].lower())
        if known is not None:
            return known
    return classify_message(line)


SUCCESS_WORDS = frozenset({"success", "succeeded", "ok", "completed", "complete", "done", "finished", "200"})
ERROR_WORDS = frozenset({"error", "failed", "failure", "fail", "exception", "timeout"})
ABORT_WORDS = frozenset({"aborted", "abort", "cancelled", "canceled", "client_disconnect"})
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL"})


def outcome_of(status: Any, err_name: str = "", level: Any = None) -> tuple[str, str]:
    """(outcome, error_type) of one request from what its log line says: a `status` word, HTTP
    code or bool; an error's name; the line's level. Shared by every JSON request reader."""
    if status is not None:
        if type(status) is bool:
            status = "success" if status else "error"
        if type(status) is int:
            if status >= 400:
                return "error", normalize(err_name) if err_name else from_http_status(status)
            return "success", ""
        s = str(status).lower()
        if s in SUCCESS_WORDS:
            return "success", ""
        if s in ABORT_WORDS:
            return "aborted", ""
        if s in ERROR_WORDS:
            if err_name:
                return "error", normalize(err_name)
            return "error", "timeout" if s == "timeout" else OTHER
    if err_name:
        return "error", normalize(err_name)
    if type(level) is str and level.upper() in _ERROR_LEVELS:
        return "error", OTHER
    return "success", ""
