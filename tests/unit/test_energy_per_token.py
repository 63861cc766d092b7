"""The page's energy per output token: this server's GPU energy counter over the output tokens
counted in the same time (a fake NVML whose counter the test moves, records fed by hand)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from llm_exporter.collectors.gpu import GpuCollector
from llm_exporter.dashboard import Dashboard, page
from llm_exporter.metrics import LLMMetrics
from tests.fake_nvml import FakeGpu, FakeNvml

UUID0 = "GPU-0a1b2c3d-0000-4000-8000-000000000000"
UUID1 = "GPU-0a1b2c3d-1111-4000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def request(tokens: int) -> dict[str, object]:
    return {"kind": "request", "provider": "app", "operation": "chat", "model": "m", "outcome": "success",
            "error_type": "", "output_tokens": tokens, "duration_s": 0.5}


def test_joules_per_output_token_over_the_window() -> None:
    clock = Clock()
    gpus = [FakeGpu(UUID0, energy_mj=1_000_000), FakeGpu(UUID1, energy_mj=5_000_000)]
    gpu = GpuCollector(FakeNvml(gpus), clock=clock)
    assert gpu.init()
    gpu.poll()
    m = LLMMetrics(clock=clock)
    d = Dashboard(CollectorRegistry(auto_describe=False), m, clock=clock, gpu_source=gpu)
    d.sample()  # baseline: 1000 J + 5000 J at t0
    assert d.energy()["joules_per_output_token"] is None  # no time has passed
    for step in range(6):  # a minute: 100 and 150 output tokens every 10 s, 250 J more each 10 s
        clock.t += 10
        with m.lock:
            m.apply(request(100), clock.t)
            m.apply(request(150), clock.t)
        gpus[0].energy_mj += 100_000
        gpus[1].energy_mj += 150_000
        gpu.poll()
        d.sample()
        del step
    e = d.energy()
    assert e["output_tokens"] == 6 * 250
    assert e["joules"] == 6 * 250.0
    assert e["watts"] == 6 * 250.0 / 60
    assert e["joules_per_output_token"] == 1.0  # 1500 J / 1500 tokens
    assert d.data()["energy"] == e
    assert "GPU energy per output token (15 min)</th><td>1.000 J" in page(m.summary(), 60.0, e)


def test_no_gpu_energy_no_figure() -> None:
    clock = Clock()
    m = LLMMetrics(clock=clock)
    d = Dashboard(CollectorRegistry(auto_describe=False), m, clock=clock)
    d.sample()
    clock.t += 10
    assert d.energy()["joules"] is None
    assert "energy per output token (15 min)" not in page(m.summary(), 10.0, d.energy())
