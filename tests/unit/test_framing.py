"""Framing: bytes to lines, whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llm_exporter.framing import HEAD, LineFramer, TooLong


def frame_marked(chunks: list[bytes], max_len: int = 1 << 20) -> tuple[list[bytes], int]:
    """Every line handed on, too-long markers included, and the too_long count."""
    f = LineFramer(max_len)
    out: list[bytes] = []
    too_long = 0
    for c in chunks:
        lines, n = f.feed(c)
        out += lines
        too_long += n
    lines, n = f.flush()
    return out + lines, too_long + n


def frame_all(chunks: list[bytes], max_len: int = 1 << 20) -> tuple[list[bytes], int]:
    """The lines the parser reads as lines (markers left out), and the too_long count."""
    out, n = frame_marked(chunks, max_len)
    assert sum(type(x) is TooLong for x in out) == n  # one marker per too-long line
    return [x for x in out if type(x) is not TooLong], n


def expected_lines(data: bytes, max_len: int) -> tuple[list[bytes], int]:
    """An independent reference: split once, strip one CR, drop over-long lines."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out, too_long = [], 0
    for p in parts:
        if p.endswith(b"\r"):
            p = p[:-1]
        if len(p) > max_len:  # the limit is on the line without its CR
            too_long += 1
            continue
        out.append(p)
    return out, too_long


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def test_splits_lines_and_strips_crlf() -> None:
    """CRLF and LF both end a line; the CR is not part of the line."""
    assert frame_all([b"a\r\nb\nc\r\n"]) == ([b"a", b"b", b"c"], 0)


def test_holds_partial_tail_until_more_bytes() -> None:
    """A line split across reads comes out whole, once its newline arrives."""
    f = LineFramer()
    assert f.feed(b'{"a":') == ([], 0)
    assert f.pending == 5
    assert f.feed(b'1}\n{"b"') == ([b'{"a":1}'], 0)
    assert f.flush() == ([b'{"b"'], 0)


def test_last_line_without_newline_is_flushed_at_eof() -> None:
    """EOF hands out the last line even when it has no newline."""
    assert frame_all([b"x\ny"]) == ([b"x", b"y"], 0)


def test_too_long_line_counts_once_and_framing_recovers() -> None:
    """An over-long line is one too_long, and the next line is intact."""
    data = [b"short\n", b"x" * 50, b"y" * 50, b"z\nafter\n"]
    assert frame_all(data, max_len=64) == ([b"short", b"after"], 1)


def test_too_long_line_at_eof_counts_once() -> None:
    """An over-long unterminated last line is one too_long at EOF."""
    assert frame_all([b"ok\n", b"q" * 100], max_len=10) == ([b"ok"], 1)


def test_too_long_marker_sits_where_the_line_was() -> None:
    """The marker keeps the line's place (so later lines are numbered right) and its first bytes."""
    data = [b"one\n", b"x" * (HEAD + 50), b"y" * 50, b"\nthree\n", b"z" * 300]
    out, n = frame_marked(data, max_len=64)
    assert n == 2 and out == [b"one", b"x" * HEAD, b"three", b"z" * HEAD]
    assert [type(x) is TooLong for x in out] == [False, True, False, True]


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
       st.integers(min_value=1, max_value=64))
def test_framing_never_loses_or_invents_bytes(data: bytes, cuts: list[int], max_len: int) -> None:
    """Whatever the chunking, lines and too_long counts equal a one-shot split of the input."""
    assert frame_all(chunked(data, cuts), max_len) == expected_lines(data, max_len)


def test_a_crlf_line_of_exactly_the_limit_is_kept_however_it_is_cut() -> None:
    """max_len bytes + CRLF is a line, whether the CR and LF come together or in two reads; one
    byte more is too long either way."""
    for chunks in ([b"abcd\r\n"], [b"abcd\r", b"\n"], [b"abc", b"d\r", b"\nnext\n"]):
        lines, n = frame_all(chunks, max_len=4)
        assert (lines[0], n) == (b"abcd", 0), chunks
    for chunks in ([b"abcde\r\n"], [b"abcde\r", b"\n"], [b"abcde", b"\r\n"]):
        assert frame_all(chunks, max_len=4) == ([], 1), chunks
    assert frame_all([b"abcd\r"], max_len=4) == ([b"abcd"], 0)  # at EOF: the CR is dropped too
    assert frame_all([b"abcde\r"], max_len=4) == ([], 1)  # one over the limit without its CR, at EOF
    assert frame_all([b"abcd\rx", b"\n"], max_len=4) == ([], 1)  # a CR inside is part of the line


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n"]), max_size=40),
       st.lists(st.integers(min_value=0, max_value=80), max_size=10), st.integers(min_value=1, max_value=4))
def test_framing_around_the_limit_does_not_depend_on_the_cuts(parts: list[bytes], cuts: list[int],
                                                              max_len: int) -> None:
    """Short limits and many CRs: the cases where a line is one byte over the limit or on it."""
    data = b"".join(parts)
    assert frame_all(chunked(data, cuts), max_len) == expected_lines(data, max_len)


def test_the_default_limit_is_one_mebibyte_and_a_marker_keeps_200_bytes() -> None:
    """1,048,576 bytes is a line; one more is too long, and its marker keeps its first 200 bytes."""
    big = b"a" * (1 << 20)
    assert frame_marked([big + b"\n"]) == ([big], 0)
    out, n = frame_marked([b"b" * ((1 << 20) + 1) + b"\n"])
    assert n == 1 and out == [b"b" * 200] and type(out[0]) is TooLong


def test_a_fresh_framer_holds_nothing() -> None:
    """Before any bytes: nothing pending, and a flush hands out nothing."""
    f = LineFramer()
    assert f.pending == 0
    assert f.flush() == ([], 0)


def test_nothing_is_pending_while_an_over_long_line_is_skipped() -> None:
    """Held bytes that grow into an over-long line are dropped with it, not kept as pending."""
    f = LineFramer(4)
    assert f.feed(b"ab") == ([], 0)
    assert f.feed(b"c" * 10) == ([], 0)
    assert f.pending == 0
    assert f.feed(b"d\nok\n") == ([b"ab" + b"c" * 10, b"ok"], 1)  # the marker: its first bytes


def test_a_timed_flush_leaves_the_framer_ready_for_more() -> None:
    """A followed file's partial line goes out after the flush timeout; what comes next is framed
    afresh (nothing left held, no over-long line still being skipped)."""
    f = LineFramer(4)
    assert f.feed(b"abc") == ([], 0)
    assert f.flush() == ([b"abc"], 0)
    assert f.feed(b"d\n") == ([b"d"], 0)
    assert f.feed(b"x" * 10) == ([], 0)
    assert f.flush() == ([b"x" * 10], 1)
    assert f.feed(b"ok\n") == ([b"ok"], 0)


def test_several_over_long_lines_in_one_read_count_each() -> None:
    """Three over-long lines in one read (one of them ending a skipped line): three too_long."""
    f = LineFramer(4)
    assert f.feed(b"s" * 9) == ([], 0)
    lines, n = f.feed(b"s\n" + b"x" * 9 + b"\nok\n" + b"y" * 5 + b"\n")
    assert n == 3 and lines == [b"s" * 9, b"x" * 9, b"ok", b"y" * 5]
