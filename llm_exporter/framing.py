"""Bytes to lines: one `LineFramer` per byte stream.

Model: lines end at `\n`; one `\r` before it is dropped (CRLF); a partial last line is held
until more bytes arrive or `flush()` is called at EOF (or after a flush timeout). A line whose
length passes `max_len` is cut off: its bytes are discarded up to the next `\n` and it counts
once as `too_long`; a `TooLong` marker (its first bytes) takes its place among the lines handed
on, so that the parser numbers the lines after it right and can show it as a reject. Framing
never changes the bytes handed on, it only splits them.
"""

from __future__ import annotations

#: how much of a too-long line its marker keeps (what a reject shows)
HEAD = 200


class TooLong(bytes):
    """Stands in for a line over the limit (counted `too_long` by its source): its first `HEAD` bytes."""

    __slots__ = ()


class LineFramer:
    """Split a byte stream into lines, holding partial tails between chunks."""

    __slots__ = ("_head", "_max", "_pending", "_skipping")
    _head: bytes  # the first bytes of an over-long line, set when one starts (never read before)

    def __init__(self, max_len: int = 1 << 20) -> None:
        self._max = max_len
        self._pending = b""
        self._skipping = False  # inside an over-long line: drop until the next newline

    @property
    def pending(self) -> int:
        """Bytes held back waiting for their newline."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> tuple[list[bytes], int]:
        """Return the complete lines in `chunk` (with what was held; a `TooLong` marker in place of
        each line over the limit) and the count of too-long lines."""
        too_long = 0
        out: list[bytes] = []
        if self._skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                return out, 0
            self._skipping = False
            chunk = chunk[nl + 1 :]
            too_long = 1  # counted when its end is seen
            out.append(TooLong(self._head))
        if self._pending:
            chunk = self._pending + chunk
            self._pending = b""
        lines = chunk.split(b"\n")
        tail = lines.pop()
        # the limit is on the line without its CR: a held tail may be one byte over while it ends in one
        if len(tail) > self._max and (len(tail) > self._max + 1 or tail[-1:] != b"\r"):
            self._skipping = True
            self._head = tail[:HEAD]
        else:
            self._pending = tail
        mx = self._max
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > mx:
                too_long += 1
                out.append(TooLong(line[:HEAD]))
            else:
                out.append(line)
        return out, too_long

    def flush(self) -> tuple[list[bytes], int]:
        """End of stream (or flush timeout): hand out the partial last line, if any."""
        if self._skipping:
            self._skipping = False
            return [TooLong(self._head)], 1
        tail, self._pending = self._pending, b""
        if not tail:
            return [], 0
        if tail[-1:] == b"\r":
            tail = tail[:-1]  # a lone CR at EOF is still a (blank) line
        return [tail], 0
