"""What a label value fed from input may look like, per label; anything else becomes `_OTHER`.

Log lines are written by servers and applications, and sometimes carry secrets or free text
where a name belongs (`"error": "sk-live-..."`). A label value is public (every scrape, the page,
Prometheus' storage), so only values of the shape each label is meant to have are kept:

- `error_type`: a shared class, or an identifier `[A-Za-z][A-Za-z0-9_.]*` of at most 48
  characters with at most 4 digits (an exception name, not a key or a token);
- `code`: exactly three ASCII digits, 100-599; `method`: 1-10 ASCII capital letters;
- `gen_ai_request_model`, and a LoRA adapter (`llm_adapter`): `[A-Za-z0-9._:/@+=-]`, at most 128
  characters (`Qwen/Qwen2.5-7B-Instruct`);
- `path`: `/` then `[A-Za-z0-9._~/%:@+=-]`, at most 128 characters;
- operation, provider, finish reason, `engine`, `level`: `[A-Za-z0-9_.:-]`, at most 64 characters;
- extra labels of `--config` and custom metric labels: printable ASCII, at most 128 characters.
- `tenant`: judged by `llm_exporter.accounting` (printable, at most 64 characters, not shaped like
  a credential, on the allow-list when there is one).

The empty value is always kept (the field was absent). The cardinality limit (`--label-limit`)
applies after this rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from llm_exporter.errors import CLASSES
from llm_exporter.labels import OTHER

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,47}", re.ASCII)
_CODE = re.compile(r"[1-5][0-9]{2}", re.ASCII)
_METHOD = re.compile(r"[A-Z]{1,10}", re.ASCII)
_MODEL = re.compile(r"[A-Za-z0-9._:/@+=-]{1,128}", re.ASCII)
_PATH = re.compile(r"/[A-Za-z0-9._~/%:@+=-]{0,127}", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
_TEXT = re.compile(r"[\x20-\x7e]{1,128}", re.ASCII)
_KNOWN_ERRORS = frozenset((*CLASSES, OTHER, ""))
#: values already judged, per rule (values repeat: most lines pay one set lookup per label)
_CACHE_MAX = 8192


def _error_type(v: str) -> bool:
    if v in _KNOWN_ERRORS:
        return True
    return _IDENT.fullmatch(v) is not None and sum(c.isdigit() for c in v) <= 4


def _rule(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: pattern.fullmatch(v) is not None


RULES: dict[str, Callable[[str], bool]] = {
    "error_type": _error_type,
    "code": _rule(_CODE),
    "method": _rule(_METHOD),
    "model": _rule(_MODEL),
    "path": _rule(_PATH),
    "operation": _rule(_NAME),
    "provider": _rule(_NAME),
    "finish_reason": _rule(_NAME),
    "engine": _rule(_NAME),
    "level": _rule(_NAME),
    "text": _rule(_TEXT),
}
_good: dict[str, set[str]] = {k: set() for k in RULES}


def allowed(rule: str, v: Any) -> bool:
    """Whether `v` may be a value of a label of kind `rule` (a key of RULES)."""
    if type(v) is not str:
        return False
    good = _good[rule]
    if v in good or v == "":
        return True
    if not RULES[rule](v):
        return False
    if len(good) < _CACHE_MAX:
        good.add(v)
    return True


def clean(rule: str, v: Any) -> Any:
    """`v` when allowed, else `_OTHER` (None stays None: the field is absent)."""
    if v is None:
        return None
    return v if allowed(rule, v) else OTHER


#: record kind -> (field, rule) of each label it carries
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "request": (("provider", "provider"), ("operation", "operation"), ("model", "model"),
                ("error_type", "error_type"), ("finish_reason", "finish_reason"), ("adapter", "model")),
    "stats": (("provider", "provider"), ("model", "model"), ("engine", "engine")),
    "http": (("provider", "provider"), ("method", "method"), ("path", "path"), ("code", "code")),
    "log": (("provider", "provider"), ("level", "level"), ("error_type", "error_type")),
    "server_error": (("provider", "provider"), ("error_type", "error_type")),
    "tokens": (("provider", "provider"), ("model", "model"), ("engine", "engine")),
    "custom": (),
}


def sanitize(rec: dict[str, Any]) -> None:
    """Replace, in place, every label value of `rec` that its rule does not allow by `_OTHER`."""
    for field, rule in _FIELDS.get(rec.get("kind", ""), ()):
        v = rec.get(field)
        if v is not None and not allowed(rule, v):
            rec[field] = OTHER
    for key in ("extra_labels", "labels"):
        extra = rec.get(key)
        if extra:
            for k, v in extra.items():
                if v is not None and not allowed("text", v):
                    extra[k] = OTHER
