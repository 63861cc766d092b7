"""The request hot path's shortcuts change nothing: folded values are still counted every time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from llm_exporter.metrics import LLMMetrics


def _rec(model: str, op: str = "chat") -> dict[str, object]:
    return {"kind": "request", "provider": "app", "operation": op, "model": model, "outcome": "success",
            "error_type": "", "duration_s": 0.5, "request_id": "r1"}


def test_overflowed_model_values_are_counted_on_every_observation() -> None:
    """With room for two models, each line of a third and fourth model counts one overflow."""
    m = LLMMetrics(label_limit=2, clock=lambda: 1000.0)
    models = ["a", "b", "c", "a", "c", "d", "b", "c", "a"]
    with m.lock:
        for x in models:
            m.apply(_rec(x), 1000.0)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    folded = sum(1 for x in models if x not in ("a", "b"))
    overflow = reg.get_sample_value("llm_exporter_label_overflow_total",
                                    {"metric": "llm_requests_total", "label": "gen_ai_request_model"})
    assert overflow == folded
    for model, want in (("a", models.count("a")), ("b", models.count("b")), ("_OTHER", folded)):
        got = reg.get_sample_value("llm_requests_total", {"gen_ai_operation_name": "chat", "llm_adapter": "",
                                                          "gen_ai_provider_name": "app",
                                                          "gen_ai_request_model": model, "outcome": "success"})
        assert got == want, model


def test_long_values_are_cut_on_every_observation() -> None:
    """A model name over the length cap lands in the series of its cut form each time."""
    m = LLMMetrics(label_limit=10, clock=lambda: 1000.0)
    long = "m" * 300
    with m.lock:
        for _ in range(3):
            m.apply(_rec(long), 1000.0)
    keys = [k for k in m.requests.series if k[2].startswith("m")]
    assert len(keys) == 1 and len(keys[0][2]) < 300
    assert m.requests.series[keys[0]].requests[0] == 3
