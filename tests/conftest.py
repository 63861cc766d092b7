"""Fixtures shared by every test module."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from exporter.metrics import LLMMetrics
from exporter.pipeline import Pipeline


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
