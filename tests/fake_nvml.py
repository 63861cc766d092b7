"""A fake `pynvml` module: GPUs held in plain objects, NVML's error codes and constants, and
switches for the failures a real driver shows (NotSupported fields, a lost GPU, a hung call,
no library). An instance stands in for the module; `tests/fixtures/fake_pynvml/pynvml.py`
builds one from the environment for a real exporter process."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# The NVML return codes (nvml.h) the collector meets; tests check them against the real bindings.
CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_TIMEOUT": 10,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_ARGUMENT_VERSION_MISMATCH": 25,
    "NVML_ERROR_UNKNOWN": 999,
}
CONSTANTS = {
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_DEVICE_MIG_ENABLE": 1,
    "nvmlMemory_v2": 0x02000028,
}


#: a process entry with this pid stands for every child process of the process using the fake
#: (a real exporter's wrapped server), found in /proc when NVML is asked
CHILDREN = -1


def _children() -> list[int]:
    import os

    me = str(os.getpid()).encode()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rfind(b")") + 2:].split()[1:2] == [me]:
                out.append(int(name))
    return out


class NVMLError(Exception):
    """Like pynvml's: `NVMLError(code)` builds the subclass of that code; `.value` is the code."""

    _by_code: dict[int, type[NVMLError]] = {}  # noqa: RUF012 - a class-level registry, as in pynvml
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return {v: k for k, v in CODES.items()}.get(self.value, f"NVML error {self.value}")


for _name, _code in CODES.items():
    _cls_name = "NVMLError_" + "".join(p.capitalize() for p in _name[len("NVML_ERROR_"):].split("_"))
    NVMLError._by_code[_code] = type(_cls_name, (NVMLError,), {})


@dataclass
class FakeGpu:
    """One device's readings, in NVML's units (percent, bytes, mW, mJ, MHz)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = "00000000:18:00.0"
    util: int = 37
    mem_used: int = 10 << 30
    mem_reserved: int = 480 << 20
    mem_total: int = 80 << 30
    power_mw: int = 312_500
    energy_mj: int = 123_456_789
    temp_c: int = 41
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    ecc: tuple[int, int] = (3, 0)
    reasons: int = 0x4 | 0x1
    power_limit_mw: int = 700_000
    persistence: int = 1
    mig_mode: int = 0
    processes: list[tuple[int, int]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # function names that raise NotSupported
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML code raised once
    lost: bool = False
    migs: list[FakeGpu | None] = field(default_factory=list)  # None: an empty slot
    gi: int = 0
    ci: int = 0


class FakeNvml:
    """Stands in for the `pynvml` module."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None, driver: str = "580.159.04") -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.calls: Counter[str] = Counter()
        self.hang: dict[str, threading.Event] = {}  # function name -> released when set
        self.entered = threading.Event()  # set when a call starts to hang
        self.shut_down = False
        for k, v in {**CODES, **CONSTANTS}.items():
            setattr(self, k, v)
        for code, cls in NVMLError._by_code.items():
            setattr(self, cls.__name__, cls)
            del code

    @classmethod
    def from_json(cls, text: str) -> FakeNvml:
        spec = json.loads(text)
        gpus = [FakeGpu(**g) for g in spec.get("gpus", [])]
        return cls(gpus, init_error=spec.get("init_error"))

    def _dev(self, fn: str, h: FakeGpu) -> FakeGpu:
        self.calls[fn] += 1
        if h.lost:
            raise NVMLError(CODES["NVML_ERROR_GPU_IS_LOST"])
        if fn in h.unsupported:
            raise NVMLError(CODES["NVML_ERROR_NOT_SUPPORTED"])
        if fn in h.errors:
            raise NVMLError(h.errors.pop(fn))
        ev = self.hang.get(fn)
        if ev is not None:
            self.entered.set()
            ev.wait()
        return h

    # -- library ------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    # -- identity -----------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return self._dev("nvmlDeviceGetUUID", h).uuid

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return self._dev("nvmlDeviceGetName", h).name

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(busId=self._dev("nvmlDeviceGetPciInfo", h).pci_bus_id.encode())

    def nvmlDeviceGetPersistenceMode(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetPersistenceMode", h).persistence

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> list[int]:
        g = self._dev("nvmlDeviceGetMigMode", h)
        return [g.mig_mode, g.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        return len(self._dev("nvmlDeviceGetMaxMigDeviceCount", h).migs)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, i: int) -> FakeGpu:
        m = self._dev("nvmlDeviceGetMigDeviceHandleByIndex", h).migs[i]
        if m is None:
            raise NVMLError(CODES["NVML_ERROR_NOT_FOUND"])
        return m

    def nvmlDeviceGetGpuInstanceId(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetGpuInstanceId", h).gi

    def nvmlDeviceGetComputeInstanceId(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetComputeInstanceId", h).ci

    # -- readings -----------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        return SimpleNamespace(gpu=self._dev("nvmlDeviceGetUtilizationRates", h).util, memory=5)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu, version: int | None = None) -> Any:
        if version is None:
            g = self._dev("nvmlDeviceGetMemoryInfo", h)
            used = g.mem_used + g.mem_reserved  # v1 counts the driver's reserve as used
            return SimpleNamespace(total=g.mem_total, used=used, free=g.mem_total - used)
        g = self._dev("nvmlDeviceGetMemoryInfo_v2", h)
        return SimpleNamespace(version=version, total=g.mem_total, reserved=g.mem_reserved, used=g.mem_used,
                               free=g.mem_total - g.mem_used - g.mem_reserved)

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetPowerUsage", h).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetTotalEnergyConsumption", h).energy_mj

    def nvmlDeviceGetTemperatureV(self, h: FakeGpu, sensor: int) -> int:
        return self._dev("nvmlDeviceGetTemperatureV", h).temp_c

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        return self._dev("nvmlDeviceGetTemperature", h).temp_c

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, clock: int) -> int:
        g = self._dev("nvmlDeviceGetClockInfo", h)
        return g.sm_mhz if clock == CONSTANTS["NVML_CLOCK_SM"] else g.mem_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetCurrentClocksEventReasons", h).reasons

    def nvmlDeviceGetTotalEccErrors(self, h: FakeGpu, error_type: int, counter: int) -> int:
        return self._dev("nvmlDeviceGetTotalEccErrors", h).ecc[error_type]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return self._dev("nvmlDeviceGetEnforcedPowerLimit", h).power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        g = self._dev("nvmlDeviceGetComputeRunningProcesses", h)
        out = []
        for pid, n in g.processes:
            for p in (_children() if pid == CHILDREN else [pid]):
                out.append(SimpleNamespace(pid=p, usedGpuMemory=n))
        return out

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: FakeGpu) -> list[Any]:
        self._dev("nvmlDeviceGetGraphicsRunningProcesses", h)
        return []
