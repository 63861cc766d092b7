"""The page at `/` and its data, `GET /api/dashboard`: are my lines understood, and what do they say.

First what a new user asks: lines per source and outcome since start, the unparsed share, the
last few rejected lines (their text, redacted, only with `--debug-endpoints`) and any "why no
metric" hint the pipeline has. Then, per model since start, requests, latency and tokens; and
over a window that fits the process's age (1 to 15 minutes, see `SPANS`), requests by outcome,
latency quantiles and tokens from the metrics' `Window` (per-second slots), cut into bins. Error
types, the servers' KV cache and queue stats and GPU readings are sampled every `SAMPLE` seconds,
on a worker thread, from the metrics and from the `hw_gpu_*` samples of the GPU source (the GPU
collector; by default the whole registry), so the page needs nothing else. The HTML
(`llm_exporter/static/index.html`) is self-contained: no external assets, hand-written SVG
charts drawn at the size they are shown, so it works on an air-gapped cluster; it also carries a
server-rendered summary for clients without JavaScript.
"""
from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from llm_exporter import __version__, debug
from llm_exporter.metrics import LINE_OUTCOMES, LLMMetrics
from llm_exporter.metrics.hist import DURATION_BUCKETS, quantile
from llm_exporter.metrics.window import Slot

SPAN = 900
#: the page's window grows with the process's age: the smallest of these that covers it
SPANS = ((60, 1), (120, 2), (300, 5), (600, 10), (900, 15))  # (seconds, bin seconds)
SAMPLE = 5  # seconds between samples of what the window does not keep
REJECTS_SHOWN = 5
GPU_SAMPLES = {"hw_gpu_memory_usage_bytes": "memory_used_bytes",
               "hw_gpu_memory_limit_bytes": "memory_limit_bytes",
               "hw_gpu_utilization_ratio": "utilization_ratio"}
STATS_SHOWN = ("running", "waiting", "kv_cache_usage")


def window(uptime: float) -> tuple[int, int]:
    """(span, bin) seconds of the page's charts for a process this old."""
    for span, step in SPANS:
        if uptime <= span:
            return span, step
    return SPANS[-1]


class _Acc:
    """Sums of window slots over a span."""

    __slots__ = ("ab", "buckets", "err", "ok", "tin", "tout")

    def __init__(self) -> None:
        self.ok = self.err = self.ab = self.tin = self.tout = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)

    def add(self, s: Slot) -> None:
        ok, err, ab = s.outcomes
        self.ok += ok
        self.err += err
        self.ab += ab
        self.tin += s.tokens_in
        self.tout += s.tokens_out
        for i, c in enumerate(s.duration):
            self.buckets[i] += c

    def q(self, q: float) -> float | None:
        return quantile(DURATION_BUCKETS, self.buckets, q)


