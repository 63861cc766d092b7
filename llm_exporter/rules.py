"""Text-line rules of the `--config` file (`rules:`): compiling and explaining their patterns.

A rule's pattern is compiled with RE2 (the `google-re2` binding), whose matching time is linear
in the line's length whatever the pattern: a hostile or careless pattern cannot stall the
pipeline on a crafted line, as a backtracking engine (Python's `re`) can. RE2 has no
backreferences or lookaround; a pattern using them is refused with that reason.

Every named group is a field name of the application JSON line (`input_tokens`, `duration_ms`,
`status`, ...; `llm-exporter schema` lists them), read as that field would be; `ts` is the line's
own time (start/end pairing), and a group named in the rule's `labels:` feeds that label.
`check_pattern` says what is wrong with a pattern in one sentence: its syntax, a group name that
is not a field, or a count or duration group that can never match a number.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]

from llm_exporter.adapters.app_json import KNOWN_NAMES, NOT_TEXT, NUMERIC_NAMES

#: the group holding a line's own time (start/end pairing)
TS_GROUP = "ts"
#: the group start and end lines share
ID_GROUP = "request_id"
#: the longest pattern accepted
MAX_PATTERN = 4096
#: memory RE2 may use for one compiled pattern (its program and DFA cache)
MAX_MEM = 8 << 20

_OPTIONS = re2.Options()
_OPTIONS.max_mem = MAX_MEM
_OPTIONS.log_errors = False

#: numbers as logs write them: a count group must match one of the integers, a duration group any
_INTEGERS = ("0", "1", "7", "42", "512", "1234", "65536")
_DURATIONS = (*_INTEGERS, "0.5", "1.25", "12.345", "735.2ms", "1.5s", "250us", "8m44s", "2.5 ms")


def allowed_groups(labels: dict[str, str]) -> frozenset[str]:
    """Group names a rule may use: the JSON line's field names, `ts`, and its labels' sources."""
    return frozenset(KNOWN_NAMES - NOT_TEXT) | {TS_GROUP} | frozenset(labels.values())


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The RE2 program of a pattern (re2.error when it is not one)."""
    return re2.compile(pattern, _OPTIONS)


def check_pattern(pattern: str, labels: dict[str, str], need_id: bool = False) -> Any:
    """The compiled pattern, or ValueError saying in one sentence what is wrong with it."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"pattern longer than {MAX_PATTERN} characters")
    try:
        prog = compile_pattern(pattern)
    except re2.error as e:
        msg = e.args[0] if e.args else ""
        raise ValueError(_syntax(pattern, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg))) \
            from None
    groups = list(prog.groupindex)
    if not groups:
        raise ValueError("the pattern has no named group: name what it captures, e.g. (?P<duration_ms>[0-9.]+)")
    allowed = allowed_groups(labels)
    for g in groups:
        if g not in allowed:
            hint = " (a JSON object: name its parts, e.g. input_tokens)" if g in NOT_TEXT else ""
            raise ValueError(f"unknown group name {g!r}{hint}: a group is a field name of the application JSON "
                             "line (llm-exporter schema lists them), ts (the line's time) or a source named "
                             "in labels:")
    for g in groups:
        if g in NUMERIC_NAMES:
            sub = _group_text(pattern, g)
            if sub is None:
                continue
            try:
                sub_prog = compile_pattern(sub)
            except re2.error:
                continue  # only whole in its context (rare); the full pattern compiled
            samples = _DURATIONS if g not in _COUNTS else _INTEGERS
            if not any(sub_prog.fullmatch(x) for x in samples):
                what = "a count" if g in _COUNTS else "a duration"
                raise ValueError(f"group {g!r} ({sub}) can never match a number, but it is {what}: "
                                 f"it matches none of {', '.join(samples[:5])}, ...")
    if need_id and ID_GROUP not in groups:
        raise ValueError("start and end patterns must both capture (?P<request_id>...), the id that pairs them")
    for label, g in labels.items():
        if g not in groups and not need_id:
            raise ValueError(f"label {label!r} reads group {g!r}, which the pattern does not have")
    return prog


_COUNTS = frozenset(n for n in NUMERIC_NAMES if "token" in n)


def _syntax(pattern: str, re2_msg: str) -> str:
    """A syntax error in words, with its position when Python's parser can tell it."""
    try:
        re.compile(pattern)
    except re.error as e:
        pos = f" at character {e.pos + 1}" if e.pos is not None else ""
        near = f" (near {pattern[max(0, (e.pos or 0) - 10):(e.pos or 0) + 10]!r})" if e.pos is not None else ""
        return f"not a valid regular expression{pos}: {e.msg}{near}"
    except RecursionError:
        pass
    return (f"not supported by the linear-time engine (RE2): {re2_msg}; backreferences and lookaround "
            "((?=...), (?!...), (?<=...), \\1) cannot be used")


def _group_text(pattern: str, name: str) -> str | None:
    """The text of named group `name` inside `pattern` (escapes and character classes skipped)."""
    head = f"(?P<{name}>"
    i = pattern.find(head)
    if i < 0:
        return None
    j = i + len(head)
    depth, k, in_class = 1, j, False
    while k < len(pattern):
        c = pattern[k]
        if c == "\\":
            k += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if pattern[k + 1:k + 2] == "^":
                k += 1
            if pattern[k + 1:k + 2] == "]":
                k += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return pattern[j:k]
        k += 1
    return None
