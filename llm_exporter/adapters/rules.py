"""The `--config` file's text-line rules (`rules:`), tried in order before the built-in adapters.

A line a rule's `pattern` matches is one finished request. Its named groups are read through the
application JSON adapter (`AppJsonAdapter.read_fields`): the same names, aliases, units, status,
error and finish-reason rules as the same fields in a JSON line; a bad value makes the line
`invalid` with the field named. A `start`/`end` rule keeps a request open from its start line to
the end line with the same `request_id` (`pairing.OpenTable`, bounded, evictions counted); the
request's fields are the start line's groups updated by the end line's, and its duration, unless a
duration group gives it, is the difference of the two lines' own times when both have one (a `ts`
group, else the leading timestamp the envelope peeled off: a logger's, CRI's, syslog's), else of
our receive times. A start line counts as a `record` line (part of a request), an end line with
no start is still a request (with no duration). Hits per rule are counted on the rule set,
shared by every stream (`replay --config` prints them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from llm_exporter.adapters.app_json import AppJsonAdapter, text_fields
from llm_exporter.adapters.base import Adapter, Invalid
from llm_exporter.pairing import OpenTable, elapsed, evicted_record, timestamp
from llm_exporter.rules import ID_GROUP, TS_GROUP, compile_pattern

MAX_VALUE = 128
_DURATION_GROUPS = ("duration", "latency", "total_time", "response_time", "elapsed")


class CompiledRule:
    """One rule's programs, labels and hit count."""

    __slots__ = ("end", "hits", "labels", "max_open", "name", "pattern", "provider", "start")

    def __init__(self, rule: Any) -> None:
        self.name: str = rule.name
        self.provider: str = rule.provider
        self.labels: dict[str, str] = dict(rule.labels)
        self.max_open: int = rule.max_open
        self.pattern: Any = compile_pattern(rule.pattern) if rule.pattern is not None else None
        self.start: Any = compile_pattern(rule.start) if rule.start is not None else None
        self.end: Any = compile_pattern(rule.end) if rule.end is not None else None
        self.hits = 0


class RuleSet:
    """A config's compiled rules (shared by every stream's adapter; hits count across them)."""

    def __init__(self, rules: list[Any]) -> None:
        self.rules = [CompiledRule(r) for r in rules]

    def hits(self) -> dict[str, int]:
        return {r.name: r.hits for r in self.rules}


_SETS: dict[int, tuple[Any, RuleSet]] = {}


def rule_set(config: Any) -> RuleSet:
    """The compiled rules of `config` (compiled once per config object)."""
    key = id(config)
    got = _SETS.get(key)
    if got is None or got[0] is not config:
        if len(_SETS) > 8:
            _SETS.clear()
        got = _SETS[key] = (config, RuleSet(list(getattr(config, "rules", None) or [])))
    return got[1]


class _Open:
    __slots__ = ("fields", "received", "ts")

    def __init__(self, fields: dict[str, str], ts: float | None, received: float) -> None:
        self.fields, self.ts, self.received = fields, ts, received


class RulesAdapter(Adapter):
    """Applies the `--config` rules to one stream's text lines."""

    name = "rules"
    provider = "app"
    #: receive-time clock for paired durations (monotonic; tests replace it)
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.set = rule_set(config)
        self.app = AppJsonAdapter(config)
        #: the stream's envelope (set by the pipeline): the timestamp it peeled off the line, if any
        self.envelope: Any = None
        self.open: dict[str, OpenTable[_Open]] = {r.name: OpenTable(r.max_open) for r in self.set.rules
                                                  if r.start is not None}

    def parse_text(self, text: str) -> Any:
        for rule in self.set.rules:
            if rule.pattern is not None:
                m = rule.pattern.search(text)
                if m is not None:
                    rule.hits += 1
                    return self._request(rule, m.groupdict())
                continue
            m = rule.end.search(text)
            if m is not None:
                rule.hits += 1
                return self._ended(rule, m.groupdict())
            m = rule.start.search(text)
            if m is not None:
                rule.hits += 1
                return self._started(rule, m.groupdict())
        return None

    def _request(self, rule: CompiledRule, groups: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in groups.items() if v is not None and k != TS_GROUP}
        labels = {label: str(fields.pop(g, "") or "")[:MAX_VALUE] for label, g in rule.labels.items()}
        try:
            rec = self.app.read_fields(text_fields(fields), rule.provider)
        except Invalid as e:
            raise Invalid(f"{e.reason} (rule {rule.name})") from None
        if labels:
            rec["extra_labels"] = labels
        return rec

    def _started(self, rule: CompiledRule, groups: dict[str, Any]) -> list[dict[str, Any]]:
        rid = groups.get(ID_GROUP)
        if not rid:
            return []
        table = self.open[rule.name]
        table[rid[:MAX_VALUE]] = _Open({k: v for k, v in groups.items() if v is not None},
                                       self._time(groups), self.clock())
        table.move_to_end(rid[:MAX_VALUE])
        n = sum(1 for _ in table.evict())
        return [evicted_record(rule.provider, n)] if n else []

    def _time(self, groups: dict[str, Any]) -> float | None:
        """The line's own time: its `ts` group, else the timestamp the envelope peeled off it."""
        ts = groups.get(TS_GROUP)
        if ts:
            return timestamp(ts)
        stamp = self.envelope.stamp if self.envelope is not None else None
        return timestamp(stamp.decode("ascii", "replace").strip(" -|[]")) if stamp else None

    def _ended(self, rule: CompiledRule, groups: dict[str, Any]) -> dict[str, Any]:
        rid = groups.get(ID_GROUP) or ""
        start = self.open[rule.name].pop(rid[:MAX_VALUE], None)
        fields = {k: v for k, v in groups.items() if v is not None}
        if start is not None:
            fields = {**start.fields, **fields}
            if not any(k.startswith(_DURATION_GROUPS) for k in fields):
                end_ts = self._time(groups)
                if start.ts is not None and end_ts is not None:
                    fields["duration"] = elapsed(start.ts, end_ts)
                else:
                    fields["duration"] = max(0.0, self.clock() - start.received)
        return self._request(rule, fields)
