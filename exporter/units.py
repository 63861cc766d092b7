"""Durations in the shapes LLM servers write them, converted to seconds.

Accepted: plain numbers (scaled by the caller's unit), Rust `Duration` Debug strings (`70µs`,
`735.200735ms`, `2.458150804s`), Go `time.Duration` strings (`8m44s`, `1h2m3.5s`, `0s`) and
their mixtures. `µ` may be U+00B5 MICRO SIGN or U+03BC GREEK SMALL LETTER MU, or `us`.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")

#: Suffixes of field names and the factor that turns their numbers into seconds.
NAME_SUFFIX_SCALE: dict[str, float] = {
    "_ms": 1e-3,
    "_millis": 1e-3,
    "_s": 1.0,
    "_sec": 1.0,
    "_secs": 1.0,
    "_seconds": 1.0,
    "_us": 1e-6,
    "_ns": 1e-9,
}


def parse_duration(text: str, default_scale: float = 1.0) -> float | None:
    """Seconds in `text`, or None when it is not a duration.

    A bare number is multiplied by `default_scale` (the unit implied by the field's name).
    """
    s = text.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        v *= default_scale
        return v if math.isfinite(v) and v >= 0 else None
    if _WHOLE.fullmatch(s) is None:
        return None
    total = 0.0
    for num, unit in _PART.findall(s):
        total += float(num) * _UNIT_SECONDS[unit]
    return total
