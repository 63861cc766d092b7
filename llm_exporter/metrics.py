"""The LLM metric families, and how each record updates them.

Hot path: a record updates plain per-series arrays (bisect into fixed bucket bounds, add to a
list slot); nothing here allocates a prometheus-client child per observation. At scrape time
`LLMMetrics.collect()` turns the arrays into `*MetricFamily` objects (cumulative buckets,
exemplars for OpenMetrics). One lock guards the arrays: the pipeline holds it per batch of
lines, a scrape holds it while copying out.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

from llm_exporter import SEMCONV_VERSION, __version__
from llm_exporter.hints import HINTS
from llm_exporter.hints import text as hint_text
from llm_exporter.labels import LabelLimiter
from llm_exporter.metrics_slo import SloMetrics
from llm_exporter.metrics_startup import StartupMetrics

# OpenTelemetry GenAI semantic conventions, explicit bucket advice.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

COMMON = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
STATS_LABELS = ("gen_ai_provider_name", "gen_ai_request_model", "engine")
OUTCOMES = ("success", "error", "aborted")
log = logging.getLogger("llm_exporter.hints")

LINE_OUTCOMES = ("record", "ignored", "unparsed", "invalid", "too_long", "dropped")
EXEMPLAR_ID_MAX = 64  # OpenMetrics caps an exemplar's label set at 128 UTF-8 characters
ADMITTED_CACHE = 4096  # (operation, provider, model) values seen admitted, found without the limiters


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
            le = "+Inf" if i == len(self.bounds) else _fmt(self.bounds[i])
            e = ex[i] if ex is not None else None
            if e is not None:
                out.append((le, acc, Exemplar({"request_id": e[0]}, e[1], e[2])))
            else:
                out.append((le, acc))
        return out

    def quantile(self, q: float) -> float | None:
        return quantile(self.bounds, self.counts, q)


def _fmt(b: float) -> str:
    return str(int(b)) if float(b).is_integer() and b >= 1 else repr(float(b))


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """Prometheus' histogram_quantile over non-cumulative counts (linear within a bucket)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    acc = 0
    for i, c in enumerate(counts):
        if acc + c >= rank and c > 0:
            if i == len(bounds):
                return float(bounds[-1])
            lo = bounds[i - 1] if i > 0 else 0.0
            return float(lo + (bounds[i] - lo) * (rank - acc) / c)
        acc += c
    return float(bounds[-1])


class RequestSeries:
    """Everything kept for one (operation, provider, model) combination."""

    __slots__ = ("duration", "errors", "finish", "inference", "queue", "requests", "tokens_in",
                 "tokens_out", "tpot", "ttft")

    def __init__(self) -> None:
        self.requests = [0, 0, 0]  # by OUTCOMES
        self.duration: dict[str, Hist] = {}  # by error_type
        self.errors: dict[str, int] = {}
        self.finish: dict[str, int] = {}
        self.queue: Hist | None = None
        self.inference: Hist | None = None
        self.ttft: Hist | None = None
        self.tpot: Hist | None = None
        self.tokens_in: Hist | None = None
        self.tokens_out: Hist | None = None


class Window:
    """Per-second totals over the last `seconds`, for the landing page's live summary."""

    __slots__ = ("_slots", "seconds")

    def __init__(self, seconds: int = 900) -> None:
        self.seconds = seconds
        # slot: [epoch_second, success, error, aborted, tokens_in, tokens_out, duration bucket counts]
        self._slots: list[list[Any] | None] = [None] * seconds

    def slot(self, now: float) -> list[Any]:
        sec = int(now)
        i = sec % self.seconds
        s = self._slots[i]
        if s is None or s[0] != sec:
            s = [sec, 0, 0, 0, 0, 0, [0] * (len(DURATION_BUCKETS) + 1)]
            self._slots[i] = s
        return s

    def summary(self, now: float, span: int = 60) -> dict[str, float | None]:
        """Rates and latency quantiles over the last `span` seconds."""
        sec = int(now)
        req = [0, 0, 0]
        tin = tout = 0
        buckets = [0] * (len(DURATION_BUCKETS) + 1)
        for s in self._slots:
            if s is None or not (sec - span < s[0] <= sec):
                continue
            req[0] += s[1]
            req[1] += s[2]
            req[2] += s[3]
            tin += s[4]
            tout += s[5]
            for i, c in enumerate(s[6]):
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

    def series(self, now: float) -> list[list[Any]]:
        """The live per-second slots, oldest first (for charts)."""
        sec = int(now)
        live = [s for s in self._slots if s is not None and sec - self.seconds < s[0] <= sec]
        return sorted(live, key=lambda s: s[0])


