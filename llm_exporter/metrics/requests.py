"""The LLM request families (`gen_ai_*` histograms, `llm_requests_total`, ...) and the per-record
hot path that updates them.

Hot path: a `request` record updates plain per-series arrays (bisect into fixed bucket bounds,
add to a list slot); nothing here allocates a prometheus-client child per observation. At scrape
time `families()` turns the arrays into `*MetricFamily` objects (cumulative buckets, exemplars
for OpenMetrics). The caller holds the apply lock (see `llm_exporter.metrics`).

Adding a family fed by request records:
1. a field on `RequestSeries` (a `Hist` named in `HISTS`, or a `{label value: count}` dict named
   in `COUNTS`): the checkpoint then saves and restores it with no further change;
2. its update in `RequestMetrics.apply` (read the record with `get`, fold label values through a
   limiter from `self.limits`);
3. its `*MetricFamily` in `RequestMetrics.families`, at the end so earlier output keeps its order.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from llm_exporter.accounting import TenantAccounting, adapter_label
from llm_exporter.labels import LabelLimiter, LabelLimits
from llm_exporter.metrics.hist import (
    DURATION_BUCKETS,
    EXEMPLAR_ID_MAX,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    ArrayHistogram,
    Hist,
)
from llm_exporter.metrics.window import Slot, Window

COMMON = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
OUTCOMES = ("success", "error", "aborted")
ADMITTED_CACHE = 4096  # (operation, provider, model) values seen admitted, found without the limiters

#: the single histograms of a series: field -> (bucket bounds, keeps exemplars)
HISTS: dict[str, tuple[tuple[float, ...], bool]] = {
    "queue": (DURATION_BUCKETS, False),
    "inference": (DURATION_BUCKETS, False),
    "ttft": (TTFT_BUCKETS, True),
    "tpot": (TPOT_BUCKETS, False),
    "tokens_in": (TOKEN_BUCKETS, False),
    "tokens_out": (TOKEN_BUCKETS, False),
}
#: the histograms whose bounds `--config buckets:` (and the SLO thresholds) can set: their
#: built-in bounds
CONFIGURABLE: dict[str, tuple[float, ...]] = {
    "duration": DURATION_BUCKETS, "ttft": TTFT_BUCKETS, "tpot": TPOT_BUCKETS,
    "queue": DURATION_BUCKETS, "inference": DURATION_BUCKETS,
}
#: the counts of a series by one label value: field -> key in the checkpoint
COUNTS = {"errors": "e", "finish": "f"}


class RequestSeries:
    """Everything kept for one (operation, provider, model, LoRA adapter[, extra labels]) combination."""

    __slots__ = ("duration", "errors", "finish", "inference", "queue", "requests", "tokens_in",
                 "tokens_out", "tpot", "ttft")

    def __init__(self) -> None:
        self.requests = [0, 0, 0]  # by OUTCOMES
        self.duration: dict[str, Hist] = {}  # by error_type ("" for requests that did not fail)
        self.errors: dict[str, int] = {}  # by error_type
        self.finish: dict[str, int] = {}  # by finish reason
        self.queue: Hist | None = None
        self.inference: Hist | None = None
        self.ttft: Hist | None = None
        self.tpot: Hist | None = None
        self.tokens_in: Hist | None = None
        self.tokens_out: Hist | None = None


class RequestMetrics:
    """The request series, keyed by their label values; fed by `request` records."""

    def __init__(self, limits: LabelLimits, window: Window, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.window = window
        self._clock = clock
        self.series: dict[tuple[str, ...], RequestSeries] = {}
        self._wslot = Slot(-1)  # the window's current one-second slot (none yet)
        self._admitted: set[tuple[str, str, str]] = set()
        self._lim_model = limits("llm_requests_total", "gen_ai_request_model")
        self._lim_op = limits("llm_requests_total", "gen_ai_operation_name")
        self._lim_err = limits("llm_request_errors_total", "error_type")
        self._lim_finish = limits("llm_request_finish_reasons_total", "gen_ai_response_finish_reason")
        self._lim_adapter = limits("llm_requests_total", "llm_adapter")
        #: per-tenant counting, handed each request with its bounded provider and model (set by LLMMetrics)
        self.accounting: TenantAccounting | None = None
        # --config extra_labels: label names added to every request family
        self.extra_labels: tuple[str, ...] = ()
        self._lim_extra: list[LabelLimiter] = []
        #: where a record's `prompt_tokens` / `cached_tokens` go (`incidents.IncidentMetrics.add_prompt`)
        self.prompt_sink: Callable[[str, str, str, int, int | None], None] | None = None
        # bucket bounds in use (--config buckets: and slo: thresholds), one attribute each for the hot path
        self.bounds: dict[str, tuple[float, ...]] = dict(CONFIGURABLE)
        self._b_duration: tuple[float, ...] = DURATION_BUCKETS
        self._b_ttft: tuple[float, ...] = TTFT_BUCKETS
        self._b_tpot: tuple[float, ...] = TPOT_BUCKETS
        self._b_queue: tuple[float, ...] = DURATION_BUCKETS
        self._b_inference: tuple[float, ...] = DURATION_BUCKETS

    def set_bounds(self, bounds: dict[str, tuple[float, ...]]) -> None:
        """Use these bucket bounds (histogram name -> bounds; the rest built-in); a change starts
        the series over, as a restart would."""
        new = {**CONFIGURABLE, **{k: tuple(v) for k, v in bounds.items() if k in CONFIGURABLE}}
        if new != self.bounds:
            self.series.clear()
            self.bounds = new
            self._take_bounds()

    def _take_bounds(self) -> None:
        b = self.bounds
        # the built-in tuples themselves where unchanged: the page's window compares by identity
        self._b_duration = DURATION_BUCKETS if b["duration"] == DURATION_BUCKETS else b["duration"]
        self._b_ttft, self._b_tpot = b["ttft"], b["tpot"]
        self._b_queue, self._b_inference = b["queue"], b["inference"]

    def hist_bounds(self, name: str) -> tuple[float, ...]:
        """The bounds a series' histogram `name` (a `HISTS` field, or "duration") is kept with now."""
        return self.bounds[name] if name in self.bounds else HISTS[name][0]

    def set_extra_labels(self, names: tuple[str, ...]) -> None:
        """Use these extra label names; a change starts the series over, as a restart would."""
        if names != self.extra_labels:
            self.series.clear()
            self.extra_labels = names
            self._lim_extra = [self.limits("llm_requests_total", n) for n in names]

    def model_limiter(self) -> LabelLimiter:
        """The limiter of `gen_ai_request_model`, shared with the server-stats gauges."""
        return self._lim_model

    def error_counts(self) -> dict[str, int]:
        """Failed requests by error type, summed over every series."""
        out: dict[str, int] = {}
        for s in self.series.values():
            for et, c in s.errors.items():
                out[et] = out.get(et, 0) + c
        return out

    def apply(self, rec: Any, now: float | None = None) -> None:
        """Update the series of one `request` record (the hot path)."""
        # Hist.observe is written out inline (one call less per histogram), and label values all
        # admitted by their limiters before are not asked again (the limiters would hand back the
        # same values and count nothing; a limiter that forgets values must clear `_admitted`).
        key: tuple[str, ...] = (rec["operation"], rec["provider"], rec["model"])
        if key not in self._admitted:
            key = self._limited(key)  # type: ignore[arg-type]
        get = rec.get
        ad = get("adapter")
        key = (*key, self._lim_adapter(adapter_label(ad)) if ad else "")  # llm_adapter, "" for the base model
        if self.extra_labels:  # --config extra_labels: "" where the record has none
            ex = rec.get("extra_labels") or {}
            key = (*key, *(lim(ex.get(n) or "") for n, lim in zip(self.extra_labels, self._lim_extra, strict=True)))
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = RequestSeries()
        outcome = rec["outcome"]
        oi = 0 if outcome == "success" else (1 if outcome == "error" else 2)
        s.requests[oi] += 1
        acc = self.accounting
        # an API key alone is hashed only with `accounting:` configured (enabled): no key test here
        if acc is not None and (acc.enabled or get("tenant") is not None):
            acc.apply(rec, key[1], key[2], oi)
        err = ""
        if oi == 1:
            err = self._lim_err(rec["error_type"] or "_OTHER")
            s.errors[err] = s.errors.get(err, 0) + 1
        sec = int(self._clock() if now is None else now)
        w = self._wslot
        if w.second != sec:
            w = self._wslot = self.window.slot(sec)
        w.outcomes[oi] += 1
        d = get("duration_s")
        if d is not None:
            h = s.duration.get(err)
            db = self._b_duration
            if h is None:
                h = s.duration[err] = Hist(db, exemplars=True)
            i = bisect_left(db, d)
            h.counts[i] += 1
            h.sum += d
            rid = get("request_id")
            if rid is not None:
                h.exemplars[i] = (rid[:EXEMPLAR_ID_MAX], d, time.time())  # type: ignore[index]
            w.duration[i if db is DURATION_BUCKETS else bisect_left(DURATION_BUCKETS, d)] += 1
        v = get("queue_s")
        if v is not None:
            h = s.queue
            if h is None:
                h = s.queue = Hist(self._b_queue)
            h.counts[bisect_left(h.bounds, v)] += 1
            h.sum += v
        v = get("inference_s")
        if v is not None:
            h = s.inference
            if h is None:
                h = s.inference = Hist(self._b_inference)
            h.counts[bisect_left(h.bounds, v)] += 1
            h.sum += v
        tin = get("input_tokens")
        if tin is not None:
            h = s.tokens_in
            if h is None:
                h = s.tokens_in = Hist(TOKEN_BUCKETS)
            h.counts[bisect_left(TOKEN_BUCKETS, tin)] += 1
            h.sum += tin
            w.tokens_in += tin
        tout = get("output_tokens")
        if tout is not None:
            h = s.tokens_out
            if h is None:
                h = s.tokens_out = Hist(TOKEN_BUCKETS)
            h.counts[bisect_left(TOKEN_BUCKETS, tout)] += 1
            h.sum += tout
            w.tokens_out += tout
        fr = get("finish_reason")
        if fr:
            fr = self._lim_finish(fr)
            s.finish[fr] = s.finish.get(fr, 0) + 1
        pt = get("prompt_tokens")
        if pt is not None and self.prompt_sink is not None:
            self.prompt_sink(rec["provider"], rec["model"], "", pt, get("cached_tokens"))
        if oi != 0:
            return
        ttft = get("ttft_s")
        if ttft is not None:
            if s.ttft is None:
                s.ttft = Hist(self._b_ttft, exemplars=True)
            s.ttft.observe(ttft, get("request_id"))
        tpot = get("tpot_s")
        if tpot is None and ttft is not None and d is not None and tout is not None and tout > 1 and d >= ttft:
            tpot = (d - ttft) / (tout - 1)
        if tpot is not None:
            if s.tpot is None:
                s.tpot = Hist(self._b_tpot)
            s.tpot.observe(tpot)

    def _limited(self, raw: tuple[str, str, str]) -> tuple[str, str, str]:
        op, provider, model = raw
        key = (self._lim_op(op), provider, self._lim_model(model))
        if key == raw and len(self._admitted) < ADMITTED_CACHE:
            self._admitted.add(raw)
        return key

    def families(self, with_exemplars: bool) -> Iterator[Metric]:
        common = (*COMMON, *self.extra_labels)
        with_adapter = (*COMMON, "llm_adapter", *self.extra_labels)  # the families split by LoRA adapter
        dur = ArrayHistogram("gen_ai_server_request_duration_seconds",
                                    "Generative AI server request duration, end to end.",
                                    labels=(*with_adapter, "error_type"), unit="seconds", exemplars=with_exemplars)
        ttft = ArrayHistogram("gen_ai_server_time_to_first_token_seconds",
                                     "Time to generate the first token, successful requests.",
                                     labels=common, unit="seconds", exemplars=with_exemplars)
        tpot = ArrayHistogram("gen_ai_server_time_per_output_token_seconds",
                                     "Time per output token after the first, successful requests.",
                                     labels=common, unit="seconds", exemplars=with_exemplars)
        tok = ArrayHistogram("gen_ai_client_token_usage",
                                    "Number of input and output tokens per request.",
                                    labels=(*with_adapter, "gen_ai_token_type"))
        queue = ArrayHistogram("llm_request_queue_duration_seconds",
                                      "Time a request waited before inference started.",
                                      labels=common, unit="seconds", exemplars=with_exemplars)
        inf = ArrayHistogram("llm_request_inference_duration_seconds",
                                    "Time a request spent in inference (prefill and decode).",
                                    labels=common, unit="seconds", exemplars=with_exemplars)
        req = CounterMetricFamily("llm_requests", "Finished requests by outcome.",
                                  labels=(*with_adapter, "outcome"))
        errs = CounterMetricFamily("llm_request_errors", "Failed requests by error type.",
                                   labels=(*common, "error_type"))
        fin = CounterMetricFamily("llm_request_finish_reasons", "Finished requests by finish reason.",
                                  labels=(*common, "gen_ai_response_finish_reason"))
        by_model: dict[tuple[str, ...], list[RequestSeries]] = {}  # the adapters of one model's series
        for key, s in self.series.items():
            labels = list(key)
            for oi, n in enumerate(s.requests):
                if n:
                    req.add_metric([*labels, OUTCOMES[oi]], n)
            for et, dh in s.duration.items():
                dur.add_hist((*key, et), dh)
            if s.tokens_in is not None:
                tok.add_hist((*key, "input"), s.tokens_in)
            if s.tokens_out is not None:
                tok.add_hist((*key, "output"), s.tokens_out)
            by_model.setdefault((*key[:3], *key[4:]), []).append(s)
        for key, ss in by_model.items():  # the families without llm_adapter add the adapters up
            s = ss[0] if len(ss) == 1 else _merged(ss)
            labels = list(key)
            for et, n in s.errors.items():
                errs.add_metric([*labels, et], n)
            for fr, n in s.finish.items():
                fin.add_metric([*labels, fr], n)
            for fam, h in ((ttft, s.ttft), (tpot, s.tpot), (queue, s.queue), (inf, s.inference)):
                if h is not None:
                    fam.add_hist(key, h)
        yield from (dur, ttft, tpot, tok, queue, inf, req, errs, fin)


def _merged(ss: list[RequestSeries]) -> RequestSeries:
    """One series holding the errors, finish reasons and the histograms that carry no
    `llm_adapter` label, added up over the adapters of one model (for exposition only)."""
    out = RequestSeries()
    for s in ss:
        for name in COUNTS:
            acc_counts: dict[str, int] = getattr(out, name)
            for v, n in getattr(s, name).items():
                acc_counts[v] = acc_counts.get(v, 0) + n
        for name in ("ttft", "tpot", "queue", "inference"):
            h = getattr(s, name)
            if h is None:
                continue
            acc = getattr(out, name)
            if acc is None:
                acc = Hist(h.bounds, exemplars=h.exemplars is not None)
                setattr(out, name, acc)
            acc.counts = [a + b for a, b in zip(acc.counts, h.counts, strict=True)]
            acc.sum += h.sum
            if acc.exemplars is not None and h.exemplars is not None:
                acc.exemplars = [e or f for e, f in zip(h.exemplars, acc.exemplars, strict=True)]
    return out
