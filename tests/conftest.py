"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry

from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline

_KINDS = ("unit", "process", "deploy")

# No timed assertions: on a loaded machine one example may take longer than hypothesis' 200 ms, and
# drawing the examples may take longer than its too_slow health check allows (both are wall-clock).
settings.register_profile("untimed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("untimed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit (no process started), tests/process (a real daemon),
    tests/deploy (image, chart, Prometheus, dashboards). `make test-fast` runs the unit tests alone."""
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind in _KINDS:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture
def metrics() -> LLMMetrics:
    return LLMMetrics(label_limit=100, clock=lambda: 1_000_000.0)


@pytest.fixture
def pipeline(metrics: LLMMetrics) -> Pipeline:
    return Pipeline(metrics, clock=lambda: 1_000_000.0)


@pytest.fixture
def registry(metrics: LLMMetrics) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(metrics)  # type: ignore[arg-type]
    return r
