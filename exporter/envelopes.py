"""Peel the wrappers that log collectors put around a server's own line.

Only the prefix is examined; the payload is never scanned. Currently: ANSI colour sequences
(and their `#033[...m` rendering) at the start of a line.
"""

from __future__ import annotations

import re

_ANSI = re.compile(rb"(?:\x1b\[[0-9;]*[A-Za-z]|#033\[[0-9;]*m)")


def peel(line: bytes) -> bytes:
    """The server's own line inside `line` (unchanged when there is no wrapper)."""
    if b"\x1b[" in line or b"#033[" in line:
        line = _ANSI.sub(b"", line)
    return line
