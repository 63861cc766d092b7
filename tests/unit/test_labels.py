"""Label value limits: which values are admitted, what folds into _OTHER, and what is counted."""

from __future__ import annotations

from llm_exporter.labels import MAX_VALUE_LEN, OTHER, LabelLimiter, LabelLimits


def test_exactly_limit_values_are_admitted_then_each_new_one_folds_and_counts() -> None:
    """Limit 2: a and b admitted (again and again), c and d fold, one overflow per observation."""
    lim = LabelLimiter(2)
    assert [lim(v) for v in ["a", "b", "a", "c", "b", "d", "c"]] == ["a", "b", "a", OTHER, "b", OTHER, OTHER]
    assert lim.overflow == 3
    assert len(lim) == 2


def test_empty_and_other_are_always_admitted_and_never_counted() -> None:
    """"" (no value) and _OTHER itself pass at any limit without taking a place or counting."""
    lim = LabelLimiter(0)
    assert (lim(""), lim(OTHER), lim("x")) == ("", OTHER, OTHER)
    assert lim.overflow == 1 and len(lim) == 0
    one = LabelLimiter(1)
    assert (one(""), one(OTHER), one("x"), one("y")) == ("", OTHER, "x", OTHER)


def test_long_values_are_cut_to_the_maximum_length() -> None:
    """Values up to MAX_VALUE_LEN stay whole; longer ones are cut, and two cut to the same prefix
    are one value (no second place taken, nothing counted)."""
    assert MAX_VALUE_LEN == 128
    lim = LabelLimiter(3)
    exact = "e" * 128
    assert lim(exact) == exact
    assert lim("p" * 129) == "p" * 128
    assert lim("p" * 128 + "different tail") == "p" * 128
    assert lim("e" * 128 + "x") == exact  # cut to an admitted value: admitted, even when full later
    assert len(lim) == 2 and lim.overflow == 0
    assert lim("q" * 127) == "q" * 127
    assert lim("r" * 300) == OTHER  # full: the cut value is new, so it folds
    assert lim.overflow == 1


def test_a_changed_limit_keeps_what_was_admitted() -> None:
    """Lowering the limit keeps admitted values; raising it admits new ones up to the new limit."""
    lim = LabelLimiter(3)
    for v in "abc":
        lim(v)
    lim.set_limit(1)
    assert (lim("a"), lim("c"), lim("d")) == ("a", "c", OTHER)
    lim.set_limit(4)
    assert (lim("d"), lim("e")) == ("d", OTHER)
    assert lim.overflow == 2 and len(lim) == 4


def test_admitted_and_restore_round_trip() -> None:
    """What a checkpoint saves (admitted values, sorted, and the overflow) comes back the same."""
    lim = LabelLimiter(2)
    for v in ["z", "a", "m"]:
        lim(v)
    saved = lim.admitted()
    assert saved == sorted(["", OTHER, "a", "z"])
    back = LabelLimiter(2)
    back.restore(saved, lim.overflow)
    assert back.overflow == 1 and back.admitted() == saved and len(back) == 2
    assert (back("a"), back("z"), back("m")) == ("a", "z", OTHER)
    assert back.overflow == 2


def test_limits_keep_one_limiter_per_metric_and_label() -> None:
    """The same (metric, label) gives the same limiter; another pair gets its own; items are sorted."""
    limits = LabelLimits(1)
    a = limits("m2", "model")
    assert limits("m2", "model") is a
    b = limits("m1", "model")
    c = limits("m2", "engine")
    assert b is not a and c is not a
    a("x")
    assert b("y") == "y"  # its own place
    assert [k for k, _ in limits.items()] == [("m1", "model"), ("m2", "engine"), ("m2", "model")]
    assert limits.limit == 1