class Dashboard:
    """Samples what the window does not keep (error types, server stats, GPUs) and serves the page's data."""

    def __init__(self, registry: CollectorRegistry, metrics: LLMMetrics,
                 clock: Callable[[], float] = time.time, gpu_source: Any = None,
                 pipeline: Any = None, show_reject_lines: bool = False) -> None:
        self.registry = registry
        # anything with collect(): the GPU collector alone, so a sample never builds the LLM families
        self.gpu_source = gpu_source if gpu_source is not None else registry
        self.metrics = metrics
        self.pipeline = pipeline  # its kept rejects (and "why no metric" hints, when it has them)
        self.show_reject_lines = show_reject_lines  # the lines' text only with --debug-endpoints
        self.clock = clock
        self.started = clock()
        n = SPAN // SAMPLE + 2
        self._errors: deque[tuple[float, dict[str, int]]] = deque(maxlen=n)
        self._gpus: deque[tuple[float, dict[str, dict[str, Any]]]] = deque(maxlen=n)
        self._stats: deque[tuple[float, dict[tuple[str, str, str], dict[str, float]]]] = deque(maxlen=n)
        #: (when the reading was taken, joules): this server's GPUs' energy counters summed
        self._energy: deque[tuple[float, float]] = deque(maxlen=n)

    def errors_now(self) -> dict[str, int]:
        with self.metrics.lock:
            return self.metrics.requests.error_counts()

    def stats_now(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """The servers' periodic stats now, by (provider, model, engine)."""
        with self.metrics.lock:
            return {k: dict(v) for k, v in self.metrics.engine.stats.items()}

    def gpus_now(self) -> dict[str, dict[str, Any]]:
        """Current GPU readings by GPU, from the registry's hw_gpu_* samples (empty: no GPU)."""
        return self._read_gpus()[0]

    def _read_gpus(self) -> tuple[dict[str, dict[str, Any]], tuple[float, float] | None]:
        """GPU readings by GPU, and (when taken, joules) of `hw_energy_joules_total` summed over
        the GPUs that export it (this server's: see the GPU collector), None without any."""
        gpus: dict[str, dict[str, Any]] = {}
        joules: float | None = None
        age = 0.0
        for fam in self.gpu_source.collect():
            if fam.name.startswith("hw_energy"):
                for s in fam.samples:
                    if s.name == "hw_energy_joules_total":
                        joules = (joules or 0.0) + s.value
                continue
            if fam.name == "llm_exporter_gpu_snapshot_age_seconds" and fam.samples:
                age = fam.samples[0].value
                continue
            if not fam.name.startswith("hw_gpu"):
                continue
            for s in fam.samples:
                field = GPU_SAMPLES.get(s.name)
                if field is None:
                    continue
                gid = s.labels.get("hw_id") or s.labels.get("gpu", "")
                g = gpus.setdefault(gid, {"hw_id": s.labels.get("hw_id", ""), "gpu": s.labels.get("gpu", "")})
                g[field] = s.value
        return gpus, (None if joules is None else (self.clock() - age, joules))

    def sample(self) -> None:
        now = self.clock()
        self._errors.append((now, self.errors_now()))
        self._stats.append((now, self.stats_now()))
        gpus, energy = self._read_gpus()
        self._gpus.append((now, gpus))
        if energy is not None and (not self._energy or energy[0] > self._energy[-1][0]):
            self._energy.append(energy)

    def energy(self, span: float = SPAN) -> dict[str, float | None]:
        """This server's GPU energy over (at most) the last `span` seconds and the output tokens
        counted in the same time: joules, average watts, joules per output token (None: not known)."""
        _, now_e = self._read_gpus()
        first = next(((t, e) for t, e in list(self._energy) if now_e is not None and t >= now_e[0] - span), None)
        out: dict[str, float | None] = {"since": None, "until": None, "joules": None, "watts": None,
                                        "output_tokens": None, "joules_per_output_token": None}
        if now_e is None or first is None or now_e[0] <= first[0]:
            return out
        t0, t1 = first[0], now_e[0]
        with self.metrics.lock:
            tokens = sum(s.tokens_out for s in self.metrics.window.series(t1) if t0 < s.second <= t1)
        joules = max(0.0, now_e[1] - first[1])
        out.update(since=t0, until=t1, joules=joules, watts=joules / (t1 - t0), output_tokens=tokens,
                   joules_per_output_token=joules / tokens if tokens else None)
        return out

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE - (self.clock() % SAMPLE))
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.sample)
            except Exception:  # a collector's bug must not end the sampling
                import logging

                logging.getLogger("llm_exporter.dashboard").exception("dashboard sample failed")

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: take the baseline sample, then sample every SAMPLE seconds."""
        self.sample()
        task = asyncio.create_task(self._loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def lines(self) -> dict[str, dict[str, int]]:
        """Lines read since start, by source and outcome (`llm_exporter_lines_total`)."""
        with self.metrics.lock:
            items = list(self.metrics.internal.lines.items())
        out: dict[str, dict[str, int]] = {}
        for (src, outcome), n in sorted(items):
            out.setdefault(src, dict.fromkeys(LINE_OUTCOMES, 0))[outcome] = n
        return out

    def models(self) -> list[dict[str, Any]]:
        """Requests, latency quantiles and tokens since start, by provider and model."""
        acc: dict[tuple[str, str], dict[str, Any]] = {}
        nb = len(DURATION_BUCKETS) + 1
        with self.metrics.lock:
            for key, s in self.metrics.requests.series.items():
                m = acc.setdefault((key[1], key[2]), {"requests": [0, 0, 0], "buckets": [0] * nb,
                                                      "queue": [0] * nb, "queue_n": 0,
                                                      "input_tokens": 0, "output_tokens": 0})
                for i, n in enumerate(s.requests):
                    m["requests"][i] += n
                for h in s.duration.values():
                    for i, c in enumerate(h.counts):
                        m["buckets"][i] += c
                if s.queue is not None:
                    m["queue_n"] += 1
                    for i, c in enumerate(s.queue.counts):
                        m["queue"][i] += c
                if s.tokens_in is not None:
                    m["input_tokens"] += s.tokens_in.sum
                if s.tokens_out is not None:
                    m["output_tokens"] += s.tokens_out.sum
        out = []
        for (provider, model), m in sorted(acc.items()):
            ok, err, ab = m["requests"]
            out.append({"provider": provider, "model": model, "success": ok, "error": err, "aborted": ab,
                        "p50": quantile(DURATION_BUCKETS, m["buckets"], 0.5),
                        "p95": quantile(DURATION_BUCKETS, m["buckets"], 0.95),
                        "queue_p50": quantile(DURATION_BUCKETS, m["queue"], 0.5) if m["queue_n"] else None,
                        "input_tokens": m["input_tokens"], "output_tokens": m["output_tokens"]})
        return out

    def rejects(self) -> list[dict[str, Any]]:
        """The last few rejected lines, newest first; their (redacted) text only when shown."""
        if self.pipeline is None:
            return []
        kept = list(self.pipeline.rejects)[-REJECTS_SHOWN:]
        out = []
        for r in reversed(kept):
            item = debug.show(r)
            if not self.show_reject_lines:
                del item["line"]
            out.append(item)
        return out

    def hints(self) -> list[str]:
        """What the pipeline has to say about missing metrics ("why no metric"), when it says anything."""
        fn = getattr(self.pipeline, "hints", None)
        if not callable(fn):
            return []
        try:
            return [str(h) for h in fn()]
        except Exception:  # a hint must never break the page
            return []

    def data(self) -> dict[str, Any]:
        now = self.clock()
        sec = int(now)
        span, step = window(now - self.started)
        with self.metrics.lock:
            slots = self.metrics.window.series(now)
        first = sec - span + 1
        nb = span // step
        bins = [_Acc() for _ in range(nb)]
        tot = _Acc()
        for s in slots:
            if s.second < first:
                continue
            for acc in (bins[min((s.second - first) // step, nb - 1)], tot):
                acc.add(s)
        points: list[dict[str, float | None]] = []
        for i, b in enumerate(bins):
            bin_end = first + i * step + step - 1
            up = bin_end >= int(self.started)  # no rates before this process was there to see them
            points.append({"t": bin_end, "success": b.ok / step if up else None, "error": b.err / step if up else None,
                           "aborted": b.ab / step if up else None,
                           "input_tokens": b.tin / step if up else None,
                           "output_tokens": b.tout / step if up else None,
                           "p50": b.q(0.5), "p95": b.q(0.95)})
        errors_now = self.errors_now()
        errors = list(self._errors)  # one copy: the sampler thread appends meanwhile
        baseline = next((e for t, e in errors if t >= now - span), {})
        err_totals = {k: v - baseline.get(k, 0) for k, v in errors_now.items() if v - baseline.get(k, 0) > 0}
        err_points = []
        prev: dict[str, int] | None = None
        for t, e in [*errors, (now, errors_now)]:
            if prev is not None and t >= now - span:
                err_points.append({"t": t, "counts": {k: v - prev.get(k, 0) for k, v in e.items()
                                                      if v - prev.get(k, 0) > 0}})
            prev = e
        gpus_now = self.gpus_now()
        gpu_history = {gid: [[t, g[gid].get("memory_used_bytes"), g[gid].get("utilization_ratio")]
                             for t, g in list(self._gpus) if gid in g and t >= now - span]
                       for gid in gpus_now}
        stats_now = self.stats_now()
        stats_samples = [*list(self._stats), (now, stats_now)]
        stats = [{"provider": k[0], "model": k[1], "engine": k[2], **{f: v.get(f) for f in STATS_SHOWN},
                  "history": [[t, *(st[k].get(f) for f in STATS_SHOWN)] for t, st in stats_samples
                              if k in st and t >= now - span]}
                 for k, v in sorted(stats_now.items()) if any(f in v for f in STATS_SHOWN)]
        lines = self.lines()
        all_lines = sum(sum(v.values()) for v in lines.values())
        unparsed = sum(v["unparsed"] for v in lines.values())
        return {
            "version": __version__, "now": now, "uptime_seconds": now - self.started,
            "span_seconds": span, "bin_seconds": step, "points": points,
            "totals": {"success": tot.ok, "error": tot.err, "aborted": tot.ab,
                       "input_tokens": tot.tin, "output_tokens": tot.tout,
                       "p50": tot.q(0.5), "p95": tot.q(0.95)},
            "lines": lines, "lines_total": all_lines,
            "unparsed_share": unparsed / all_lines if all_lines else None,
            "rejects": self.rejects(), "reject_lines_shown": self.show_reject_lines,
            "hints": self.hints(),
            "models": self.models(),
            "stats": stats,
            "errors": {"totals": err_totals, "points": err_points},
            "gpus": [{**g, "history": gpu_history[gid]} for gid, g in sorted(gpus_now.items())],
            "energy": self.energy(),
        }


def _fmt(v: float | None, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v * scale:,.{digits}f}{unit}"


def page(summary: dict[str, Any], uptime: float, energy: dict[str, Any] | None = None) -> str:
    """The HTML page with the server-rendered one-minute summary filled in (and the energy per
    output token of the last 15 minutes, when this server's GPUs are read)."""
    rows = [
        ("Requests/s", _fmt(summary["requests_per_second"])),
        ("Error ratio", _fmt(summary["error_ratio"], " %", 100, 1)),
        ("p50 latency", _fmt(summary["p50_seconds"], " s", 1, 3)),
        ("p95 latency", _fmt(summary["p95_seconds"], " s", 1, 3)),
        ("Input tokens/s", _fmt(summary["input_tokens_per_second"], "", 1, 1)),
        ("Output tokens/s", _fmt(summary["output_tokens_per_second"], "", 1, 1)),
    ]
    if energy is not None and energy.get("joules") is not None:
        rows.append(("GPU energy per output token (15 min)", _fmt(energy.get("joules_per_output_token"), " J", 1, 3)))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    tpl = resources.files("llm_exporter").joinpath("static/index.html").read_text(encoding="utf-8")
    return (tpl.replace("{{VERSION}}", html.escape(__version__))
               .replace("{{UPTIME}}", f"{uptime:,.0f}")
               .replace("<!--SUMMARY-->", table))


def setup(app: web.Application, registry: CollectorRegistry, metrics: LLMMetrics,
          started: float, gpu_source: Any = None, pipeline: Any = None,
          show_reject_lines: bool = False) -> Dashboard:
    """Add `/` and `/api/dashboard` to the app, with the sampler tied to its lifetime."""
    d = Dashboard(registry, metrics, gpu_source=gpu_source, pipeline=pipeline,
                  show_reject_lines=show_reject_lines)

    async def handle_index(request: web.Request) -> web.Response:
        energy = await asyncio.get_running_loop().run_in_executor(None, d.energy)
        return web.Response(text=page(metrics.summary(), time.time() - started, energy), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def handle_data(request: web.Request) -> web.Response:
        return web.json_response(d.data(), headers={"Cache-Control": "no-store"})

    app.add_routes([web.get("/", handle_index), web.get("/api/dashboard", handle_data)])
    app.cleanup_ctx.append(d.ctx)
    return d
