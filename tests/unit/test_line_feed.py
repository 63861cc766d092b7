"""LineFeed: the one place a source's bytes and too-long lines are counted, checked against the input."""

from __future__ import annotations

from llm_exporter.framing import TooLong
from llm_exporter.metrics import LLMMetrics
from llm_exporter.sources.base import LineFeed

MAX = 16
# three lines: 5 bytes, 20 bytes (over MAX), 16 bytes (exactly MAX: kept); then 17 bytes with no newline
CHUNK = b"short\n" + b"x" * 20 + b"\n" + b"y" * 16 + b"\n"
TAIL = b"z" * 17


def counts(m: LLMMetrics, source: str = "stdin") -> tuple[int, dict[str, int]]:
    """Bytes and non-zero line outcomes of one source."""
    lines = {o: n for (s, o), n in m.internal.lines.items() if s == source and n}
    return m.internal.bytes[source], lines


def test_feed_counts_every_byte_and_each_line_over_the_limit() -> None:
    """Bytes read are the chunk's length; a line over `max_line` is one `too_long` and a marker."""
    m = LLMMetrics()
    feed = LineFeed(m.source("stdin"), MAX)
    lines = feed.feed(CHUNK)
    assert lines == [b"short", b"x" * 20, b"y" * 16]
    assert [type(line) is TooLong for line in lines] == [False, True, False]
    assert counts(m) == (len(CHUNK), {"too_long": 1})
    assert feed.pending == 0
    assert feed.feed(b"ab") == []
    assert feed.pending == 2  # held, waiting for its newline: not a line yet
    assert counts(m) == (len(CHUNK) + 2, {"too_long": 1})


def test_finish_counts_a_too_long_last_line_and_no_extra_byte() -> None:
    """At end of stream a held line over the limit counts `too_long` once; no byte is counted twice."""
    m = LLMMetrics()
    feed = LineFeed(m.source("stdin"), MAX)
    feed.feed(CHUNK + TAIL)
    last = feed.finish()
    assert last == [b"z" * 17] and type(last[0]) is TooLong
    assert counts(m) == (len(CHUNK) + len(TAIL), {"too_long": 2})
    assert feed.finish() == []  # nothing held any more
    assert counts(m) == (len(CHUNK) + len(TAIL), {"too_long": 2})


def test_finish_hands_out_a_partial_last_line_within_the_limit() -> None:
    m = LLMMetrics()
    feed = LineFeed(m.source("file"), MAX)
    assert feed.feed(b"a\nbc") == [b"a"]
    assert feed.finish() == [b"bc"]
    assert counts(m, "file") == (4, {})


def test_frame_and_end_count_nothing_until_count_is_called() -> None:
    """A followed file frames first and counts once its lines are applied: frame()/end() count nothing."""
    m = LLMMetrics()
    feed = LineFeed(m.source("file"), MAX)
    lines, too_long = feed.frame(CHUNK + TAIL)
    assert lines == [b"short", b"x" * 20, b"y" * 16] and too_long == 1
    assert feed.end() == ([b"z" * 17], 1)
    assert counts(m, "file") == (0, {})
    feed.count(len(CHUNK + TAIL), 2)
    assert counts(m, "file") == (len(CHUNK) + len(TAIL), {"too_long": 2})
    feed.count(0, 0)
    assert counts(m, "file") == (len(CHUNK) + len(TAIL), {"too_long": 2})
