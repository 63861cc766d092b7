"""The metrics a `--config` file defines (`metrics:`): counters, gauges and histograms fed from
numeric fields of JSON lines, labelled like the request metrics (provider, model, extra labels).

A counter adds the field's value per line, a gauge keeps the last value, a histogram observes it.
Values and label values arrive as `CustomRecord`s built by the `custom-json` adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from llm_exporter.labels import LabelLimiter
from llm_exporter.metrics.hist import DEFAULT_BUCKETS, Hist

BASE_LABELS = ("gen_ai_provider_name", "gen_ai_request_model")


class CustomMetrics:
    """Holds the values of the configured metrics (the caller holds the apply lock)."""

    def __init__(self, specs: Sequence[Any], extra_labels: Sequence[str],
                 limiter: Callable[[str, str], LabelLimiter]) -> None:
        self.specs = {s.name: s for s in specs}
        self.label_names = (*BASE_LABELS, *extra_labels)
        self._lims = {s.name: [limiter(s.name, n) for n in self.label_names] for s in specs}
        self.values: dict[str, dict[tuple[str, ...], Any]] = {s.name: {} for s in specs}

    def apply(self, rec: Any) -> None:
        spec = self.specs.get(rec["name"])
        if spec is None:
            return
        labels = rec["labels"]
        key = tuple(lim(labels.get(n) or "") for n, lim in zip(self.label_names, self._lims[spec.name],
                                                                strict=True))
        store = self.values[spec.name]
        v = rec["value"]
        if spec.type == "counter":
            if v >= 0:
                store[key] = store.get(key, 0.0) + v
        elif spec.type == "gauge":
            store[key] = v
        else:
            h = store.get(key)
            if h is None:
                h = store[key] = Hist(tuple(spec.buckets or DEFAULT_BUCKETS))
            h.observe(v)

    def families(self) -> Iterator[Metric]:
        for name, spec in self.specs.items():
            store = self.values[name]
            help_ = spec.help or f"From the field {spec.path} (--config)."
            fam: Any
            if spec.type == "counter":
                # the family's name is `name` less `_total`: prometheus-client drops the suffix itself
                fam = CounterMetricFamily(name, help_, labels=self.label_names)
                for key, v in store.items():
                    fam.add_metric(list(key), v)
            elif spec.type == "gauge":
                fam = GaugeMetricFamily(name, help_, labels=self.label_names)
                for key, v in store.items():
                    fam.add_metric(list(key), v)
            else:
                fam = HistogramMetricFamily(name, help_, labels=self.label_names)
                for key, h in store.items():
                    fam.add_metric(list(key), h.cumulative(False), h.sum)
            yield fam
