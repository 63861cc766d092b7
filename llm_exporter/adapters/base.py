"""What an adapter is: it turns one line of a server's log into canonical records.

An adapter instance belongs to one source (so multi-line records can keep state). For each
line the pipeline calls `parse_json(line, obj)` when the line is a JSON object (obj is the
parsed dict, or None if the pipeline has not parsed it yet) or `parse_text(text)` otherwise.
Each returns:

- `None`: not this adapter's line, try the next one;
- `IGNORED`: recognised, carries nothing to count (banners, progress lines);
- a record dict, or a list of records (possibly empty, e.g. the first line of a multi-line block);

and raises `Invalid(reason)` for a recognised line whose values are bad. `flush()` hands out
whatever a multi-line record was still holding (called at EOF and after an idle timeout).

The adapters of one stream share one small dict, `shared`, for what one learns and another needs:
`server` (the server this stream was last recognised as: names the provider of bare access lines
and tracebacks) and `front_door` (a proxy or router whose access lines are this stream's requests,
so an engine's own per-request lines behind it are not counted again).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

IGNORED: Final = "ignored"

Result = Any  # None | IGNORED | dict | list[dict]


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """`data` parsed as JSON when it is one object, else None (never raises on input)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def get_path(obj: Any, path: str, *, decode_text: bool = False) -> Any:
    """The value at a dotted path (`usage.prompt_tokens`, `choices.0.finish_reason`), or None. With
    `decode_text`, a JSON-encoded object met on the way (a string starting with `{`) is decoded."""
    cur = obj
    for part in path.split("."):
        if decode_text and type(cur) is str and cur[:1] == "{":
            try:
                cur = orjson.loads(cur)
            except orjson.JSONDecodeError:
                return None
        if type(cur) is dict:
            cur = cur.get(part)
        elif type(cur) is list and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


_INF: Final = float("inf")


def nonneg(v: Any) -> float | None:
    """A finite, non-negative number as a float, from a number or a number's text (`"12.5"`); None
    for anything else (negative, NaN, infinite, too large for a float, not a number). The one reader
    of the figures server lines print (token counts, milliseconds, throughputs)."""
    if type(v) is str:
        try:
            f = float(v)
        except ValueError:
            return None
    elif type(v) is int or type(v) is float:
        try:
            f = float(v)
        except OverflowError:  # an int past the float range
            return None
    else:
        return None
    return f if 0.0 <= f < _INF else None


class Invalid(Exception):
    """A recognised line with a bad value; the reason is a short fixed code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Adapter:
    """Base class: by default an adapter understands nothing."""

    #: registry name, also the value of `--format`
    name: str = ""
    #: the gen_ai_provider_name it reports
    provider: str = ""
    #: whether parse_json wants the parsed dict (False: it works from the raw bytes itself)
    wants_obj: bool = True

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self.shared: dict[str, Any] = {}  # replaced by the stream's common dict (build_chain)

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Result:
        return None

    def parse_text(self, text: str) -> Result:
        return None

    def flush(self) -> list[dict[str, Any]]:
        return []
