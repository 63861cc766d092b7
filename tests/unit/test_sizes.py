"""Sizes as the docs write them: `8 MiB`, `8MiB`, `512KiB`, plain bytes."""

from __future__ import annotations

import pytest

from llm_exporter.units import parse_size


@pytest.mark.parametrize(("text", "want"), [("8MiB", 8 * 1024 * 1024), ("8 MiB", 8 * 1024 * 1024),
                                            ("512KiB", 512 * 1024), ("1GiB", 1024 ** 3), ("4096", 4096),
                                            ("1k", 1024), ("8M", 8 * 1024 * 1024), ("8MB", 8_000_000),
                                            ("1.5 KiB", 1536), ("2mib", 2 * 1024 * 1024), (" 7 ", 7), (123, 123)])
def test_sizes(text: object, want: int) -> None:
    assert parse_size(text) == want


@pytest.mark.parametrize("bad", ["", "MiB", "8 parsecs", "-1", "8 MiB extra", "1e3", True, 1.5, None])
def test_bad_sizes_name_the_units(bad: object) -> None:
    with pytest.raises(ValueError, match="MiB"):
        parse_size(bad)


def test_a_fraction_of_a_unit_is_whole_bytes() -> None:
    """1.3 KiB is 1331.2 bytes: 1331 (a part of a byte is dropped), not an error."""
    assert parse_size("1.3k") == 1331
    assert parse_size("0.5 KiB") == 512


def test_a_size_too_large_for_a_number_is_refused() -> None:
    """Digits past what a float holds (infinity) are refused with a message, not a crash."""
    with pytest.raises(ValueError, match="too large"):
        parse_size("9" * 400 + " GiB")
