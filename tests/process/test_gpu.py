"""The NVML GPU collector, with a fake `pynvml`: readings and units, soft failures, staleness."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llm_exporter.collectors.gpu import GpuCollector
from tests.fake_nvml import CHILDREN, CODES, CONSTANTS, FakeGpu, FakeNvml
from tests.helpers import FIXTURES, ROOT, exporter, parse_metrics, tool, total

UUID0 = "GPU-0a1b2c3d-0000-4000-8000-000000000000"
UUID1 = "GPU-0a1b2c3d-1111-4000-8000-000000000001"
UUID2 = "GPU-0a1b2c3d-2222-4000-8000-000000000002"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(gpus: list[FakeGpu], **kw: Any) -> tuple[GpuCollector, FakeNvml, CollectorRegistry]:
    nv = FakeNvml(gpus)
    c = GpuCollector(nv, **kw)
    assert c.init()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(c)
    return c, nv, reg


def val(reg: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return reg.get_sample_value(metric, labels)


def g0(**labels: str) -> dict[str, str]:
    return {"hw_id": UUID0, "gpu": "0", **labels}


def test_reads_every_field_in_base_units() -> None:
    """Percent, mW, mJ and MHz become ratio, W, J and Hz; memory is v2's used, without the reserve."""
    g = FakeGpu(UUID0)
    c, _, reg = make([g])
    c.poll()
    assert val(reg, "hw_gpu_utilization_ratio", **g0()) == g.util / 100
    assert val(reg, "hw_gpu_memory_usage_bytes", **g0()) == g.mem_used
    assert val(reg, "hw_gpu_memory_limit_bytes", **g0()) == g.mem_total
    assert val(reg, "hw_gpu_memory_utilization_ratio", **g0()) == pytest.approx(g.mem_used / g.mem_total)
    assert val(reg, "hw_power_watts", **g0()) == g.power_mw / 1000
    assert val(reg, "hw_energy_joules_total", **g0()) == g.energy_mj / 1000
    assert val(reg, "hw_temperature_celsius", **g0()) == g.temp_c
    assert val(reg, "hw_errors_total", **g0(error_type="corrected")) == g.ecc[0]
    assert val(reg, "hw_errors_total", **g0(error_type="uncorrected")) == g.ecc[1]
    assert val(reg, "llm_gpu_clock_hertz", **g0(clock="sm")) == g.sm_mhz * 1_000_000
    assert val(reg, "llm_gpu_clock_hertz", **g0(clock="memory")) == g.mem_mhz * 1_000_000
    assert val(reg, "llm_gpu_power_limit_watts", **g0()) == g.power_limit_mw / 1000
    assert val(reg, "llm_gpu_clock_event_reasons", **g0(reason="sw_power_cap")) == 1
    assert val(reg, "llm_gpu_clock_event_reasons", **g0(reason="gpu_idle")) == 1
    assert val(reg, "llm_gpu_clock_event_reasons", **g0(reason="hw_thermal_slowdown")) == 0
    assert val(reg, "llm_gpu_info", **g0(name=g.name, driver_version="580.159.04", pci_bus_id=g.pci_bus_id,
                                         mig_mode="disabled", persistence_mode="enabled", hw_parent="",
                                         gpu_instance_id="", compute_instance_id="")) == 1
    assert val(reg, "llm_exporter_gpu_up") == 1
    assert val(reg, "llm_exporter_gpu_device_up", **g0()) == 1
    assert val(reg, "llm_gpu_process_memory_bytes", **g0(pid="1")) is None


def test_slow_fields_are_read_on_the_slow_cadence() -> None:
    """ECC and the power limit are read every slow_interval, and served in between; energy is read
    every poll (energy per token over minutes must not lag a 30 s old reading)."""
    g = FakeGpu(UUID0)
    c, nv, reg = make([g], interval=5.0, slow_interval=30.0)
    for _ in range(7):
        c.poll()
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 7
    assert nv.calls["nvmlDeviceGetEnforcedPowerLimit"] == 2  # polls 0 and 6
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == 7
    g.energy_mj += 5_000
    c.poll()
    assert val(reg, "hw_energy_joules_total", **g0()) == g.energy_mj / 1000


