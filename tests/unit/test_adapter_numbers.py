"""The one reader of the figures server lines print (`adapters.base.nonneg`)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_exporter.adapters.base import nonneg


@pytest.mark.parametrize(("v", "want"), [
    ("12.5", 12.5), ("0", 0.0), (" 7 ", 7.0), (3, 3.0), (2.25, 2.25), (0, 0.0),
    ("-1", None), (-0.5, None), ("nan", None), (math.nan, None), ("inf", None), ("1e400", None),
    (math.inf, None), (10**400, None), ("12ms", None), ("", None), (None, None), (True, None), ([1], None),
])
def test_reads_finite_non_negative_numbers_only(v: Any, want: float | None) -> None:
    """A figure is a finite number at or above zero; anything else is no figure."""
    got = nonneg(v)
    assert got == want and (got is None or type(got) is float)


@given(st.one_of(st.integers(min_value=-(2**80), max_value=2**80), st.floats()))
def test_a_number_and_its_text_read_the_same(x: float) -> None:
    """`12` and `"12"` are the same figure, whatever the number (Python's own float() is the truth)."""
    try:
        f = float(x)
    except OverflowError:
        f = math.inf
    want = f if math.isfinite(f) and f >= 0 else None
    assert nonneg(x) == want
    assert nonneg(repr(x)) == (float(repr(x)) if want is not None and math.isfinite(float(repr(x))) else None)
