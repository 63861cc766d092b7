"""Bounded label values: past a limit, new values fold into `_OTHER` and the fold is counted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

OTHER = "_OTHER"
MAX_VALUE_LEN = 128


class LabelLimiter:
    """Admit at most `limit` distinct values of one label; fold the rest into `_OTHER`."""

    __slots__ = ("_limit", "_seen", "overflow")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = {"", OTHER}
        self.overflow = 0  # values folded so far (one per observation)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(value) > MAX_VALUE_LEN:
            value = value[:MAX_VALUE_LEN]
            if value in self._seen:
                return value
        if len(self._seen) - 2 < self._limit:
            self._seen.add(value)
            return value
        self.overflow += 1
        return OTHER

    def set_limit(self, limit: int) -> None:
        """Change the limit; values admitted so far stay admitted."""
        self._limit = limit

    def __len__(self) -> int:
        return len(self._seen) - 2

    def admitted(self) -> list[str]:
        """The values admitted so far, sorted (for a checkpoint)."""
        return sorted(self._seen)

    def restore(self, admitted: Iterable[str], overflow: int) -> None:
        """Take back what a checkpoint saved: the values admitted then, and the overflow count."""
        self._seen.update(admitted)
        self.overflow = overflow


class LabelLimits:
    """Every label's limiter, keyed by (metric, label), each created on first use."""

    __slots__ = ("_limiters", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._limiters: dict[tuple[str, str], LabelLimiter] = {}

    def __call__(self, metric: str, label: str) -> LabelLimiter:
        """The value limiter of one label of one metric."""
        key = (metric, label)
        lim = self._limiters.get(key)
        if lim is None:
            lim = self._limiters[key] = LabelLimiter(self.limit)
        return lim

    def items(self) -> Iterator[tuple[tuple[str, str], LabelLimiter]]:
        """(metric, label) and limiter, in a stable order."""
        return iter(sorted(self._limiters.items()))
