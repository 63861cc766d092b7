"""The metric state of one exporter, and the prometheus-client collector that exposes it.

`LLMMetrics` composes the family groups, each in its own module:

- `requests.RequestMetrics`: the LLM request families (`request` records, the hot path);
- `engine.EngineMetrics`: server stats gauges, access-log and log-level counters;
- `incidents.IncidentMetrics`: server incidents and prompt-token counters (`server_error`, `tokens`
  records, and the prompt figures of `request` records);
- `startup.StartupMetrics`: the server's last start (phases, capacity; `startup` records);
- `slo.SloMetrics`: `--config slo:` objectives judged on every `request` record;
- `custom.CustomMetrics`: the metrics a `--config` file defines (`custom` records);
- `accounting.TenantAccounting`: per-tenant requests, tokens and cost (fed with `request` records);
- `internal.InternalMetrics`: the exporter's own `llm_exporter_*` metrics;
- `hints.HintsSeen`: why-no-metric advice from the logs (`hint` records; no family);
- `window.Window`: the landing page's last 15 minutes.

`apply()` hands a record to the group that takes its kind; `collect()` yields every group's
families in a fixed order. Label limiters are shared through one `LabelLimits`.

The apply lock (`lock`, given by the owner of the run: `App`, or made here for one-shot use)
guards every value above and whatever a pipeline `commit` writes with the lines it counts (the
file offsets), so readers see whole batches: the pipeline thread holds it per batch of lines and
for a config swap, a scrape while copying the values out, a checkpoint while it snapshots, the
page while it reads the window or error counts. Sources' byte and `too_long`/`dropped` counters
are written by their own thread without it (one writer per key).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric

from llm_exporter.accounting import TenantAccounting
from llm_exporter.file_labels import NAMES as FILE_LABELS
from llm_exporter.labels import LabelLimits
from llm_exporter.metrics.custom import CustomMetrics
from llm_exporter.metrics.engine import EngineMetrics
from llm_exporter.metrics.hints import HintsSeen
from llm_exporter.metrics.incidents import IncidentMetrics
from llm_exporter.metrics.internal import LINE_OUTCOMES, InternalMetrics, SourceCounter
from llm_exporter.metrics.requests import CONFIGURABLE, RequestMetrics
from llm_exporter.metrics.slo import SloMetrics
from llm_exporter.metrics.startup import StartupMetrics
from llm_exporter.metrics.window import Window

__all__ = ["LINE_OUTCOMES", "LLMMetrics", "SourceCounter"]


class LLMMetrics:
    """Every metric the exporter keeps from its input; a prometheus-client custom collector."""

    def __init__(self, label_limit: int = 100, clock: Callable[[], float] = time.time,
                 lock: threading.Lock | None = None) -> None:
        self.lock = lock if lock is not None else threading.Lock()
        self._clock = clock
        self._started = clock()
        self.label_limit = label_limit
        self.limits = LabelLimits(label_limit)
        self.window = Window()
        self.requests = RequestMetrics(self.limits, self.window, clock)
        self.accounting = TenantAccounting(self.limits, label_limit)
        self.requests.accounting = self.accounting
        self.engine = EngineMetrics(self.limits, self.requests.model_limiter(), clock)
        self.incidents = IncidentMetrics(self.limits, self.requests.model_limiter())
        self.requests.prompt_sink = self.incidents.add_prompt
        self.startup = StartupMetrics()
        self.slo = SloMetrics(self.requests.model_limiter())
        self.internal = InternalMetrics(self.limits)
        self.hints = HintsSeen()
        self.custom: CustomMetrics | None = None
        #: --file-labels: the request families also carry the workload labels of a file's path
        self.file_labels = False
        # record kind -> the group method that applies it
        self._apply: dict[str, Callable[[Any, float | None], None]] = {
            "request": self.requests.apply,
            **self.engine.appliers(),
            **self.incidents.appliers(),
            **self.startup.appliers(),
            **self.hints.appliers(),
            "custom": self._apply_custom,
            "evicted": self.internal.apply_evicted,
        }

    def configure(self, config: Any) -> None:
        """Take the extra labels, bucket bounds, objectives and custom metrics of a `--config` (None:
        none). Changing the extra label names or the bounds starts the request series over, as a
        restart would (caller holds the lock)."""
        names = tuple(config.label_names) if config is not None else ()
        self.requests.set_extra_labels(names + (FILE_LABELS if self.file_labels else ()))
        self.requests.set_bounds({h: config.bucket_bounds(h, b) for h, b in CONFIGURABLE.items()}
                                 if config is not None else {})
        self.accounting.configure(getattr(config, "accounting", None))
        self.slo.configure(config.slo if config is not None else [])
        self._apply["request"] = self._apply_request_slo if self.slo.objectives else self.requests.apply
        specs = config.all_metrics if config is not None else []
        if not specs:
            self.custom = None
        elif self.custom is None or list(self.custom.specs.values()) != specs or \
                self.custom.label_names[2:] != names:
            self.custom = CustomMetrics(specs, names, self.limits)

    def apply(self, rec: Any, now: float | None = None) -> None:
        """Update the metrics from one canonical record (caller holds the lock)."""
        self._apply[rec["kind"]](rec, now)

    def _apply_request_slo(self, rec: Any, now: float | None = None) -> None:
        self.requests.apply(rec, now)
        self.slo.apply(rec)

    def _apply_custom(self, rec: Any, now: float | None = None) -> None:
        if self.custom is not None:
            self.custom.apply(rec)

    def source(self, name: str) -> SourceCounter:
        """The narrow counting handle a source gets (see `internal.SourceCounter`)."""
        return self.internal.source(name)

    def summary(self) -> dict[str, float | None]:
        """The last minute's rates and latency quantiles (the time since start, if shorter)."""
        now = self._clock()
        span = max(1, min(60, int(now) - int(self._started) + 1))
        with self.lock:
            return self.window.summary(now, span)

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            fams = list(self._families(with_exemplars=True))
        yield from fams

    def _families(self, with_exemplars: bool) -> Iterator[Metric]:
        yield from self.requests.families(with_exemplars)
        yield from self.accounting.families()
        yield from self.engine.families()
        yield from self.incidents.families()
        yield from self.startup.families()
        yield from self.slo.families()
        yield from self.internal.counters()
        if self.custom is not None:
            yield from self.custom.families()
        yield self.internal.build_info()
