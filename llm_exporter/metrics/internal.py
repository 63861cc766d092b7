"""The exporter's own metrics: lines by source and outcome, bytes by source, label values folded
by the cardinality limit, open requests evicted from pairing tables, build info.

A source counts through a `SourceCounter`, a narrow handle for its own series only (bytes read,
lines framed away as `too_long` or `dropped`); the pipeline counts the other outcomes. Each
source's series are created at 0 when its counter is made, so threads counting into them later
never change the dicts' size while a scrape iterates them; each key is then written by one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_exporter import SEMCONV_VERSION, __version__
from llm_exporter.labels import LabelLimits

LINE_OUTCOMES = ("record", "ignored", "unparsed", "invalid", "too_long", "dropped")


class InternalMetrics:
    """`llm_exporter_*` counters and build info."""

    def __init__(self, limits: LabelLimits) -> None:
        self.limits = limits
        self.lines: dict[tuple[str, str], int] = {}
        self.bytes: dict[str, int] = {}
        self.evicted: dict[str, int] = {}  # provider -> open requests evicted from pairing tables

    def source(self, name: str) -> SourceCounter:
        """The counting handle of one source (its series start at 0 now)."""
        for o in LINE_OUTCOMES:
            self.lines.setdefault((name, o), 0)
        self.bytes.setdefault(name, 0)
        return SourceCounter(self, name)

    def count_line(self, source: str, outcome: str, n: int = 1) -> None:
        key = (source, outcome)
        self.lines[key] = self.lines.get(key, 0) + n

    def apply_evicted(self, rec: dict[str, Any], now: float | None = None) -> None:
        p = rec["provider"]
        self.evicted[p] = self.evicted.get(p, 0) + rec["n"]

    def line_totals(self) -> dict[str, int]:
        """Lines by outcome, summed over sources."""
        totals = dict.fromkeys(LINE_OUTCOMES, 0)
        for (_src, outcome), n in self.lines.items():
            totals[outcome] += n
        return totals

    def counters(self) -> Iterator[Metric]:
        """Lines, bytes and label overflow."""
        lines = CounterMetricFamily("llm_exporter_lines", "Lines read, by source and outcome.",
                                    labels=("source", "outcome"))
        for (src, out), n in sorted(self.lines.items()):
            lines.add_metric([src, out], n)
        yield lines
        byt = CounterMetricFamily("llm_exporter_bytes", "Bytes read, by source.", labels=("source",))
        for src, n in sorted(self.bytes.items()):
            byt.add_metric([src], n)
        yield byt
        ovf = CounterMetricFamily("llm_exporter_label_overflow",
                                  "Label values folded into _OTHER by the cardinality limit.",
                                  labels=("metric", "label"))
        for (metric, label), lim in self.limits.items():
            ovf.add_metric([metric, label], lim.overflow)
        yield ovf
        ev = CounterMetricFamily("llm_exporter_open_requests_evicted",
                                 "Open requests (a start line seen, its end line not yet) dropped because the "
                                 "pairing table was full; their end lines count no duration.",
                                 labels=("gen_ai_provider_name",))
        for p, n in sorted(self.evicted.items()):
            ev.add_metric([p], n)
        yield ev

    def build_info(self) -> Metric:
        info = GaugeMetricFamily("llm_exporter_build_info", "Build information; always 1.",
                                 labels=("version", "revision", "semconv_version"))
        info.add_metric([__version__, _revision(), SEMCONV_VERSION], 1)
        return info


class SourceCounter:
    """What one source may count: its bytes read and its lines that never reach the pipeline."""

    __slots__ = ("_m", "name")

    def __init__(self, m: InternalMetrics, name: str) -> None:
        self._m = m
        self.name = name

    def bytes(self, n: int) -> None:
        b = self._m.bytes
        b[self.name] += n

    def lines(self, outcome: str, n: int = 1) -> None:
        self._m.lines[(self.name, outcome)] += n


#: what a source is given: makes the counting handle of a source name (`LLMMetrics.source`)
Counters = Callable[[str], SourceCounter]

_REVISION: str | None = None


def _revision() -> str:
    """The git revision baked in at build time (LLM_EXPORTER_REVISION), else empty."""
    global _REVISION
    if _REVISION is None:
        _REVISION = os.environ.get("LLM_EXPORTER_REVISION", "")
    return _REVISION
