"""HTTP: /metrics, /healthz, /readyz and the landing page at /.

`/metrics` negotiates like prometheus-client (OpenMetrics with exemplars when the Accept header
asks for it, else text format 0.0.4) and gzips when accepted. The exposition is built on a worker
thread from the collectors' snapshots, so a scrape never waits on NVML or on a source, and a
large exposition never holds up the event loop (/healthz, /ingest).
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from llm_exporter import __version__, dashboard
from llm_exporter.exposition import encoder_for
from llm_exporter.metrics import LLMMetrics


def make_app(registry: CollectorRegistry, metrics: LLMMetrics, ready: Callable[[], bool],
             extra_routes: list[web.RouteDef] | None = None, gpu_source: Any = None,
             pipeline: Any = None, show_reject_lines: bool = False) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    started = time.time()
    # scrapes render on threads of their own: the default executor also holds /ingest pushes
    # waiting for queue room, and those must never delay a scrape
    render_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scrape")

    async def close_pool(app: web.Application) -> None:
        render_pool.shutdown(wait=False)

    app.on_cleanup.append(close_pool)

    def render(encoder: Callable[[CollectorRegistry], bytes], gz: bool) -> bytes:
        body = encoder(registry)
        # level 1: half the CPU of level 5 on a 1.7 MB exposition, 7 % more bytes (50 kB instead of 47)
        return gzip.compress(body, compresslevel=1) if gz else body

    async def handle_metrics(request: web.Request) -> web.Response:
        # Encoding thousands of series takes tens of milliseconds: do it on a worker thread so
        # /healthz, /readyz and /ingest keep answering meanwhile.
        encoder, content_type = encoder_for(request.headers.get("Accept", ""))
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        body = await asyncio.get_running_loop().run_in_executor(render_pool, render, encoder, gz)
        headers = {"Content-Type": content_type}
        if gz:
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

    app.add_routes([
        web.get("/metrics", handle_metrics),
        web.get("/healthz", handle_healthz),
        web.get("/readyz", handle_readyz),
        web.get("/api/summary", handle_summary),
    ])
    dashboard.setup(app, registry, metrics, started, gpu_source, pipeline=pipeline,  # `/` and /api/dashboard
                    show_reject_lines=show_reject_lines)
    if extra_routes:
        app.add_routes(extra_routes)
    return app
