"""What every source is (`Source`), and the one place its bytes become counted lines (`LineFeed`).

A source reads one transport (stdin, a child's pipes, followed files, HTTP pushes) and hands
lines to the `Worker`. `LineFeed` frames one byte stream into lines and counts what never
reaches the parser: the bytes read and the lines over `--max-line-bytes` (`too_long`). Every
source and `replay` count through it; the pipeline counts the other outcomes, the worker
`dropped`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from llm_exporter.framing import LineFramer
from llm_exporter.metrics.internal import SourceCounter

if TYPE_CHECKING:
    from aiohttp import web


class Source(Protocol):
    """One input of the daemon."""

    #: the source label of what it reads (`stdin`, `file`, `http`, `command`)
    name: str

    @property
    def attached(self) -> bool:
        """Whether it is reading (the daemon is ready once every source is)."""

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes it serves (before the server starts); most serve none."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading (after the server is up and the pipeline runs)."""

    def stop(self) -> None:
        """Graceful stop: read no more; what was queued is still parsed."""

    def send_signal(self, sig: int) -> None:
        """A signal the daemon got and hands on (SIGHUP to a wrapped child); most ignore it."""


class LineFeed:
    """One byte stream framed into lines, its bytes and too-long lines counted.

    `feed(chunk)` / `finish()` frame and count at once. A source that must count only once its
    lines are applied (a followed file, whose offsets are saved with the counts) frames with
    `frame()` / `end()` and calls `count()` when they are.
    """

    __slots__ = ("_count", "_framer")

    def __init__(self, count: SourceCounter, max_line: int = 1 << 20) -> None:
        self._count = count
        self._framer = LineFramer(max_line)

    @property
    def pending(self) -> int:
        """Bytes held back waiting for their newline."""
        return self._framer.pending

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines in `chunk`, counted (a `TooLong` marker for each line over the limit)."""
        lines, too_long = self._framer.feed(chunk)
        self.count(len(chunk), too_long)
        return lines

    def finish(self) -> list[bytes]:
        """End of stream: the partial last line, if any, counted."""
        lines, too_long = self._framer.flush()
        self.count(0, too_long)
        return lines

    def frame(self, chunk: bytes) -> tuple[list[bytes], int]:
        """Frame without counting: the lines and how many of them are too long."""
        return self._framer.feed(chunk)

    def end(self) -> tuple[list[bytes], int]:
        """End of stream (or a partial line's timeout) without counting."""
        return self._framer.flush()

    def count(self, nbytes: int, too_long: int) -> None:
        """Count bytes read and lines over the limit: the only place a source counts them."""
        if nbytes:
            self._count.bytes(nbytes)
        if too_long:
            self._count.lines("too_long", too_long)
