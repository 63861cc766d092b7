"""Bounded label values: past a limit, new values fold into `_OTHER` and the fold is counted."""

from __future__ import annotations

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

    def __len__(self) -> int:
        return len(self._seen) - 2
