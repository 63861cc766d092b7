"""The free-text classifier's one-scan patterns against the plain phrase-by-phrase reading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_exporter import errors
from llm_exporter.errors import INCIDENT, MESSAGE_SCAN, OTHER, REQUEST, classify_event, classify_message

PHRASES = sorted({n for _, ns in errors._MESSAGE_RULES for n in ns} | set(errors._REQUEST_PHRASES)
                 | set(errors._INCIDENT_PHRASES))


def slow_message(text: str) -> str:
    t = text[:MESSAGE_SCAN].lower()
    for cls, needles in errors._MESSAGE_RULES:
        for n in needles:
            if n in t:
                return cls
    return OTHER


def slow_event(text: str) -> tuple[str, str]:
    t = text[:MESSAGE_SCAN].lower()
    cls = slow_message(text)
    if any(p in t for p in errors._REQUEST_PHRASES):
        return REQUEST, cls
    if any(p in t for p in errors._INCIDENT_PHRASES):
        return INCIDENT, cls if cls in ("oom", "timeout") else "engine_dead"
    return "", cls


# lines built from the phrases themselves (in any case, cut, glued, past the scanned length) and noise
piece = st.one_of(st.sampled_from(PHRASES), st.sampled_from(PHRASES).map(str.upper),
                  st.sampled_from(PHRASES).map(lambda p: p[: len(p) // 2]), st.text(max_size=12),
                  st.text(alphabet=st.characters(codec=None), max_size=6),
                  st.sampled_from([" ", "x" * 390, "İ", "ERROR ", ": "]))
lines = st.lists(piece, max_size=8).map("".join)


@settings(max_examples=600, deadline=None)
@given(lines)
def test_same_class_and_scope_as_phrase_by_phrase(line: str) -> None:
    assert classify_message(line) == slow_message(line)
    assert classify_event(line) == slow_event(line)


def test_each_phrase_alone() -> None:
    for p in PHRASES:
        line = f"ERROR something: {p} here"
        assert classify_event(line) == slow_event(line), p
        assert classify_message(line) == slow_message(line), p


def test_lines_re2_cannot_take() -> None:
    """A lone surrogate (a JSON string's \\ud800) is read by the stand-in, never an error."""
    for line in ("\ud800 out of memory", "timed out \udfff", "\ud800"):
        assert classify_event(line) == slow_event(line)
        assert classify_message(line) == slow_message(line)
