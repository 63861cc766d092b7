"""Histograms kept as plain arrays, and the one table of bucket bounds every family uses.

A `Hist` holds non-cumulative bucket counts (the last slot is +Inf), a sum, and optionally one
exemplar per bucket; `cumulative()` turns it into prometheus-client samples at scrape time.
`ArrayHistogram` is a histogram family that keeps its `Hist` objects for the /metrics writer
(`llm_exporter.exposition`). `quantile()` is Prometheus' `histogram_quantile` over such counts
(the landing page uses it).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.samples import Exemplar, Sample

# OpenTelemetry GenAI semantic conventions, explicit bucket advice.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
#: a `--config` histogram without `buckets:` uses the request-duration bounds
DEFAULT_BUCKETS = DURATION_BUCKETS

EXEMPLAR_ID_MAX = 64  # OpenMetrics caps an exemplar's label set at 128 UTF-8 characters


class Hist:
    """Non-cumulative bucket counts (last slot is +Inf), a sum, and optional exemplars."""

    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float], exemplars: bool = False) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.exemplars: list[tuple[str, float, float] | None] | None = (
            [None] * (len(bounds) + 1) if exemplars else None
        )

    def observe(self, v: float, exemplar_id: str | None = None) -> None:
        i = bisect_left(self.bounds, v)
        self.counts[i] += 1
        self.sum += v
        if exemplar_id is not None and self.exemplars is not None:
            self.exemplars[i] = (exemplar_id[:EXEMPLAR_ID_MAX], v, time.time())

    def cumulative(self, with_exemplars: bool) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
        out: list[Any] = []
        acc = 0
        ex = self.exemplars if with_exemplars else None
        for i, c in enumerate(self.counts):
            acc += c
            le = "+Inf" if i == len(self.bounds) else bound_text(self.bounds[i])
            e = ex[i] if ex is not None else None
            if e is not None:
                out.append((le, acc, Exemplar({"request_id": e[0]}, e[1], e[2])))
            else:
                out.append((le, acc))
        return out

    def copy(self) -> Hist:
        """A copy of the counts, sum and exemplars as they are now (a scrape's snapshot)."""
        c = Hist.__new__(Hist)
        c.bounds, c.counts, c.sum = self.bounds, self.counts[:], self.sum
        c.exemplars = self.exemplars[:] if self.exemplars is not None else None
        return c


def bound_text(b: float) -> str:
    """The `le` label value of a bucket bound."""
    return str(int(b)) if float(b).is_integer() and b >= 1 else repr(float(b))


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """Prometheus' histogram_quantile over non-cumulative counts (linear within a bucket)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    acc = 0
    for i, b in enumerate(bounds):
        c = counts[i]
        if acc + c >= rank and c > 0:
            lo = bounds[i - 1] if i > 0 else 0.0
            return float(lo + (b - lo) * (rank - acc) / c)
        acc += c
    return float(bounds[-1])  # the rank is in the +Inf bucket: the highest finite bound, as Prometheus


class ArrayHistogram(HistogramMetricFamily):
    """A histogram family whose series are `Hist` objects; `.samples` is built on first use."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], unit: str = "",
                 exemplars: bool = False) -> None:
        self._pending: list[tuple[Sequence[str], Hist]] = []
        self._built: list[Sample] = []
        super().__init__(name, documentation, labels=labels, unit=unit)
        self._exemplars = exemplars

    @property
    def samples(self) -> list[Sample]:
        if self._pending:
            pending, self._pending = self._pending, []
            for values, h in pending:
                HistogramMetricFamily.add_metric(self, values, h.cumulative(self._exemplars), h.sum)
        return self._built

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._built = value

    def add_hist(self, values: Sequence[str], h: Hist) -> None:
        """One series: its label values (in the family's label order) and its histogram, copied
        (families are built under the metrics lock and written after it is released)."""
        self._pending.append((values, h.copy()))

    @property
    def label_names(self) -> tuple[str, ...]:
        return self._labelnames