def test_energy_is_attributed_to_the_servers_gpus() -> None:
    """With per-process readings and the server's pids known, energy is exported only for the GPUs
    the server's process tree uses: here a real shell and its real child, found through /proc."""
    from llm_exporter.sources.command import process_tree

    sh = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(sh.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        tree = process_tree(sh.pid)
        assert len(tree) == 2 and sh.pid in tree  # the shell and its sleep
        grandchild = (tree - {sh.pid}).pop()
        gpus = [FakeGpu(UUID0, processes=[(4242, 1 << 30)]),  # another tenant's process
                FakeGpu(UUID1, processes=[(grandchild, 2 << 30)]),  # the server's worker
                FakeGpu(UUID2)]  # idle
        c, _, reg = make(gpus, processes=True, server_pids=lambda: process_tree(sh.pid))
        c.poll()
        assert val(reg, "hw_energy_joules_total", hw_id=UUID1, gpu="1") == gpus[1].energy_mj / 1000
        assert val(reg, "hw_energy_joules_total", **g0()) is None
        assert val(reg, "hw_energy_joules_total", hw_id=UUID2, gpu="2") is None
        assert val(reg, "hw_power_watts", **g0()) is not None  # the other readings stay
        # without per-process readings, or without known pids, every selected GPU counts
        for kw in ({"processes": False, "server_pids": lambda: process_tree(sh.pid)},
                   {"processes": True, "server_pids": lambda: None}):
            c, _, reg = make(gpus, **kw)
            c.poll()
            assert val(reg, "hw_energy_joules_total", **g0()) == gpus[0].energy_mj / 1000
    finally:
        sh.kill()
        sh.wait()
    c, _, reg = make(gpus, processes=True, server_pids=lambda: process_tree(sh.pid))
    c.poll()  # the server is gone: none of these GPUs is its
    assert not [x for x in parse_metrics(generate_latest(reg).decode()) if x[0] == "hw_energy_joules_total"]


def test_unsupported_field_is_absent_and_not_asked_again() -> None:
    """NotSupported: the series is absent (not 0), NVML is asked once, the error counted once."""
    g = FakeGpu(UUID0, unsupported={"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage"})
    c, nv, reg = make([g])
    for _ in range(3):
        c.poll()
    assert val(reg, "hw_gpu_utilization_ratio", **g0()) is None
    assert val(reg, "hw_power_watts", **g0()) is None
    assert nv.calls["nvmlDeviceGetUtilizationRates"] == 1
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 1
    assert val(reg, "llm_exporter_gpu_errors_total", error="not_supported") == 2
    assert val(reg, "hw_temperature_celsius", **g0()) == g.temp_c
    assert val(reg, "llm_exporter_gpu_up") == 1
    assert b"hw_power_watts{" not in generate_latest(reg)


def test_temperature_falls_back_to_the_older_call() -> None:
    """Without nvmlDeviceGetTemperatureV the legacy nvmlDeviceGetTemperature answers, every poll."""
    g = FakeGpu(UUID0, temp_c=66, unsupported={"nvmlDeviceGetTemperatureV"})
    c, nv, reg = make([g])
    c.poll()
    c.poll()
    assert val(reg, "hw_temperature_celsius", **g0()) == 66
    assert nv.calls["nvmlDeviceGetTemperatureV"] == 1
    assert nv.calls["nvmlDeviceGetTemperature"] == 2


def test_memory_falls_back_to_v1_when_v2_is_missing() -> None:
    """FunctionNotFound on memory info v2 (an older driver) falls back to v1 for good."""
    g = FakeGpu(UUID0, errors={"nvmlDeviceGetMemoryInfo_v2": CODES["NVML_ERROR_FUNCTION_NOT_FOUND"]})
    c, nv, reg = make([g])
    c.poll()
    c.poll()
    assert val(reg, "hw_gpu_memory_usage_bytes", **g0()) == g.mem_used + g.mem_reserved
    assert nv.calls["nvmlDeviceGetMemoryInfo_v2"] == 1
    assert val(reg, "llm_exporter_gpu_errors_total", error="function_not_found") == 1


def test_a_passing_error_leaves_the_field_out_once() -> None:
    """An Unknown error: the field is absent this poll, counted, and read again next poll."""
    g = FakeGpu(UUID0, errors={"nvmlDeviceGetPowerUsage": CODES["NVML_ERROR_UNKNOWN"]})
    c, _, reg = make([g])
    c.poll()
    assert val(reg, "hw_power_watts", **g0()) is None
    assert val(reg, "llm_exporter_gpu_errors_total", error="unknown") == 1
    c.poll()
    assert val(reg, "hw_power_watts", **g0()) == g.power_mw / 1000


@pytest.mark.parametrize("code", ["NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED"])
def test_no_library_or_driver_soft_fails(code: str, caplog: pytest.LogCaptureFixture) -> None:
    """No library or driver: start() says no, one info line, gpu_up 0, no GPU series."""
    nv = FakeNvml([FakeGpu(UUID0)], init_error=CODES[code])
    c = GpuCollector(nv)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(c)
    with caplog.at_level(logging.INFO, logger="llm_exporter"):
        assert not c.start()
        c.announce()
    assert [r.getMessage() for r in caplog.records] == ["gpu readings off"]
    assert val(reg, "llm_exporter_gpu_up") == 0
    cls = code[len("NVML_ERROR_"):].lower()
    assert val(reg, "llm_exporter_gpu_errors_total", error=cls) == 1
    assert not any(s.name.startswith("hw_") for m in reg.collect() for s in m.samples)
    c.stop()


def test_missing_bindings_soft_fail() -> None:
    """Without nvidia-ml-py installed, the collector reports gpu_up 0 and a reason."""
    def loader() -> Any:
        raise ImportError("No module named 'pynvml'")

    c = GpuCollector(loader=loader)
    assert not c.start()
    assert "nvidia-ml-py" in c.reason
    reg = CollectorRegistry(auto_describe=False)
    reg.register(c)
    assert val(reg, "llm_exporter_gpu_up") == 0


def test_lost_gpu_hides_only_its_own_series() -> None:
    """GpuIsLost on one GPU: its series go, the other's stay, gpu_up stays 1; it comes back."""
    a, b = FakeGpu(UUID0), FakeGpu(UUID1, power_mw=100_000)
    c, _, reg = make([a, b])
    c.poll()
    a.lost = True
    c.poll()
    assert val(reg, "hw_power_watts", **g0()) is None
    assert val(reg, "hw_gpu_memory_usage_bytes", **g0()) is None
    assert val(reg, "hw_power_watts", hw_id=UUID1, gpu="1") == 100.0
    assert val(reg, "llm_exporter_gpu_device_up", **g0()) == 0
    assert val(reg, "llm_exporter_gpu_device_up", hw_id=UUID1, gpu="1") == 1
    assert val(reg, "llm_exporter_gpu_errors_total", error="gpu_is_lost") == 1
    assert val(reg, "llm_exporter_gpu_up") == 1
    a.lost = False
    c.poll()
    assert val(reg, "hw_power_watts", **g0()) == a.power_mw / 1000
    assert val(reg, "llm_exporter_gpu_device_up", **g0()) == 1


def test_driver_gone_mid_run_drops_every_series() -> None:
    """Uninitialized (the driver went away) fails the whole poll: gpu_up 0, no stale GPU series."""
    g = FakeGpu(UUID0)
    c, _, reg = make([g])
    c.poll()
    g.errors["nvmlDeviceGetUtilizationRates"] = CODES["NVML_ERROR_UNINITIALIZED"]
    c.poll()
    assert val(reg, "llm_exporter_gpu_up") == 0
    assert val(reg, "hw_power_watts", **g0()) is None
    c.poll()
    assert val(reg, "llm_exporter_gpu_up") == 1


def test_hung_call_serves_the_stale_snapshot() -> None:
    """While a call hangs, a scrape returns the last readings at once, with gpu_up 0 and a growing age."""
    clock = Clock()
    g = FakeGpu(UUID0, power_mw=200_000)
    c, nv, reg = make([g], clock=clock, timeout=3.0, interval=5.0)
    c.poll()
    release = threading.Event()
    nv.hang["nvmlDeviceGetPowerUsage"] = release
    g.power_mw = 650_000
    t = threading.Thread(target=c.poll)
    t.start()
    try:
        assert nv.entered.wait(10)
        clock.t += 1.0  # within the deadline: fresh enough
        assert val(reg, "llm_exporter_gpu_up") == 1
        clock.t += 9.0  # past it
        assert val(reg, "hw_power_watts", **g0()) == 200.0  # the scrape did not wait for the call
        assert val(reg, "llm_exporter_gpu_up") == 0
        assert val(reg, "llm_exporter_gpu_snapshot_age_seconds") == 10.0
        assert val(reg, "llm_exporter_gpu_errors_total", error="timeout") == 1
        assert t.is_alive()
    finally:
        del nv.hang["nvmlDeviceGetPowerUsage"]
        release.set()
        t.join(10)
    assert val(reg, "hw_power_watts", **g0()) == 650.0
    assert val(reg, "llm_exporter_gpu_up") == 1
    assert val(reg, "llm_exporter_gpu_errors_total", error="timeout") == 1  # one hung poll, one count


def test_poll_thread_polls_until_stopped() -> None:
    """start() polls on its own thread; stop() ends it and shuts NVML down."""
    nv = FakeNvml([FakeGpu(UUID0)])
    c = GpuCollector(nv, interval=0.01)
    assert c.start()
    assert c.wait_polls(3, timeout=10)
    c.stop()
    assert c._thread is not None and not c._thread.is_alive()
    assert nv.shut_down
    # power is read once per poll and never outside one: the fake's own count matches the polls done
    assert nv.calls["nvmlDeviceGetPowerUsage"] == c._polls >= 3


def test_gpu_devices_selects_by_index_and_uuid() -> None:
    """--gpu-devices keeps the GPUs named by index or UUID (any case) and reports the rest."""
    gpus = [FakeGpu(UUID0), FakeGpu(UUID1), FakeGpu(UUID2)]
    c, nv, reg = make(gpus, devices=["2", UUID0.upper(), "7"])
    c.poll()
    assert [d.index for d in c.devices] == [0, 2]
    assert c.unmatched == ["7"]
    assert val(reg, "hw_power_watts", hw_id=UUID1, gpu="1") is None
    assert val(reg, "hw_power_watts", hw_id=UUID2, gpu="2") is not None
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 2


def test_mig_devices_are_reported_per_gpu_instance() -> None:
    """Under MIG each GPU instance is its own hw_id, joined to its parent by llm_gpu_info."""
    mig_a = FakeGpu("MIG-aaaa", name="NVIDIA H100 80GB HBM3 MIG 3g.40gb", mem_used=1 << 30, mem_total=40 << 30,
                    gi=1, ci=0, unsupported={"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage"})
    mig_b = FakeGpu("MIG-bbbb", mem_used=2 << 30, mem_total=20 << 30, gi=2, ci=0,
                    unsupported={"nvmlDeviceGetUtilizationRates"})
    parent = FakeGpu(UUID0, mig_mode=1, migs=[mig_a, None, mig_b], unsupported={"nvmlDeviceGetUtilizationRates"})
    c, _, reg = make([parent])
    c.poll()
    assert val(reg, "hw_gpu_memory_usage_bytes", hw_id="MIG-aaaa", gpu="0") == 1 << 30
    assert val(reg, "hw_gpu_memory_limit_bytes", hw_id="MIG-bbbb", gpu="0") == 20 << 30
    assert val(reg, "hw_gpu_utilization_ratio", hw_id="MIG-aaaa", gpu="0") is None
    assert val(reg, "hw_power_watts", **g0()) == parent.power_mw / 1000
    assert val(reg, "llm_gpu_info", hw_id="MIG-aaaa", gpu="0", name=mig_a.name, driver_version="580.159.04",
               pci_bus_id=parent.pci_bus_id, mig_mode="enabled", persistence_mode="enabled", hw_parent=UUID0,
               gpu_instance_id="1", compute_instance_id="0") == 1
    assert val(reg, "llm_exporter_gpu_errors_total", error="not_found") is None  # empty slots are no error


def test_process_memory_is_opt_in() -> None:
    """Per-process memory is read only with processes=True, labelled by (host) pid."""
    g = FakeGpu(UUID0, processes=[(4242, 10 << 30), (77, 512 << 20)])
    c, nv, reg = make([g])
    c.poll()
    assert val(reg, "llm_gpu_process_memory_bytes", **g0(pid="4242")) is None
    assert nv.calls["nvmlDeviceGetComputeRunningProcesses"] == 0
    c, nv, reg = make([g], processes=True)
    c.poll()
    assert val(reg, "llm_gpu_process_memory_bytes", **g0(pid="4242")) == 10 << 30
    assert val(reg, "llm_gpu_process_memory_bytes", **g0(pid="77")) == 512 << 20


def test_fake_matches_the_real_bindings() -> None:
    """Every code, constant and function the fake offers exists in nvidia-ml-py with the same value."""
    import pynvml

    for name, v in {**CODES, **CONSTANTS}.items():
        assert getattr(pynvml, name) == v, name
    for name in dir(FakeNvml):
        if name.startswith("nvml"):
            assert callable(getattr(pynvml, name)), name
    assert issubclass(pynvml.NVMLError_GpuIsLost, pynvml.NVMLError)
    assert pynvml.NVMLError(CODES["NVML_ERROR_NOT_SUPPORTED"]).value == CODES["NVML_ERROR_NOT_SUPPORTED"]


def test_promtool_accepts_the_gpu_exposition() -> None:
    """promtool check metrics finds no problem with every GPU family populated, MIG included."""
    mig = FakeGpu("MIG-aaaa", gi=1, ci=0)
    c, _, reg = make([FakeGpu(UUID0, mig_mode=1, migs=[mig], processes=[(1, 1 << 30)]), FakeGpu(UUID1)],
                     processes=True)
    c.poll()
    text = generate_latest(reg)
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


# -- the real process, with the fake module on PYTHONPATH ---------------------------------------

def fake_env(spec: dict[str, Any]) -> dict[str, str]:
    path = os.pathsep.join([str(FIXTURES / "fake_pynvml"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "LLM_EXPORTER_TEST_FAKE_NVML": json.dumps(spec)}


def test_gpu_on_without_nvml_is_a_startup_error() -> None:
    """`--gpu on` with no NVML library: one line on stderr, exit 1."""
    env = {**os.environ, **fake_env({"init_error": CODES["NVML_ERROR_LIBRARY_NOT_FOUND"]})}
    r = subprocess.run([sys.executable, "-m", "llm_exporter", "--gpu", "on", "--listen", "127.0.0.1:0"],
                       input=b"", capture_output=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-exporter: error: --gpu on: NVML unavailable"), lines


def test_log_metrics_flow_without_nvml() -> None:
    """`--gpu auto` and no driver: gpu_up 0, one info line, and every log line is still counted."""
    spec = {"init_error": CODES["NVML_ERROR_DRIVER_NOT_LOADED"]}
    lines = b"".join(b'{"model":"m","latency_ms":%d}\n' % i for i in range(50))
    with exporter("--gpu", "auto", env=fake_env(spec)) as e:
        e.wait_ready()
        e.stdin.write(lines)
        e.stdin.flush()
        s = e.wait_lines(50)
        assert total(s, "llm_exporter_lines_total", outcome="record") == 50
        assert total(s, "llm_requests_total") == 50
        assert total(s, "llm_exporter_gpu_up") == 0
        assert e.stop() == 0
        logs = [json.loads(x) for x in e.stderr_text().splitlines()]
    off = [x for x in logs if x["msg"].startswith("gpu")]
    assert [(x["level"], x["msg"]) for x in off] == [("info", "gpu readings off")]


def test_wrapper_mode_energy_only_from_the_childs_gpu() -> None:
    """A real exporter wrapping a child, with `--gpu-processes`: the fake NVML puts the child on
    GPU 1 and a stranger on GPU 0; only GPU 1's energy is exported."""
    spec = {"gpus": [{"uuid": UUID0, "processes": [[4242, 1 << 30]]},
                     {"uuid": UUID1, "energy_mj": 7_000_000, "processes": [[CHILDREN, 1 << 30]]}]}
    with exporter("--gpu", "on", "--gpu-interval", "0.05", "--gpu-processes", "--", "sleep", "60",
                  env=fake_env(spec)) as e:
        e.wait_ready()
        deadline = time.monotonic() + 20
        while True:
            s = parse_metrics(e.scrape())
            if total(s, "hw_energy_joules_total") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert {dict(k[1])["hw_id"]: v for k, v in s.items() if k[0] == "hw_energy_joules_total"} == {UUID1: 7000.0}
        assert total(s, "hw_power_watts", hw_id=UUID0) > 0  # GPU 0's own readings stay
        e.stop()


def test_exporter_serves_gpu_readings_over_http() -> None:
    """A real exporter with `--gpu on` serves the fake GPU's readings on /metrics, promtool-clean."""
    spec = {"gpus": [{"uuid": UUID0, "power_mw": 123_000, "processes": [[99, 1 << 30]]}]}
    with exporter("--gpu", "on", "--gpu-interval", "0.05", "--gpu-processes", env=fake_env(spec)) as e:
        e.wait_ready()
        deadline = time.monotonic() + 20
        while True:
            text = e.scrape()
            s = parse_metrics(text)
            if total(s, "llm_exporter_gpu_up") == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert total(s, "hw_power_watts", hw_id=UUID0, gpu="0") == 123.0
        assert total(s, "llm_gpu_process_memory_bytes", pid="99") == 1 << 30
        r = subprocess.run([tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        assert e.stop() == 0
