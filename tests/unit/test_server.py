"""The HTTP server's own behaviour, on aiohttp's test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from llm_exporter.metrics import LLMMetrics
from llm_exporter.server import make_app


class _ThreadProbe:
    """A collector that records which thread collected it."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.current_thread())
        g = GaugeMetricFamily("probe_value", "A probe.")
        g.add_metric([], 1)
        yield g


async def test_metrics_are_encoded_off_the_event_loop() -> None:
    """A scrape's exposition is built on a worker thread, never on the event loop's own thread."""
    registry = CollectorRegistry(auto_describe=False)
    probe = _ThreadProbe()
    registry.register(probe)  # type: ignore[arg-type]
    probe.threads.clear()  # registering collects once, to learn the names
    app = make_app(registry, LLMMetrics(), lambda: True, gpu_source=CollectorRegistry(auto_describe=False))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert r.status == 200 and "probe_value 1.0" in await r.text()
        r = await client.get("/metrics")
        assert "probe_value 1.0" in await r.text()
    assert len(probe.threads) == 2  # the two scrapes; the page's sampler reads only its GPU source
    assert all(t.name.startswith("scrape") for t in probe.threads)  # not the pool /ingest may fill
