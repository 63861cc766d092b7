"""Start/end pairing of one request's two log lines by request id, in a bounded table.

Servers that log a request's start and its end on separate lines (vLLM's `Received request` and
`Generated response`, a `--config` rule's `start:` and `end:` patterns) keep each open request
in an `OpenTable` until its end line comes. The table is an LRU bounded by `max_open`: past it the
oldest open request is evicted (its end line, if it ever comes, finds nothing) and counted, so a
server that never logs end lines costs bounded memory. `evicted_record` turns a count of
evictions into the record `llm_exporter_open_requests_evicted_total` is fed from.

`timestamp()` reads the time of a line from the common log timestamp formats, so an end-to-end
duration can be the difference of the two lines' own times rather than of our receive times.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

V = TypeVar("V")

#: open requests one table holds by default (per stream)
MAX_OPEN = 10_000


class OpenTable(OrderedDict[str, V], Generic[V]):
    """Open requests by id, oldest first; `evict()` drops the oldest past `max_open`."""

    def __init__(self, max_open: int = MAX_OPEN) -> None:
        super().__init__()
        self.max_open = max_open
        self.evicted = 0

    def evict(self) -> Iterator[tuple[str, V]]:
        """Drop (and yield) the oldest entries while the table holds more than `max_open`."""
        while len(self) > self.max_open:
            self.evicted += 1
            yield self.popitem(last=False)


def evicted_record(provider: str, n: int) -> dict[str, Any]:
    """The record that counts `n` open requests evicted from a pairing table."""
    return {"kind": "evicted", "provider": provider, "n": n}


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), 1)}
# time of day with optional fraction (`.` or `,`), after an optional date of several shapes
_CLOCK = r"(\d{1,2}):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
_YMD = re.compile(r"(\d{4})[-/](\d\d)[-/](\d\d)[T ]" + _CLOCK)
_MD = re.compile(r"(\d\d)[-/](\d\d)[T ]" + _CLOCK)  # vLLM's `11-30 07:46:26`
_SYSLOG = re.compile(r"([A-Za-z]{3}) +(\d{1,2}) " + _CLOCK)
_TIME = re.compile(_CLOCK)
_EPOCH = re.compile(r"\d{9,10}(?:\.\d+)?|\d{12,13}")


def _frac(s: str | None) -> float:
    return int(s) / 10 ** len(s) if s else 0.0


def timestamp(s: str) -> float | None:
    """Seconds of a timestamp as logs write it, or None. Absolute for ISO 8601 / RFC 3339 (offset
    or UTC) and epoch seconds or milliseconds; for shapes with no year (`MM-DD HH:MM:SS`, syslog
    `Mon DD HH:MM:SS`) or no date (`HH:MM:SS.fff`) only differences are meaningful, which is all
    pairing needs. A fraction may use `.` or `,`."""
    s = s.strip()
    if not s or len(s) > 64:
        return None
    if _EPOCH.fullmatch(s):
        v = float(s)
        return v / 1000 if "." not in s and len(s) >= 12 else v
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        dt = None
    if dt is not None:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    m = _YMD.match(s)
    if m is not None:
        y, mo, d, hh, mm, ss, fr = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss),
                            tzinfo=UTC).timestamp() + _frac(fr)
        except ValueError:
            return None
    m = _MD.match(s)
    if m is not None:
        mo, d, hh, mm, ss, fr = m.groups()
        return _no_year(int(mo), int(d), hh, mm, ss, fr)
    m = _SYSLOG.match(s)
    if m is not None:
        mon, d, hh, mm, ss, fr = m.groups()
        mo = _MONTHS.get(mon.lower())
        return None if mo is None else _no_year(mo, int(d), hh, mm, ss, fr)
    m = _TIME.fullmatch(s)
    if m is not None:
        hh, mm, ss, fr = m.groups()
        if int(hh) > 23 or int(mm) > 59 or int(ss) > 60:
            return None
        return int(hh) * 3600 + int(mm) * 60 + int(ss) + _frac(fr)
    return None


def _no_year(mo: int, d: int, hh: str, mm: str, ss: str, fr: str | None) -> float | None:
    try:  # a leap year, so Feb 29 is a date
        return datetime(2000, mo, d, int(hh), int(mm), int(ss), tzinfo=UTC).timestamp() + _frac(fr)
    except ValueError:
        return None


def elapsed(start: float, end: float) -> float:
    """`end - start` in seconds, never negative; two times of day only (no date) that went back
    wrapped midnight."""
    d = end - start
    if d < 0 and 0 <= start < 86400.0 and 0 <= end < 86400.0:
        d += 86400.0
    return max(0.0, d)
