"""Fixtures shared by every test module."""

from __future__ import annotations

import os
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


#: under `make mutate` (mutmut sets MUTANT_UNDER_TEST) each property test draws at most this many
#: examples: a surviving mutant runs every test that covers its function, and drawing 300 nested JSON
#: examples takes a minute; the plain suite, and mutmut's coverage run, keep each test's own count
MUTATION_MAX_EXAMPLES = 50


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: tests/unit (no process started), tests/process (a real daemon),
    tests/deploy (image, chart, Prometheus, dashboards). `make test-fast` runs the unit tests alone."""
    mutating = os.environ.get("MUTANT_UNDER_TEST", "stats") != "stats"  # the coverage run keeps all
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind in _KINDS:
            item.add_marker(getattr(pytest.mark, kind))
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)  # what @settings/@given left
        if mutating and own is not None and own.max_examples > MUTATION_MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(own, max_examples=MUTATION_MAX_EXAMPLES)


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