class LLMMetrics:
    """Holds every LLM and self metric; a prometheus-client custom collector."""

    def __init__(self, label_limit: int = 100, clock: Any = time.time) -> None:
        self.lock = threading.Lock()
        self._clock = clock
        self._started = clock()
        self.label_limit = label_limit
        self._limiters: dict[tuple[str, str], LabelLimiter] = {}
        self.requests: dict[tuple[str, ...], RequestSeries] = {}
        self.stats: dict[tuple[str, str, str], dict[str, float]] = {}
        self.http: dict[tuple[str, str, str, str], int] = {}
        self.logs: dict[tuple[str, str], int] = {}
        #: why-no-metric advice seen (`llm_exporter.hints` key -> provider), logged once each
        self.hints: dict[str, str] = {}
        # self metrics; each key is written by one thread only (see sources)
        self.lines: dict[tuple[str, str], int] = {}
        self.bytes: dict[str, int] = {}
        self.window = Window()
        self._wslot: list[Any] = [None]  # the window's current one-second slot
        self._admitted: set[tuple[str, str, str]] = set()
        self._lim_model = self.limiter("llm_requests_total", "gen_ai_request_model")
        self._lim_op = self.limiter("llm_requests_total", "gen_ai_operation_name")
        self._lim_err = self.limiter("llm_request_errors_total", "error_type")
        self._lim_finish = self.limiter("llm_request_finish_reasons_total", "gen_ai_response_finish_reason")
        self._lim_path = self.limiter("llm_http_requests_total", "path")
        self._lim_engine = self.limiter("llm_requests_running", "engine")
        self._apply = {
            "request": self.apply_request,
            "stats": self.apply_stats,
            "http": self.apply_http,
            "log": self.apply_log,
            "custom": self.apply_custom,
            "hint": self.apply_hint,
        }
        self.startup = StartupMetrics()
        self._apply["startup"] = self.startup.apply
        self.slo = SloMetrics(self._lim_model)
        # --config: extra label names on every request family, and the file's own metrics
        self.extra_labels: tuple[str, ...] = ()
        self._lim_extra: list[LabelLimiter] = []
        self.custom: Any = None

    def configure(self, config: Any) -> None:
        """Take the extra labels and custom metrics of a `--config` (None: none). Changing the extra
        label names starts the request series over, as a restart would (caller holds the lock)."""
        names = tuple(config.label_names) if config is not None else ()
        if names != self.extra_labels:
            self.requests.clear()
            self.extra_labels = names
            self._lim_extra = [self.limiter("llm_requests_total", n) for n in names]
        self.slo.configure(config.slo if config is not None else [])
        self._apply["request"] = self._apply_request_slo if self.slo.objectives else self.apply_request
        specs = config.all_metrics if config is not None else []
        if not specs:
            self.custom = None
        elif self.custom is None or list(self.custom.specs.values()) != specs or \
                self.custom.label_names[2:] != names:
            from llm_exporter.custom_metrics import CustomMetrics

            self.custom = CustomMetrics(specs, names, self.limiter)

    def limiter(self, metric: str, label: str) -> LabelLimiter:
        """The value limiter of one label (created on first use)."""
        key = (metric, label)
        lim = self._limiters.get(key)
        if lim is None:
            lim = self._limiters[key] = LabelLimiter(self.label_limit)
        return lim

    # -- updates (caller holds self.lock) ------------------------------------------------------

    def apply(self, rec: Any, now: float | None = None) -> None:
        """Update the metrics from one canonical record."""
        self._apply[rec["kind"]](rec, now)

    def apply_request(self, rec: Any, now: float | None = None) -> None:
        # Hot path: Hist.observe is written out inline (one call less per histogram), and label
        # values all admitted by their limiters before are not asked again (the limiters would
        # hand back the same values and count nothing; a limiter that forgets values must clear
        # `_admitted`).
        key: tuple[str, ...] = (rec["operation"], rec["provider"], rec["model"])
        if key not in self._admitted:
            key = self._limited(key)  # type: ignore[arg-type]
        if self.extra_labels:  # --config extra_labels: "" where the record has none
            ex = rec.get("extra_labels") or {}
            key = (*key, *(lim(ex.get(n) or "") for n, lim in zip(self.extra_labels, self._lim_extra, strict=True)))
        s = self.requests.get(key)
        if s is None:
            s = self.requests[key] = RequestSeries()
        outcome = rec["outcome"]
        oi = 0 if outcome == "success" else (1 if outcome == "error" else 2)
        s.requests[oi] += 1
        get = rec.get
        err = ""
        if oi == 1:
            err = self._lim_err(rec["error_type"] or "_OTHER")
            s.errors[err] = s.errors.get(err, 0) + 1
        sec = int(self._clock() if now is None else now)
        w = self._wslot
        if w[0] != sec:
            w = self._wslot = self.window.slot(sec)
        w[1 + oi] += 1
        d = get("duration_s")
        if d is not None:
            h = s.duration.get(err)
            if h is None:
                h = s.duration[err] = Hist(DURATION_BUCKETS, exemplars=True)
            i = bisect_left(DURATION_BUCKETS, d)
            h.counts[i] += 1
            h.sum += d
            rid = get("request_id")
            if rid is not None:
                h.exemplars[i] = (rid[:EXEMPLAR_ID_MAX], d, time.time())  # type: ignore[index]
            w[6][i] += 1
        v = get("queue_s")
        if v is not None:
            h = s.queue
            if h is None:
                h = s.queue = Hist(DURATION_BUCKETS)
            h.counts[bisect_left(DURATION_BUCKETS, v)] += 1
            h.sum += v
        v = get("inference_s")
        if v is not None:
            h = s.inference
            if h is None:
                h = s.inference = Hist(DURATION_BUCKETS)
            h.counts[bisect_left(DURATION_BUCKETS, v)] += 1
            h.sum += v
        tin = get("input_tokens")
        if tin is not None:
            h = s.tokens_in
            if h is None:
                h = s.tokens_in = Hist(TOKEN_BUCKETS)
            h.counts[bisect_left(TOKEN_BUCKETS, tin)] += 1
            h.sum += tin
            w[4] += tin
        tout = get("output_tokens")
        if tout is not None:
            h = s.tokens_out
            if h is None:
                h = s.tokens_out = Hist(TOKEN_BUCKETS)
            h.counts[bisect_left(TOKEN_BUCKETS, tout)] += 1
            h.sum += tout
            w[5] += tout
        fr = get("finish_reason")
        if fr:
            fr = self._lim_finish(fr)
            s.finish[fr] = s.finish.get(fr, 0) + 1
        if oi != 0:
            return
        ttft = get("ttft_s")
        if ttft is not None:
            if s.ttft is None:
                s.ttft = Hist(TTFT_BUCKETS, exemplars=True)
            s.ttft.observe(ttft, get("request_id"))
        tpot = get("tpot_s")
        if tpot is None and ttft is not None and d is not None and tout is not None and tout > 1 and d >= ttft:
            tpot = (d - ttft) / (tout - 1)
        if tpot is not None:
            if s.tpot is None:
                s.tpot = Hist(TPOT_BUCKETS)
            s.tpot.observe(tpot)

    def _apply_request_slo(self, rec: Any, now: float | None = None) -> None:
        self.apply_request(rec, now)
        self.slo.apply(rec)

    def _limited(self, raw: tuple[str, str, str]) -> tuple[str, str, str]:
        op, provider, model = raw
        key = (self._lim_op(op), provider, self._lim_model(model))
        if key == raw and len(self._admitted) < ADMITTED_CACHE:
            self._admitted.add(raw)
        return key

    def apply_custom(self, rec: Any, now: float | None = None) -> None:
        if self.custom is not None:
            self.custom.apply(rec)

    def apply_stats(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], self._lim_model(rec.get("model") or ""), self._lim_engine(rec.get("engine") or ""))
        g = self.stats.setdefault(key, {})
        for f in ("running", "waiting", "swapped", "kv_cache_usage", "prefix_cache_hit", "prompt_tps",
                  "generation_tps"):
            v = rec.get(f)
            if v is not None:
                g[f] = v
        # when this engine last logged its stats: a gauge above keeps its value after the server stops
        # logging (or the engine goes away), this says how old it is
        g["last_seen"] = self._clock() if now is None else now

    def apply_http(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], rec["method"], self._lim_path(rec["path"]), rec["code"])
        self.http[key] = self.http.get(key, 0) + 1

    def apply_log(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], rec["level"])
        self.logs[key] = self.logs.get(key, 0) + 1

    def apply_hint(self, rec: Any, now: float | None = None) -> None:
        key = rec["hint"]
        if key not in self.hints and key in HINTS:
            self.hints[key] = rec.get("provider") or ""
            log.warning(hint_text(key), extra={"fields": {"hint": key, "provider": self.hints[key]}})

    def register_source(self, source: str) -> None:
        """Create a source's self-metric series up front (at 0), so that threads counting into
        them later never change the dicts' size while a scrape iterates them."""
        with self.lock:
            for o in LINE_OUTCOMES:
                self.lines.setdefault((source, o), 0)
            self.bytes.setdefault(source, 0)

    def count_line(self, source: str, outcome: str, n: int = 1) -> None:
        key = (source, outcome)
        self.lines[key] = self.lines.get(key, 0) + n

    def count_bytes(self, source: str, n: int) -> None:
        self.bytes[source] = self.bytes.get(source, 0) + n

    # -- exposition ----------------------------------------------------------------------------

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
        common = (*COMMON, *self.extra_labels)
        dur = HistogramMetricFamily("gen_ai_server_request_duration_seconds",
                                    "Generative AI server request duration, end to end.",
                                    labels=(*common, "error_type"), unit="seconds")
        ttft = HistogramMetricFamily("gen_ai_server_time_to_first_token_seconds",
                                     "Time to generate the first token, successful requests.",
                                     labels=common, unit="seconds")
        tpot = HistogramMetricFamily("gen_ai_server_time_per_output_token_seconds",
                                     "Time per output token after the first, successful requests.",
                                     labels=common, unit="seconds")
        tok = HistogramMetricFamily("gen_ai_client_token_usage",
                                    "Number of input and output tokens per request.",
                                    labels=(*common, "gen_ai_token_type"))
        queue = HistogramMetricFamily("llm_request_queue_duration_seconds",
                                      "Time a request waited before inference started.",
                                      labels=common, unit="seconds")
        inf = HistogramMetricFamily("llm_request_inference_duration_seconds",
                                    "Time a request spent in inference (prefill and decode).",
                                    labels=common, unit="seconds")
        req = CounterMetricFamily("llm_requests", "Finished requests by outcome.",
                                  labels=(*common, "outcome"))
        errs = CounterMetricFamily("llm_request_errors", "Failed requests by error type.",
                                   labels=(*common, "error_type"))
        fin = CounterMetricFamily("llm_request_finish_reasons", "Finished requests by finish reason.",
                                  labels=(*common, "gen_ai_response_finish_reason"))
        for key, s in self.requests.items():
            labels = list(key)
            for oi, n in enumerate(s.requests):
                if n:
                    req.add_metric([*labels, OUTCOMES[oi]], n)
            for et, n in s.errors.items():
                errs.add_metric([*labels, et], n)
            for fr, n in s.finish.items():
                fin.add_metric([*labels, fr], n)
            for et, dh in s.duration.items():
                dur.add_metric([*labels, et], dh.cumulative(with_exemplars), dh.sum)
            for fam, h in ((ttft, s.ttft), (tpot, s.tpot), (queue, s.queue), (inf, s.inference)):
                if h is not None:
                    fam.add_metric(labels, h.cumulative(with_exemplars), h.sum)
            if s.tokens_in is not None:
                tok.add_metric([*labels, "input"], s.tokens_in.cumulative(False), s.tokens_in.sum)
            if s.tokens_out is not None:
                tok.add_metric([*labels, "output"], s.tokens_out.cumulative(False), s.tokens_out.sum)
        yield from (dur, ttft, tpot, tok, queue, inf, req, errs, fin)

        gauges = {
            "running": GaugeMetricFamily("llm_requests_running", "Requests being processed (server stats).",
                                         labels=STATS_LABELS),
            "waiting": GaugeMetricFamily("llm_requests_waiting", "Requests waiting in the queue (server stats).",
                                         labels=STATS_LABELS),
            "swapped": GaugeMetricFamily("llm_requests_swapped", "Requests swapped out to CPU (server stats).",
                                         labels=STATS_LABELS),
            "kv_cache_usage": GaugeMetricFamily("llm_kv_cache_usage_ratio", "KV cache usage, 0 to 1.",
                                                labels=STATS_LABELS, unit="ratio"),
            "prefix_cache_hit": GaugeMetricFamily("llm_prefix_cache_hit_ratio", "Prefix cache hit rate, 0 to 1.",
                                                  labels=STATS_LABELS, unit="ratio"),
            "prompt_tps": GaugeMetricFamily("llm_prompt_throughput_tokens_per_second",
                                            "Prompt (prefill) throughput averaged over the server's interval.",
                                            labels=STATS_LABELS),
            "generation_tps": GaugeMetricFamily("llm_generation_throughput_tokens_per_second",
                                                "Generation throughput averaged over the server's interval.",
                                                labels=STATS_LABELS),
            "last_seen": GaugeMetricFamily("llm_server_stats_last_seen_timestamp_seconds",
                                           "When the server last logged a stats line for this engine (Unix time); "
                                           "the stats gauges are that old.", labels=STATS_LABELS),
        }
        for key, g in self.stats.items():
            for f, v in g.items():
                gauges[f].add_metric(list(key), v)
        yield from gauges.values()

        http = CounterMetricFamily("llm_http_requests", "HTTP requests seen in access logs.",
                                   labels=("gen_ai_provider_name", "method", "path", "code"))
        for hk, n in self.http.items():
            http.add_metric(list(hk), n)
        yield http
        logs = CounterMetricFamily("llm_log_messages", "The server's own log records by level.",
                                   labels=("gen_ai_provider_name", "level"))
        for lk, n in self.logs.items():
            logs.add_metric(list(lk), n)
        yield logs
        yield from self.startup.families()
        yield from self.slo.families()

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
        for (metric, label), lim in sorted(self._limiters.items()):
            ovf.add_metric([metric, label], lim.overflow)
        yield ovf
        if self.custom is not None:
            yield from self.custom.families()
        info = GaugeMetricFamily("llm_exporter_build_info", "Build information; always 1.",
                                 labels=("version", "revision", "semconv_version"))
        info.add_metric([__version__, _revision(), SEMCONV_VERSION], 1)
        yield info


_REVISION: str | None = None


def _revision() -> str:
    """The git revision baked in at build time (LLM_EXPORTER_REVISION), else empty."""
    global _REVISION
    if _REVISION is None:
        import os

        _REVISION = os.environ.get("LLM_EXPORTER_REVISION", "")
    return _REVISION
