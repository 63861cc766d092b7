"""Durations in the shapes LLM servers write them, converted to seconds.

Accepted: plain numbers (scaled by the caller's unit), Rust `Duration` Debug strings (`70µs`,
`735.200735ms`, `2.458150804s`), Go `time.Duration` strings (`8m44s`, `1h2m3.5s`, `0s`) and
their mixtures. `µ` may be U+00B5 MICRO SIGN or U+03BC GREEK SMALL LETTER MU, or `us`.
"""

from __future__ import annotations

import math
import re

#: The one table of duration units: units per second, by the suffix a duration string uses (a
#: value in the unit divided by this is seconds; division, not multiplication by 1e-3, keeps
#: `286 ms` exactly 0.286 s, so sums match a hand count of the log).
UNIT_DIV: dict[str, float] = {
    "ns": 1e9,
    "us": 1e6,
    "\u00b5s": 1e6,
    "\u03bcs": 1e6,
    "ms": 1e3,
    "s": 1.0,
    "m": 1 / 60,
    "h": 1 / 3600,
}
#: The unit names a `--config` mapping may give a numeric duration (`unit: ms`): the suffixes of
#: the table above, with minutes spelled `min` (in a file of settings a lone `m` reads as milli-).
NAMED_UNIT_DIV: dict[str, float] = {
    "s": UNIT_DIV["s"],
    "ms": UNIT_DIV["ms"],
    "us": UNIT_DIV["us"],
    "ns": UNIT_DIV["ns"],
    "min": UNIT_DIV["m"],
    "h": UNIT_DIV["h"],
}
# longest suffix first, so `ms` is not read as `m` followed by junk
_SUFFIX = "|".join(sorted(UNIT_DIV, key=len, reverse=True))
_PART = re.compile(rf"(\d+(?:\.\d*)?|\.\d+)({_SUFFIX})")
_WHOLE = re.compile(rf"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:{_SUFFIX}))+")

#: Suffixes of field names and their units per second (seconds = value / divisor).
NAME_SUFFIX_DIV: dict[str, float] = {
    "_ms": 1e3,
    "_millis": 1e3,
    "_s": 1.0,
    "_sec": 1.0,
    "_secs": 1.0,
    "_seconds": 1.0,
    "_us": 1e6,
    "_ns": 1e9,
}


def to_seconds(value: float, div: float) -> float:
    """`value` in a unit of `div` units per second, as seconds (`div` below 1: minutes, hours)."""
    return value / div if div >= 1 else value * round(1 / div)


def parse_duration(text: str, default_div: float = 1.0) -> float | None:
    """Seconds in `text`, or None when it is not a duration.

    A bare number is divided by `default_div` (the unit implied by the field's name).
    """
    s = text.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        v = to_seconds(v, default_div)
        return v if math.isfinite(v) and v >= 0 else None
    if _WHOLE.fullmatch(s) is None:
        return None
    total = 0.0
    for num, unit in _PART.findall(s):
        total += to_seconds(float(num), UNIT_DIV[unit])
    return total if math.isfinite(total) else None


# Sizes as the docs and people write them: "8MiB", "8 MiB", "512KiB", "1GiB", "8MB", "4096", "1k".
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "ki": 1 << 10, "mi": 1 << 20,
               "gi": 1 << 30, "ti": 1 << 40, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4}
SIZE_HELP = "a number of bytes, or with a unit: KiB, MiB, GiB (1024-based; K, M, G too) or kB, MB, GB"


def parse_size(value: object) -> int:
    """Bytes from an int or a size string ("8MiB", "8 MiB", "1.5 GiB", "8MB" = 8,000,000); ValueError
    (naming the accepted units) for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HELP}")
    if isinstance(value, int):
        return value
    m = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected {SIZE_HELP}, got {value!r}")
    n = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    if not math.isfinite(n):  # more digits than a float holds
        raise ValueError(f"too large: {value!r}")
    return int(n)
