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
