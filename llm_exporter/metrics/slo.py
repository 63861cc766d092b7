"""Service level objectives (`--config slo:`): every finished request judged against each objective
whose model selector it matches, counted as good, bad or unjudged, with its output tokens (goodput).

A request is good when it succeeded and every threshold it can be judged on holds (value <= the
threshold, the same side of the edge as a histogram's `le` bucket). It is bad when it failed, or
when a value it carries is over a threshold. It is unjudged when it succeeded (or was aborted by
the client) but carries none of the values the objective sets a threshold on; an aborted request
with a value over a threshold is bad. TPOT is the logged one, else (duration - TTFT) / (output
tokens - 1), as for the TPOT histogram.

The caller holds the apply lock (see `llm_exporter.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

RESULTS = ("good", "bad", "unjudged")
GOOD, BAD, UNJUDGED = 0, 1, 2
MATCH_CACHE = 4096  # model names whose matching objectives are remembered

#: record field of each threshold
FIELDS = {"ttft": "ttft_s", "tpot": "tpot_s", "duration": "duration_s", "queue": "queue_s"}


class Objective:
    """One compiled `slo:` entry."""

    __slots__ = ("models", "name", "target", "thresholds")

    def __init__(self, name: str, models: Sequence[str], thresholds: dict[str, float], target: float) -> None:
        self.name = name
        self.models = tuple(models)
        self.thresholds = tuple(thresholds.items())
        self.target = target

    def key(self) -> tuple[Any, ...]:
        return (self.name, self.models, self.thresholds, self.target)

    def selects(self, model: str) -> bool:
        return not self.models or any(fnmatchcase(model, m) for m in self.models)

    def judge(self, rec: Any, tpot: float | None) -> int:
        get = rec.get
        judged = False
        for field, limit in self.thresholds:
            v = tpot if field == "tpot" else get(FIELDS[field])
            if v is None:
                continue
            if v > limit:
                return BAD
            judged = True
        outcome = rec["outcome"]
        if outcome == "error":
            return BAD
        if outcome == "success" and judged:
            return GOOD
        return UNJUDGED


class SloMetrics:
    """`llm_slo_requests_total`, `llm_slo_output_tokens_total` and `llm_slo_target_ratio`."""

    def __init__(self, model_limiter: Callable[[str], str]) -> None:
        self._lim_model = model_limiter
        self.objectives: list[Objective] = []
        self.requests: dict[tuple[str, str], list[int]] = {}  # (slo, model) -> counts by RESULTS
        self.tokens: dict[tuple[str, str], list[int]] = {}
        self._matches: dict[str, tuple[Objective, ...]] = {}

    def configure(self, slos: Sequence[Any]) -> None:
        """Take the `slo:` list of a config. Objectives whose definition is unchanged keep their
        counts; a changed or removed one starts over (its old series go)."""
        new = [Objective(s.name, s.model, s.thresholds, s.target) for s in slos]
        keep = {o.name for o in new} & {o.name for o in self.objectives if o.key() in {n.key() for n in new}}
        self.requests = {k: v for k, v in self.requests.items() if k[0] in keep}
        self.tokens = {k: v for k, v in self.tokens.items() if k[0] in keep}
        self.objectives = new
        self._matches.clear()

    def snapshot(self) -> dict[str, Any]:
        """The counts with the definitions they were judged by (for the `--state-dir` checkpoint)."""
        return {"objectives": [[o.name, list(o.models), [list(t) for t in o.thresholds], o.target]
                               for o in self.objectives],
                "requests": [[list(k), v] for k, v in self.requests.items()],
                "tokens": [[list(k), v] for k, v in self.tokens.items()]}

    def restore(self, data: Any) -> None:
        """Take saved counts back for the objectives still defined the same way (raises on a
        damaged snapshot; the caller keeps the metrics unchanged then)."""
        if not data:
            return
        saved = {str(n): (str(n), tuple(str(x) for x in m), tuple((str(f), float(v)) for f, v in t), float(g))
                 for n, m, t, g in data.get("objectives", [])}
        same = {o.name for o in self.objectives if saved.get(o.name) == o.key()}
        for field, into in (("requests", self.requests), ("tokens", self.tokens)):
            for (slo, model), counts in data.get(field, []):
                if slo in same and len(counts) == len(RESULTS):
                    into[(str(slo), str(model))] = [int(c) for c in counts]

    def apply(self, rec: Any) -> None:
        """Judge one `request` record against every objective that selects its model."""
        model = rec["model"]
        objs = self._matches.get(model)
        if objs is None:
            objs = tuple(o for o in self.objectives if o.selects(model))
            if len(self._matches) < MATCH_CACHE:
                self._matches[model] = objs
        if not objs:
            return
        get = rec.get
        tpot = get("tpot_s")
        tout = get("output_tokens")
        if tpot is None:
            ttft, d = get("ttft_s"), get("duration_s")
            if ttft is not None and d is not None and tout is not None and tout > 1 and d >= ttft:
                tpot = (d - ttft) / (tout - 1)
        label = self._lim_model(model)
        for o in objs:
            r = o.judge(rec, tpot)
            key = (o.name, label)
            c = self.requests.get(key)
            if c is None:
                c = self.requests[key] = [0, 0, 0]
            c[r] += 1
            if tout is not None:
                t = self.tokens.get(key)
                if t is None:
                    t = self.tokens[key] = [0, 0, 0]
                t[r] += tout

    def families(self) -> Iterator[Metric]:
        if not self.objectives and not self.requests:
            return
        req = CounterMetricFamily("llm_slo_requests", "Finished requests judged against each service level "
                                  "objective: good, bad (failed or over a threshold) or unjudged.",
                                  labels=("slo", "gen_ai_request_model", "result"))
        tok = CounterMetricFamily("llm_slo_output_tokens", "Output tokens of the requests judged against each "
                                  "objective, by result (good: goodput).",
                                  labels=("slo", "gen_ai_request_model", "result"))
        target = GaugeMetricFamily("llm_slo_target", "The share of requests each objective wants good "
                                   "(--config slo: target).", labels=("slo",), unit="ratio")
        threshold = GaugeMetricFamily("llm_slo_threshold", "Each objective's thresholds (--config slo:).",
                                      labels=("slo", "field"), unit="seconds")
        for (slo, model), counts in sorted(self.requests.items()):
            for i, n in enumerate(counts):
                req.add_metric([slo, model, RESULTS[i]], n)
        for (slo, model), counts in sorted(self.tokens.items()):
            for i, n in enumerate(counts):
                tok.add_metric([slo, model, RESULTS[i]], n)
        for o in self.objectives:
            target.add_metric([o.name], o.target)
            for field, limit in o.thresholds:
                threshold.add_metric([o.name, field], limit)
        yield from (req, tok, target, threshold)
