"""NVML GPU readings, polled on a thread of their own and served from a snapshot.

Model:
- One poll thread owns every NVML call. Every `interval` seconds it reads each selected GPU (and
  each MIG device under it), builds the metric families, and swaps them in as the new snapshot.
  A scrape only reads the snapshot reference and a few counters under a lock that is never held
  across an NVML call, so it never waits on NVML, however many GPUs or however slow the driver.
- Slow calls (ECC counters, power limit, the info labels, MIG discovery) run on a slower cadence
  (`slow_interval`); their last values are served in between. Total energy is read every poll
  (about 4 ms a GPU), so energy per token over a few minutes is not off by a stale reading.
- Energy belongs to this server's GPUs only: the devices `--gpu-devices` selects, and with
  `--gpu-processes` in wrapper mode only those on which the wrapped server (the child or any of
  its descendants) holds memory (`server_pids`). `hw_energy_joules_total` is exported for those
  alone, so a sum over it is this server's energy on a shared node.
- A call that hangs cannot be interrupted (it is inside the driver). A poll running past
  `timeout` makes the snapshot stale: `llm_exporter_gpu_up` drops to 0, the last readings are
  still served (with `llm_exporter_gpu_snapshot_age_seconds` growing), and one `timeout` error is
  counted. When the call returns, the next snapshot is fresh again.
- Soft-fail: no library or driver leaves the collector registered with `llm_exporter_gpu_up 0`.
  A field a device does not support (`NotSupported`, `FunctionNotFound`) is absent, not 0, and is
  not asked again. A lost GPU (`GpuIsLost`) loses its own series only; it is tried again each poll.
  Every NVML error is counted by class in `llm_exporter_gpu_errors_total{error}`.
- The NVML module is passed in (tests give a fake); production imports `pynvml` (nvidia-ml-py)
  lazily, in `start()`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("llm_exporter.gpu")

SLOW_INTERVAL = 30.0
DEFAULT_TIMEOUT = 3.0
LABELS = ("hw_id", "gpu")
INFO_LABELS = (*LABELS, "name", "driver_version", "pci_bus_id", "mig_mode", "persistence_mode",
               "hw_parent", "gpu_instance_id", "compute_instance_id")

#: NVML's clock event (throttle) reason bits, by label value.
CLOCK_EVENT_REASONS = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
)

# NVML return codes (nvml.h); read from the module when it has them.
_NOT_SUPPORTED = 3
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_UNINITIALIZED = 1
_ARGUMENT_VERSION_MISMATCH = 25
#: Errors meaning "this device will never answer this call": stop asking.
_PERMANENT = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND, _ARGUMENT_VERSION_MISMATCH})
#: Errors meaning NVML itself is gone: the whole poll fails.
_NVML_DOWN = frozenset({_UNINITIALIZED, _DRIVER_NOT_LOADED, _LIBRARY_NOT_FOUND})


def load_nvml() -> Any:
    """The real NVML bindings (nvidia-ml-py), imported only when GPU readings are wanted."""
    import pynvml

    return pynvml


class _GpuLost(Exception):
    pass


class _NvmlDown(Exception):
    pass


class Device:
    """One GPU or MIG device: its identity, what it cannot answer, its last readings."""

    __slots__ = ("ci", "gi", "handle", "index", "lost", "migs", "parent", "unsupported", "uuid", "values")

    def __init__(self, index: int, uuid: str, handle: Any, parent: Device | None = None,
                 gi: int | None = None, ci: int | None = None) -> None:
        self.index = index
        self.uuid = uuid
        self.handle = handle
        self.parent = parent
        self.gi = gi
        self.ci = ci
        self.unsupported: set[str] = set()
        self.values: dict[str, Any] = {}
        self.lost = False
        self.migs: list[Device] = []

    @property
    def labels(self) -> list[str]:
        return [self.uuid, str(self.index)]


class Snapshot:
    """Metric families built by one poll, served as is until the next one."""

    __slots__ = ("duration", "families", "ok", "taken")

    def __init__(self, families: Sequence[Metric] = (), ok: bool = False, taken: float | None = None,
                 duration: float | None = None) -> None:
        self.families = families
        self.ok = ok
        self.taken = taken
        self.duration = duration


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class GpuCollector:
    """NVML readings for Prometheus; register it, `start()` it, `stop()` it."""

    def __init__(self, nvml: Any = None, *, devices: Sequence[str] = (), interval: float = 5.0,
                 processes: bool = False, slow_interval: float = SLOW_INTERVAL,
                 timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 loader: Callable[[], Any] = load_nvml,
                 server_pids: Callable[[], set[int] | None] | None = None) -> None:
        self.nvml = nvml
        self.wanted = [d.strip() for d in devices if d.strip()]
        self.interval = interval
        self.processes = processes
        self.slow_every = max(1, round(slow_interval / interval))
        self.timeout = timeout
        self._clock = clock
        self._loader = loader
        #: the watched server's pids (wrapper mode), for energy attribution with `processes`
        self.server_pids = server_pids
        self.available = False
        self.reason = ""
        self.unmatched: list[str] = []
        self.devices: list[Device] = []
        self._driver = ""
        self._codes: dict[int, str] = {}
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self._snap = Snapshot()
        self._polls = 0
        self._poll_started: float | None = None
        self._timeout_counted = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polled = threading.Condition(self._lock)

    # -- start-up and lifecycle ---------------------------------------------------------------

    def init(self) -> bool:
        """Load and initialise NVML and find the devices; False (with `reason`) when unavailable."""
        if self.nvml is None:
            try:
                self.nvml = self._loader()
            except ImportError as e:
                self.reason = f"nvidia-ml-py is not installed ({e})"
                self._count("library_not_found")
                return False
        nv = self.nvml
        self._codes = {v: k[len("NVML_ERROR_"):].lower() for k, v in vars(nv).items()
                       if k.startswith("NVML_ERROR_") and isinstance(v, int)}
        try:
            nv.nvmlInit()
            self._driver = _text(nv.nvmlSystemGetDriverVersion())
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as e:
            self._count(self._class_of(e))
            self.reason = f"NVML unavailable: {e}"
            return False
        found: list[Device] = []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                found.append(Device(i, _text(nv.nvmlDeviceGetUUID(h)), h))
            except nv.NVMLError as e:
                self._count(self._class_of(e))
                log.warning("gpu not readable", extra={"fields": {"gpu": i, "error": str(e)}})
        self.devices = self._select(found)
        self.available = True
        return True

    def _select(self, found: list[Device]) -> list[Device]:
        if not self.wanted:
            return found
        keep: list[Device] = []
        for w in self.wanted:
            match = [d for d in found if w == str(d.index) or w.lower() == d.uuid.lower()]
            if not match:
                self.unmatched.append(w)
            keep.extend(d for d in match if d not in keep)
        return sorted(keep, key=lambda d: d.index)

    def start(self) -> bool:
        """`init()`, then start the poll thread when NVML is there; False (see `reason`) when not.
        Logs nothing: `announce()` does, once the daemon has started."""
        if not self.init():
            return False
        self._thread = threading.Thread(target=self._run, name="gpu-poll", daemon=True)
        self._thread.start()
        return True

    def announce(self) -> None:
        """One log line on what start() found: info when on or off, a warning for unknown devices."""
        if not self.available:
            log.info("gpu readings off", extra={"fields": {"reason": self.reason}})
            return
        if self.unmatched:
            log.warning("gpu devices not found", extra={"fields": {"gpu_devices": self.unmatched}})
        log.info("gpu readings on", extra={"fields": {
            "driver_version": self._driver, "gpus": [d.uuid for d in self.devices],
            "interval_seconds": self.interval}})

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the poll thread; a thread stuck in a driver call is left behind (it is a daemon)."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                return
        if self.available:
            with contextlib.suppress(Exception):  # nothing to do about a failed shutdown at exit
                self.nvml.nvmlShutdown()
            self.available = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def wait_polls(self, n: int, timeout: float) -> bool:
        """Block until `n` polls have finished (for tests and tools); False on timeout."""
        with self._polled:
            return self._polled.wait_for(lambda: self._polls >= n, timeout)

    # -- polling (poll thread only) -----------------------------------------------------------

    def poll(self) -> None:
        """Read every device once and swap in a new snapshot. Never raises."""
        t0 = self._clock()
        with self._lock:
            self._poll_started = t0
            seq = self._polls
        slow = seq % self.slow_every == 0
        ok = True
        try:
            for dev in self.devices:
                self._poll_device(dev, slow)
        except _NvmlDown:
            ok = False
        except Exception:  # a bug must not kill the thread: count it, keep polling
            log.exception("gpu poll failed")
            self._count("other")
            ok = False
        families = self._families() if ok else []
        t1 = self._clock()
        with self._lock:
            if t1 - t0 > self.timeout and self._timeout_counted != seq:
                self._count_locked("timeout")
                self._timeout_counted = seq
            self._snap = Snapshot(families, ok, t1, t1 - t0)
            self._poll_started = None
            self._polls += 1
            self._polled.notify_all()

    def _poll_device(self, dev: Device, slow: bool) -> None:
        try:
            self._read_device(dev, slow)
            if slow and dev.parent is None:
                self._discover_migs(dev)
            for mig in dev.migs:
                self._poll_device(mig, slow)
            if dev.lost:
                dev.lost = False
                log.info("gpu back", extra={"fields": {"hw_id": dev.uuid, "gpu": dev.index}})
        except _GpuLost:
            if not dev.lost:
                log.warning("gpu lost", extra={"fields": {"hw_id": dev.uuid, "gpu": dev.index}})
            dev.lost = True
            dev.values.clear()
            for mig in dev.migs:
                mig.values.clear()

    def _read_device(self, dev: Device, slow: bool) -> None:
        nv = self.nvml
        h = dev.handle
        v = dev.values
        for k in ("utilization", "power", "temperature", "clock_sm", "clock_memory", "clock_events",
                  "memory", "processes", "energy"):
            v.pop(k, None)
        self._read(dev, "utilization", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu)
        self._read_memory(dev)
        self._read(dev, "power", lambda: nv.nvmlDeviceGetPowerUsage(h))
        if not self._read(dev, "temperature_v", lambda: nv.nvmlDeviceGetTemperatureV(
                h, nv.NVML_TEMPERATURE_GPU), store="temperature") and "temperature_v" in dev.unsupported:
            self._read(dev, "temperature_legacy", lambda: nv.nvmlDeviceGetTemperature(
                h, nv.NVML_TEMPERATURE_GPU), store="temperature")
        self._read(dev, "clock_sm", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        self._read(dev, "clock_memory", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))
        self._read(dev, "clock_events", lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h))
        if self.processes:
            self._read(dev, "processes", lambda: self._processes(h))
        if dev.parent is None:  # MIG devices have no energy counter of their own
            self._read(dev, "energy", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
        if not slow:
            return
        self._read(dev, "ecc_corrected", lambda: nv.nvmlDeviceGetTotalEccErrors(
            h, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC))
        self._read(dev, "ecc_uncorrected", lambda: nv.nvmlDeviceGetTotalEccErrors(
            h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC))
        self._read(dev, "power_limit", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h))
        self._read(dev, "name", lambda: _text(nv.nvmlDeviceGetName(h)))
        if dev.parent is None:
            self._read(dev, "pci_bus_id", lambda: _text(nv.nvmlDeviceGetPciInfo(h).busId))
            self._read(dev, "persistence_mode", lambda: nv.nvmlDeviceGetPersistenceMode(h))
            self._read(dev, "mig_mode", lambda: nv.nvmlDeviceGetMigMode(h)[0])

    def _read_memory(self, dev: Device) -> None:
        nv = self.nvml
        h = dev.handle
        ver = getattr(nv, "nvmlMemory_v2", None)
        if ver is not None and "memory_v2" not in dev.unsupported:
            if self._read(dev, "memory_v2", lambda: nv.nvmlDeviceGetMemoryInfo(h, version=ver),
                          store="memory"):
                return
            if "memory_v2" not in dev.unsupported:
                return
        # v1 "used" counts memory the driver reserves (about 480 MiB on an idle H100)
        self._read(dev, "memory_v1", lambda: nv.nvmlDeviceGetMemoryInfo(h), store="memory")

    def _processes(self, h: Any) -> dict[int, int]:
        nv = self.nvml
        out: dict[int, int] = {}
        for fn in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                procs = fn(h)
            except nv.NVMLError as e:
                if e.value != _NOT_SUPPORTED:
                    raise
                continue
            for p in procs:
                if p.usedGpuMemory is not None:
                    out[int(p.pid)] = max(out.get(int(p.pid), 0), int(p.usedGpuMemory))
        return out

    def _discover_migs(self, dev: Device) -> None:
        nv = self.nvml
        if dev.values.get("mig_mode") != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
            dev.migs = []
            return
        n = self._call(dev, "mig_count", nv.nvmlDeviceGetMaxMigDeviceCount, dev.handle)
        if n is None:
            return
        old = {m.uuid: m for m in dev.migs}
        migs: list[Device] = []
        for i in range(n):
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(dev.handle, i)
            except nv.NVMLError as e:
                if e.value == _NOT_FOUND:  # an empty slot
                    continue
                self._error(dev, "mig_handle", e)
                continue
            uuid = self._call(dev, "mig_uuid", nv.nvmlDeviceGetUUID, mh)
            if uuid is None:
                continue
            m = old.get(_text(uuid))
            if m is None:
                gi = self._call(dev, "mig_gi", nv.nvmlDeviceGetGpuInstanceId, mh)
                ci = self._call(dev, "mig_ci", nv.nvmlDeviceGetComputeInstanceId, mh)
                m = Device(dev.index, _text(uuid), mh, parent=dev, gi=gi, ci=ci)
            migs.append(m)
        dev.migs = migs

    def _call(self, dev: Device, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One NVML call; its value, or None after counting the error."""
        try:
            return fn(*args)
        except self.nvml.NVMLError as e:
            self._error(dev, key, e)
        except AttributeError:  # the bindings lack the function (older nvidia-ml-py)
            dev.unsupported.add(key)
            self._count("function_not_found")
        return None

    def _read(self, dev: Device, key: str, fn: Callable[[], Any], store: str | None = None) -> bool:
        """Read one field into dev.values[store or key]; False when absent this poll."""
        if key in dev.unsupported:
            return False
        try:
            dev.values[store or key] = fn()
            return True
        except self.nvml.NVMLError as e:
            self._error(dev, key, e)
        except AttributeError:
            dev.unsupported.add(key)
            self._count("function_not_found")
        return False

    def _error(self, dev: Device, key: str, e: Any) -> None:
        code = getattr(e, "value", None)
        self._count(self._class_of(e))
        if code in _PERMANENT:
            dev.unsupported.add(key)
        elif code == _GPU_IS_LOST:
            raise _GpuLost from None
        elif code in _NVML_DOWN:
            raise _NvmlDown from None

    def _class_of(self, e: Any) -> str:
        return self._codes.get(getattr(e, "value", -1), "unknown")

    def _count(self, cls: str) -> None:
        with self._lock:
            self._count_locked(cls)

    def _count_locked(self, cls: str) -> None:
        self._errors[cls] = self._errors.get(cls, 0) + 1

    # -- snapshot building (poll thread) ------------------------------------------------------

    def _all(self) -> Iterator[Device]:
        for d in self.devices:
            yield d
            yield from d.migs

    def _families(self) -> list[Metric]:
        util = GaugeMetricFamily("hw_gpu_utilization", "Fraction of time the GPU was busy (NVML).",
                                 labels=LABELS, unit="ratio")
        used = GaugeMetricFamily("hw_gpu_memory_usage", "GPU memory in use (NVML memory info v2).",
                                 labels=LABELS, unit="bytes")
        limit = GaugeMetricFamily("hw_gpu_memory_limit", "GPU memory size.", labels=LABELS, unit="bytes")
        mem_ratio = GaugeMetricFamily("hw_gpu_memory_utilization", "Fraction of GPU memory in use.",
                                      labels=LABELS, unit="ratio")
        power = GaugeMetricFamily("hw_power", "GPU power draw.", labels=LABELS, unit="watts")
        energy = CounterMetricFamily("hw_energy", "GPU energy used since the driver loaded.",
                                     labels=LABELS, unit="joules")
        temp = GaugeMetricFamily("hw_temperature", "GPU core temperature.", labels=LABELS, unit="celsius")
        errors = CounterMetricFamily("hw_errors", "Volatile ECC memory errors since the driver loaded.",
                                     labels=(*LABELS, "error_type"))
        clock = GaugeMetricFamily("llm_gpu_clock", "Current clock frequency, by clock domain.",
                                  labels=(*LABELS, "clock"), unit="hertz")
        plimit = GaugeMetricFamily("llm_gpu_power_limit", "Enforced power limit.", labels=LABELS,
                                   unit="watts")
        events = GaugeMetricFamily("llm_gpu_clock_event_reasons",
                                   "1 when this reason currently holds the clocks down (throttle reasons).",
                                   labels=(*LABELS, "reason"))
        procs = GaugeMetricFamily("llm_gpu_process_memory", "GPU memory used by a process (host pid).",
                                  labels=(*LABELS, "pid"), unit="bytes")
        info = GaugeMetricFamily("llm_gpu_info", "GPU identity and modes; always 1.", labels=INFO_LABELS)
        dev_up = GaugeMetricFamily("llm_exporter_gpu_device_up",
                                   "1 when the device answered the last poll, 0 when it is lost.",
                                   labels=LABELS)
        mig_enable = getattr(self.nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        ours = self._server_devices()
        for d in self._all():
            lab = d.labels
            dev_up.add_metric(lab, 0 if d.lost or (d.parent is not None and d.parent.lost) else 1)
            v = d.values
            if "utilization" in v:
                util.add_metric(lab, v["utilization"] / 100.0)
            mem = v.get("memory")
            if mem is not None:
                used.add_metric(lab, float(mem.used))
                limit.add_metric(lab, float(mem.total))
                if mem.total:
                    mem_ratio.add_metric(lab, mem.used / mem.total)
            if "power" in v:
                power.add_metric(lab, v["power"] / 1000.0)
            if "energy" in v and (ours is None or d in ours):
                energy.add_metric(lab, v["energy"] / 1000.0)
            if "temperature" in v:
                temp.add_metric(lab, float(v["temperature"]))
            for key, et in (("ecc_corrected", "corrected"), ("ecc_uncorrected", "uncorrected")):
                if key in v:
                    errors.add_metric([*lab, et], float(v[key]))
            for key, c in (("clock_sm", "sm"), ("clock_memory", "memory")):
                if key in v:
                    clock.add_metric([*lab, c], v[key] * 1e6)
            if "power_limit" in v:
                plimit.add_metric(lab, v["power_limit"] / 1000.0)
            if "clock_events" in v:
                mask = int(v["clock_events"])
                for reason, bit in CLOCK_EVENT_REASONS:
                    events.add_metric([*lab, reason], 1 if mask & bit else 0)
            for pid, n in sorted(v.get("processes", {}).items()):
                procs.add_metric([*lab, str(pid)], float(n))
            if d.lost:
                continue
            top = d.parent or d
            mig = top.values.get("mig_mode")
            pers = top.values.get("persistence_mode")
            info.add_metric([
                *lab, _text(v.get("name", "")), self._driver, _text(top.values.get("pci_bus_id", "")),
                "" if mig is None else ("enabled" if mig == mig_enable else "disabled"),
                "" if pers is None else ("enabled" if pers else "disabled"),
                d.parent.uuid if d.parent else "",
                "" if d.gi is None else str(d.gi), "" if d.ci is None else str(d.ci)], 1)
        return [util, used, limit, mem_ratio, power, energy, temp, errors, clock, plimit, events, procs,
                info, dev_up]

    def _server_devices(self) -> set[Device] | None:
        """The GPUs the watched server's processes hold memory on; None: every selected GPU (no
        per-process readings, or the server's pids are not known)."""
        if not self.processes or self.server_pids is None:
            return None
        try:
            pids = self.server_pids()
        except Exception:  # a /proc race must not cost the poll
            log.debug("server pids unreadable", exc_info=True)
            pids = None
        if pids is None:
            return None
        ours: set[Device] = set()
        for d in self.devices:
            for x in (d, *d.migs):
                if pids & set(x.values.get("processes", {})):
                    ours.add(d)
        return ours

    # -- exposition (scrape, any thread) ------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        with self._lock:
            snap = self._snap
            started = self._poll_started
            hung = started is not None and now - started > self.timeout
            if hung and self._timeout_counted != self._polls:
                self._count_locked("timeout")
                self._timeout_counted = self._polls
            errors = sorted(self._errors.items())
        late = snap.taken is not None and now - snap.taken > 2 * self.interval + self.timeout
        fams: list[Metric] = list(snap.families)
        up = GaugeMetricFamily("llm_exporter_gpu_up", "1 when NVML answered the last poll in time.")
        up.add_metric([], 1 if self.available and snap.ok and not hung and not late else 0)
        fams.append(up)
        if snap.taken is not None:
            age = GaugeMetricFamily("llm_exporter_gpu_snapshot_age",
                                    "Seconds since the GPU readings were taken.", unit="seconds")
            age.add_metric([], max(0.0, now - snap.taken))
            fams.append(age)
            dur = GaugeMetricFamily("llm_exporter_gpu_poll_duration",
                                    "How long the last NVML poll of every device took.", unit="seconds")
            dur.add_metric([], snap.duration or 0.0)
            fams.append(dur)
        err = CounterMetricFamily("llm_exporter_gpu_errors", "NVML errors, by NVML error class.",
                                  labels=("error",))
        for cls, n in errors:
            err.add_metric([cls], n)
        fams.append(err)
        return fams
