"""HTTP: /metrics, /healthz, /readyz and the landing page at /.

`/metrics` negotiates like prometheus-client (OpenMetrics with exemplars when the Accept header
asks for it, else text format 0.0.4) and gzips when accepted. The exposition is built on the
event loop from the collectors' snapshots, so a scrape never waits on NVML or on a source.
"""

from __future__ import annotations

import gzip
import html
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.metrics import LLMMetrics


def make_app(registry: CollectorRegistry, metrics: LLMMetrics, ready: Callable[[], bool],
             extra_routes: list[web.RouteDef] | None = None) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    started = time.time()

    async def handle_metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        headers = {"Content-Type": content_type}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: a configured source is not attached yet\n")

    async def handle_summary(request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "uptime_seconds": time.time() - started,
                                  "last_minute": metrics.summary()})

    async def handle_index(request: web.Request) -> web.Response:
        return web.Response(text=landing_page(metrics.summary(), time.time() - started),
                            content_type="text/html")

    app.add_routes([
        web.get("/metrics", handle_metrics),
        web.get("/healthz", handle_healthz),
        web.get("/readyz", handle_readyz),
        web.get("/api/summary", handle_summary),
        web.get("/", handle_index),
    ])
    if extra_routes:
        app.add_routes(extra_routes)
    return app


def _fmt(v: float | None, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v * scale:,.{digits}f}{unit}"


def landing_page(summary: dict[str, Any], uptime: float) -> str:
    rows = [
        ("Requests/s", _fmt(summary["requests_per_second"])),
        ("Error ratio", _fmt(summary["error_ratio"], " %", 100, 1)),
        ("p50 latency", _fmt(summary["p50_seconds"], " s", 1, 3)),
        ("p95 latency", _fmt(summary["p95_seconds"], " s", 1, 3)),
        ("Input tokens/s", _fmt(summary["input_tokens_per_second"], "", 1, 1)),
        ("Output tokens/s", _fmt(summary["output_tokens_per_second"], "", 1, 1)),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td id='{html.escape(k)}'>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>llm-exporter {__version__}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
th,td{{padding:.3em 1em;border-bottom:1px solid #ddd;text-align:left}}td{{font-variant-numeric:tabular-nums}}</style>
</head><body>
<h1>llm-exporter <small>{__version__}</small></h1>
<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a>
 · <a href="/api/summary">/api/summary</a></p>
<h2>Last minute</h2><table>{body}</table>
<p>Up {uptime:,.0f} s.</p>
</body></html>
"""
