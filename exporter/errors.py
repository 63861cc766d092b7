"""The bounded vocabulary of request error types, and how free names map onto it.

Well-known exception names fold into the shared classes (`oom`, `timeout`, ...) so that one
alert works for every server; any other short identifier an application logs is kept as is
(the cardinality limit still applies); anything else becomes `_OTHER`.
"""

from __future__ import annotations

import re

OTHER = "_OTHER"

#: Shared classes, in the words of ../CONTRACT.md.
CLASSES = ("validation", "overloaded", "oom", "timeout", "engine_dead", "client_disconnect", "template")

_KNOWN: dict[str, str] = {}
for _cls, _names in {
    "oom": ("oom", "outofmemory", "outofmemoryerror", "cudaoutofmemoryerror", "memoryerror", "out_of_memory"),
    "timeout": ("timeout", "timeouterror", "readtimeout", "timeoutexception", "deadlineexceeded",
                "requesttimeout", "connecttimeout", "timed_out"),
    "validation": ("validation", "validationerror", "vllmvalidationerror", "requestvalidationerror",
                   "invalid_request", "invalid_request_error", "badrequesterror"),
    "overloaded": ("overloaded", "toomanyrequests", "ratelimiterror", "rate_limit", "rate_limited",
                   "queuefull", "overloadederror"),
    "engine_dead": ("engine_dead", "enginedeaderror", "asyncenginedeaderror", "mqenginedeaderror"),
    "client_disconnect": ("client_disconnect", "clientdisconnect", "clientdisconnected",
                          "cancellederror", "disconnected"),
    "template": ("template", "templateerror", "templatesyntaxerror", "template_error"),
}.items():
    for _n in _names:
        _KNOWN[_n] = _cls

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def normalize(name: str) -> str:
    """Map an application's error name (`torch.OutOfMemoryError`, `ValueError`) to a label value."""
    last = name.strip().rsplit(".", 1)[-1]
    known = _KNOWN.get(last.lower())
    if known is not None:
        return known
    return last if _IDENT.fullmatch(last) else OTHER


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
    return OTHER
