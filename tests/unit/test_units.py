"""Duration strings from Rust, Go and plain numbers."""

from __future__ import annotations

import pytest

from llm_exporter.units import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("735.200735ms", 0.735200735),
    ("70µs", 70e-6),          # U+00B5 MICRO SIGN
    ("955.594μs", 955.594e-6),  # U+03BC GREEK SMALL LETTER MU
    ("12us", 12e-6),
    ("2.458150804s", 2.458150804),
    ("161.454300714s", 161.454300714),
    ("812ns", 812e-9),
    ("8m44s", 524.0),
    ("29m59s", 1799.0),
    ("1h2m3.5s", 3723.5),
    ("0s", 0.0),
    ("1.5", 1.5),
])
def test_parses_server_duration_strings(text: str, seconds: float) -> None:
    """Every unit the servers print converts to seconds."""
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


def test_bare_number_uses_the_field_unit() -> None:
    """A number in a string takes the unit of the field's name."""
    assert parse_duration("250", 1e3) == 0.25


@pytest.mark.parametrize("text", ["", "abc", "1.5 ms", "-3s", "1x", "ms", "nan", "inf", "1e999", "9" * 400 + "s"])
def test_rejects_what_is_not_a_duration(text: str) -> None:
    """Garbage, negatives and non-finite values are not durations."""
    assert parse_duration(text) is None


@pytest.mark.parametrize(("text", "seconds"), [
    # worked out by hand as the printed number divided by its unit: a sum of these matches a hand
    # count of the log to the last bit (286 * 1e-3 is 0.28600000000000003, 286 / 1e3 is 0.286)
    ("286ms", 286 / 1e3),
    ("735.200735ms", 735.200735 / 1e3),
    ("70µs", 70 / 1e6),
    ("812ns", 812 / 1e9),
    ("3.3ms", 3.3 / 1e3),
    ("8m44s", 8 * 60 + 44.0),
    ("1h2m3.5s", 3600 + 2 * 60 + 3.5),
])
def test_duration_strings_are_divided_exactly(text: str, seconds: float) -> None:
    """Exact equality, no tolerance: a multiplication by 1e-3 instead of a division shows here."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "div", "seconds"), [
    ("286", 1e3, 286 / 1e3), ("1500000000", 1e9, 1.5), ("2500", 1e6, 2500 / 1e6), ("90", 1 / 60, 5400.0),
])
def test_bare_numbers_are_divided_exactly_by_the_field_unit(text: str, div: float, seconds: float) -> None:
    """The unit implied by a name: milliseconds, nanoseconds, microseconds, minutes."""
    assert parse_duration(text, div) == seconds


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("0.0", 0.0), (" 8m44s ", 524.0), ("\t286ms\n", 0.286),
                                               (" 1.5 ", 1.5)])
def test_zero_and_surrounding_blanks_are_durations(text: str, seconds: float) -> None:
    """Zero is a duration (not "no value"); blanks around a value are ignored."""
    assert parse_duration(text) == seconds


def test_minutes_are_multiplied_not_divided_by_a_fraction() -> None:
    """34.09 minutes is 34.09 * 60 s exactly (34.09 / (1/60) would be 2045.4000000000003)."""
    assert parse_duration("34.09m") == 34.09 * 60 == 2045.4
    assert parse_duration("34.09", 1 / 60) == 2045.4
    assert parse_duration("18.792", 1 / 60) == 18.792 * 60
