"""The landing page's rolling window: per-second request totals over the last 15 minutes.

The request hot path adds to the current one-second `Slot`; the page and `/api/dashboard` read
copies of the live slots (`series`) or a one-minute summary (`summary`). Exemplars, error types
and GPU readings are not kept here (the page samples those itself).
"""

from __future__ import annotations

from llm_exporter.metrics.hist import DURATION_BUCKETS, quantile

#: seconds kept
SPAN = 900


class Slot:
    """The totals of one second: requests by outcome (success, error, aborted), tokens, and the
    request-duration bucket counts (non-cumulative, `DURATION_BUCKETS` plus +Inf)."""

    __slots__ = ("duration", "outcomes", "second", "tokens_in", "tokens_out")

    def __init__(self, second: int) -> None:
        self.second = second
        self.outcomes = [0, 0, 0]
        self.tokens_in = 0
        self.tokens_out = 0
        self.duration = [0] * (len(DURATION_BUCKETS) + 1)

    def copy(self) -> Slot:
        c = Slot(self.second)
        c.outcomes = list(self.outcomes)
        c.tokens_in, c.tokens_out = self.tokens_in, self.tokens_out
        c.duration = list(self.duration)
        return c


class Window:
    """Per-second totals over the last `seconds`, for the landing page's live summary."""

    __slots__ = ("_slots", "seconds")

    def __init__(self, seconds: int = SPAN) -> None:
        self.seconds = seconds
        self._slots: list[Slot | None] = [None] * seconds

    def slot(self, now: float) -> Slot:
        """The slot of second `now`, started afresh when its place still holds an older second."""
        sec = int(now)
        i = sec % self.seconds
        s = self._slots[i]
        if s is None or s.second != sec:
            s = self._slots[i] = Slot(sec)
        return s

    def summary(self, now: float, span: int = 60) -> dict[str, float | None]:
        """Rates and latency quantiles over the last `span` seconds."""
        sec = int(now)
        req = [0, 0, 0]
        tin = tout = 0
        buckets = [0] * (len(DURATION_BUCKETS) + 1)
        for s in self._slots:
            if s is None or not (sec - span < s.second <= sec):
                continue
            for i, n in enumerate(s.outcomes):
                req[i] += n
            tin += s.tokens_in
            tout += s.tokens_out
            for i, c in enumerate(s.duration):
                buckets[i] += c
        total = sum(req)
        return {
            "requests_per_second": total / span,
            "error_ratio": (req[1] / total) if total else None,
            "p50_seconds": quantile(DURATION_BUCKETS, buckets, 0.5),
            "p95_seconds": quantile(DURATION_BUCKETS, buckets, 0.95),
            "input_tokens_per_second": tin / span,
            "output_tokens_per_second": tout / span,
        }

    def series(self, now: float) -> list[Slot]:
        """Copies of the live per-second slots, oldest first (for charts)."""
        sec = int(now)
        live = [s.copy() for s in self._slots if s is not None and sec - self.seconds < s.second <= sec]
        return sorted(live, key=lambda s: s.second)
