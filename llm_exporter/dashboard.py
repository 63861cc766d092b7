"""The page at `/` and its data, `GET /api/dashboard`: the last 15 minutes at a glance.

Requests by outcome, latency quantiles and tokens come from `LLMMetrics.window` (per-second
slots, 900 s), cut into 10-second bins. Error types and GPU readings are sampled every bin, on a
worker thread, from the metrics and from the `hw_gpu_*` samples of the GPU source (the GPU
collector; by default the whole registry), so the page needs nothing else. The HTML
(`exporter/static/index.html`) is self-contained: no external assets, hand-written SVG charts,
so it works on an air-gapped cluster; it also carries a server-rendered summary for clients
without JavaScript.
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

from llm_exporter import __version__
from llm_exporter.metrics import DURATION_BUCKETS, LLMMetrics, quantile

SPAN = 900
BIN = 10
GPU_SAMPLES = {"hw_gpu_memory_usage_bytes": "memory_used_bytes",
               "hw_gpu_memory_limit_bytes": "memory_limit_bytes",
               "hw_gpu_utilization_ratio": "utilization_ratio"}


class _Acc:
    """Sums of window slots over a span."""

    __slots__ = ("ab", "buckets", "err", "ok", "tin", "tout")

    def __init__(self) -> None:
        self.ok = self.err = self.ab = self.tin = self.tout = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)

    def add(self, ok: int, err: int, ab: int, tin: int, tout: int, buckets: list[int]) -> None:
        self.ok += ok
        self.err += err
        self.ab += ab
        self.tin += tin
        self.tout += tout
        for i, c in enumerate(buckets):
            self.buckets[i] += c

    def q(self, q: float) -> float | None:
        return quantile(DURATION_BUCKETS, self.buckets, q)


class Dashboard:
    """Samples what the window does not keep (error types, GPUs) and serves the page's data."""

    def __init__(self, registry: CollectorRegistry, metrics: LLMMetrics,
                 clock: Callable[[], float] = time.time, gpu_source: Any = None) -> None:
        self.registry = registry
        # anything with collect(): the GPU collector alone, so a sample never builds the LLM families
        self.gpu_source = gpu_source if gpu_source is not None else registry
        self.metrics = metrics
        self.clock = clock
        self.started = clock()
        n = SPAN // BIN + 2
        self._errors: deque[tuple[float, dict[str, int]]] = deque(maxlen=n)
        self._gpus: deque[tuple[float, dict[str, dict[str, Any]]]] = deque(maxlen=n)

    def errors_now(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.metrics.lock:
            for s in self.metrics.requests.values():
                for et, c in s.errors.items():
                    out[et] = out.get(et, 0) + c
        return out

    def gpus_now(self) -> dict[str, dict[str, Any]]:
        """Current GPU readings by GPU, from the registry's hw_gpu_* samples (empty: no GPU)."""
        gpus: dict[str, dict[str, Any]] = {}
        for fam in self.gpu_source.collect():
            if not fam.name.startswith("hw_gpu"):
                continue
            for s in fam.samples:
                field = GPU_SAMPLES.get(s.name)
                if field is None:
                    continue
                gid = s.labels.get("hw_id") or s.labels.get("gpu", "")
                g = gpus.setdefault(gid, {"hw_id": s.labels.get("hw_id", ""), "gpu": s.labels.get("gpu", "")})
                g[field] = s.value
        return gpus

    def sample(self) -> None:
        now = self.clock()
        self._errors.append((now, self.errors_now()))
        self._gpus.append((now, self.gpus_now()))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(BIN - (self.clock() % BIN))
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.sample)
            except Exception:  # a collector's bug must not end the sampling
                import logging

                logging.getLogger("llm_exporter.dashboard").exception("dashboard sample failed")

    async def ctx(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: take the baseline sample, then sample every BIN seconds."""
        self.sample()
        task = asyncio.create_task(self._loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def data(self) -> dict[str, Any]:
        now = self.clock()
        sec = int(now)
        with self.metrics.lock:
            slots = [(s[0], s[1], s[2], s[3], s[4], s[5], list(s[6])) for s in self.metrics.window.series(now)]
        first = sec - SPAN + 1
        nb = SPAN // BIN
        bins = [_Acc() for _ in range(nb)]
        tot = _Acc()
        for t, ok, err, ab, tin, tout, buckets in slots:
            if t < first:
                continue
            for acc in (bins[min((t - first) // BIN, nb - 1)], tot):
                acc.add(ok, err, ab, tin, tout, buckets)
        points: list[dict[str, float | None]] = []
        for i, b in enumerate(bins):
            t = first + i * BIN + BIN - 1
            up = t >= self.started  # no rates before this process was there to see them
            points.append({"t": t, "success": b.ok / BIN if up else None, "error": b.err / BIN if up else None,
                           "aborted": b.ab / BIN if up else None,
                           "input_tokens": b.tin / BIN if up else None,
                           "output_tokens": b.tout / BIN if up else None,
                           "p50": b.q(0.5), "p95": b.q(0.95)})
        errors_now = self.errors_now()
        baseline = next((e for t, e in list(self._errors) if t >= now - SPAN), {})
        err_totals = {k: v - baseline.get(k, 0) for k, v in errors_now.items() if v - baseline.get(k, 0) > 0}
        err_points = []
        prev: dict[str, int] | None = None
        errors = list(self._errors)  # one copy: the sampler thread appends meanwhile
        for t, e in [*errors, (now, errors_now)]:
            if prev is not None and t >= now - SPAN:
                err_points.append({"t": t, "counts": {k: v - prev.get(k, 0) for k, v in e.items()
                                                      if v - prev.get(k, 0) > 0}})
            prev = e
        gpus_now = self.gpus_now()
        history = {gid: [[t, g[gid].get("memory_used_bytes"), g[gid].get("utilization_ratio")]
                         for t, g in list(self._gpus) if gid in g and t >= now - SPAN]
                   for gid in gpus_now}
        return {
            "version": __version__, "now": now, "uptime_seconds": now - self.started,
            "span_seconds": SPAN, "bin_seconds": BIN, "points": points,
            "totals": {"success": tot.ok, "error": tot.err, "aborted": tot.ab,
                       "input_tokens": tot.tin, "output_tokens": tot.tout,
                       "p50": tot.q(0.5), "p95": tot.q(0.95)},
            "errors": {"totals": err_totals, "points": err_points},
            "gpus": [{**g, "history": history[gid]} for gid, g in sorted(gpus_now.items())],
        }


def _fmt(v: float | None, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v * scale:,.{digits}f}{unit}"


def page(summary: dict[str, Any], uptime: float) -> str:
    """The HTML page with the server-rendered one-minute summary filled in."""
    rows = [
        ("Requests/s", _fmt(summary["requests_per_second"])),
        ("Error ratio", _fmt(summary["error_ratio"], " %", 100, 1)),
        ("p50 latency", _fmt(summary["p50_seconds"], " s", 1, 3)),
        ("p95 latency", _fmt(summary["p95_seconds"], " s", 1, 3)),
        ("Input tokens/s", _fmt(summary["input_tokens_per_second"], "", 1, 1)),
        ("Output tokens/s", _fmt(summary["output_tokens_per_second"], "", 1, 1)),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    tpl = resources.files("llm_exporter").joinpath("static/index.html").read_text(encoding="utf-8")
    return (tpl.replace("{{VERSION}}", html.escape(__version__))
               .replace("{{UPTIME}}", f"{uptime:,.0f}")
               .replace("<!--SUMMARY-->", table))


def setup(app: web.Application, registry: CollectorRegistry, metrics: LLMMetrics,
          started: float, gpu_source: Any = None) -> Dashboard:
    """Add `/` and `/api/dashboard` to the app, with the sampler tied to its lifetime."""
    d = Dashboard(registry, metrics, gpu_source=gpu_source)

    async def handle_index(request: web.Request) -> web.Response:
        return web.Response(text=page(metrics.summary(), time.time() - started), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def handle_data(request: web.Request) -> web.Response:
        return web.json_response(d.data(), headers={"Cache-Control": "no-store"})

    app.add_routes([web.get("/", handle_index), web.get("/api/dashboard", handle_data)])
    app.cleanup_ctx.append(d.ctx)
    return d
