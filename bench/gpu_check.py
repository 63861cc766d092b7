"""The GPU readings on a real NVIDIA GPU: the exporter against nvidia-smi, idle and under load.

    python bench/gpu_check.py [--gib 10] [--load-seconds 30] [--interval 0.5] [--out DIR]

1. Poll cost: the collector's own poll (fast fields every poll; slow fields as well), timed per
   GPU with the real nvidia-ml-py, and the cost of each NVML call it makes.
2. A real `python -m exporter --gpu on --gpu-processes` on a free port: /metrics scraped idle,
   then while a torch process holds about `--gib` GiB and runs bf16 matmuls, each scrape paired
   with `nvidia-smi --query-gpu=...` taken right after it (medians of the pairs compared).
3. Scrape time of /metrics during the load.

Prints a table with PASS/FAIL per check and writes it with the raw figures as JSON to `--out`.
Exit status 0 when every check passes. Needs a GPU, nvidia-smi and torch; the exporter's own
dependencies must be importable (see docs/gpu.md for running it on a borrowed machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
SMI_FIELDS = ("memory.used", "memory.total", "utilization.gpu", "power.draw", "temperature.gpu",
              "clocks.sm", "clocks.mem", "power.limit")

LOAD = r"""
import sys, time, torch
gib, seconds = float(sys.argv[1]), float(sys.argv[2])
hold = torch.empty(int(gib * (1 << 30)), dtype=torch.uint8, device="cuda")
hold.fill_(1)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
print("done", float(c[0, 0]), flush=True)
"""


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(xs: list[float]) -> str:
    return f"mean {statistics.fmean(xs) * 1e3:.2f} ms, p50 {pct(xs, .5) * 1e3:.2f}, p99 {pct(xs, .99) * 1e3:.2f}"


def smi() -> list[dict[str, float | None]]:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        rows.append({k: (float(v) if v.replace(".", "", 1).isdigit() else None) for k, v in zip(SMI_FIELDS, vals,
                                                                                                 strict=True)})
    return rows


def smi_apps() -> dict[int, float]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    apps: dict[int, float] = {}
    for line in out.strip().splitlines():
        pid, used = (v.strip() for v in line.split(","))
        if pid.isdigit() and used.isdigit():
            apps[int(pid)] = float(used) * MiB
    return apps


def scrape(url: str) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    dt = time.perf_counter() - t0
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, dt, len(body)


def get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    for (n, lab), v in samples.items():
        if n == name and all((k, val) in lab for k, val in labels.items()):
            return v
    return None


def poll_cost(reps: int) -> dict[str, Any]:
    """Time the collector's poll and each NVML call, in this process, with the real bindings."""
    import pynvml

    from llm_exporter.collectors.gpu import GpuCollector

    res: dict[str, Any] = {}
    fast = GpuCollector(pynvml, interval=1.0, slow_interval=1e9, processes=True)
    assert fast.init(), fast.reason
    full = GpuCollector(pynvml, interval=1.0, slow_interval=1.0, processes=True)
    assert full.init(), full.reason
    n = len(fast.devices)
    res["gpus"] = n
    for name, c in (("fast poll (every --gpu-interval)", fast), ("full poll (fast + slow fields)", full)):
        c.poll()  # the first poll reads everything
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            c.poll()
            ts.append((time.perf_counter() - t0) / n)
        res[name] = ts
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    calls = {
        "nvmlDeviceGetUtilizationRates": lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
        "nvmlDeviceGetMemoryInfo v2": lambda: pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2),
        "nvmlDeviceGetPowerUsage": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
        "nvmlDeviceGetTemperatureV": lambda: pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetClockInfo (SM)": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "nvmlDeviceGetCurrentClocksEventReasons": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
        "nvmlDeviceGetComputeRunningProcesses": lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(h),
        "nvmlDeviceGetTotalEnergyConsumption (slow)": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
        "nvmlDeviceGetTotalEccErrors (slow)": lambda: pynvml.nvmlDeviceGetTotalEccErrors(
            h, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC),
        "nvmlDeviceGetEnforcedPowerLimit (slow)": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h),
    }
    per_call = {}
    for name, fn in calls.items():
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            try:
                fn()
            except pynvml.NVMLError as e:
                per_call[name] = f"error: {e}"
                break
            ts.append(time.perf_counter() - t0)
        else:
            per_call[name] = ts
    res["calls"] = per_call
    mem1 = pynvml.nvmlDeviceGetMemoryInfo(h)
    mem2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    res["memory_v1_used"] = mem1.used
    res["memory_v2_used"] = mem2.used
    res["memory_v2_reserved"] = mem2.reserved
    res["unsupported"] = sorted(full.devices[0].unsupported)
    fast.stop()
    full.stop()
    return res


class Checks:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool]] = []

    def add(self, name: str, ours: str, smi_: str, ok: bool) -> None:
        self.rows.append((name, ours, smi_, ok))

    def print(self) -> None:
        w = max(len(r[0]) for r in self.rows)
        w1 = max(len(r[1]) for r in self.rows)
        w2 = max(len(r[2]) for r in self.rows)
        print(f"{'check':<{w}}  {'exporter':>{w1}}  {'nvidia-smi':>{w2}}  result")
        for name, ours, theirs, ok in self.rows:
            print(f"{name:<{w}}  {ours:>{w1}}  {theirs:>{w2}}  {'PASS' if ok else 'FAIL'}")

    @property
    def ok(self) -> bool:
        return all(r[3] for r in self.rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pairs(url: str, n: int, gap: float, uuid: str) -> list[dict[str, Any]]:
    """n (scrape, nvidia-smi) pairs, gap seconds apart."""
    out = []
    for _ in range(n):
        s, dt, _size = scrape(url)
        row = smi()[0]
        out.append({"scrape_s": dt,
                    "used": get(s, "hw_gpu_memory_usage_bytes", hw_id=uuid),
                    "util": get(s, "hw_gpu_utilization_ratio", hw_id=uuid),
                    "power": get(s, "hw_power_watts", hw_id=uuid),
                    "temp": get(s, "hw_temperature_celsius", hw_id=uuid),
                    "sm": get(s, "llm_gpu_clock_hertz", hw_id=uuid, clock="sm"),
                    "up": get(s, "llm_exporter_gpu_up"),
                    "poll_s": get(s, "llm_exporter_gpu_poll_duration_seconds"),
                    "energy": get(s, "hw_energy_joules_total", hw_id=uuid),
                    "smi": row, "samples": s})
        time.sleep(gap)
    return out


def med(rows: list[dict[str, Any]], key: str, smi_key: str | None = None) -> float:
    vals = [r["smi"][smi_key] if smi_key else r[key] for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=10.0, help="GiB the load holds (10)")
    ap.add_argument("--load-seconds", type=float, default=30.0, help="how long the load runs (30)")
    ap.add_argument("--interval", type=float, default=0.5, help="the exporter's --gpu-interval (0.5)")
    ap.add_argument("--reps", type=int, default=200, help="timed polls and calls per figure (200)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the JSON goes")
    args = ap.parse_args()
    if shutil.which("nvidia-smi") is None:
        print("gpu_check: nvidia-smi not found; this check needs a real NVIDIA GPU", file=sys.stderr)
        return 2
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
    print(subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip().splitlines()[0], "(driver)")
    report: dict[str, Any] = {}

    # 1. poll cost
    cost = poll_cost(args.reps)
    polls = ("fast poll (every --gpu-interval)", "full poll (fast + slow fields)")
    report["poll_cost"] = {k: (v if k not in polls else {"mean": statistics.fmean(v), "p99": pct(v, .99)})
                           for k, v in cost.items() if k != "calls"}
    print(f"\n== NVML poll cost ({cost['gpus']} GPU(s), {args.reps} polls, per GPU) ==")
    for k in polls:
        print(f"{k:<44} {ms(cost[k])}")
    print("-- per call, GPU 0 --")
    for k, v in cost["calls"].items():
        print(f"{k:<44} {ms(v) if isinstance(v, list) else v}")
    report["calls"] = {k: ({"mean": statistics.fmean(v), "p99": pct(v, .99)} if isinstance(v, list) else v)
                       for k, v in cost["calls"].items()}
    print(f"memory info v1 used {cost['memory_v1_used'] / MiB:.0f} MiB, v2 used {cost['memory_v2_used'] / MiB:.0f}"
          f" MiB, v2 reserved {cost['memory_v2_reserved'] / MiB:.0f} MiB; unsupported: {cost['unsupported']}")

    # 2. the exporter, idle then under load
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    exp = subprocess.Popen([sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{port}", "--gpu", "on",
                            "--gpu-processes", "--gpu-interval", str(args.interval), "--no-passthrough"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           cwd=ROOT)
    load: subprocess.Popen[str] | None = None
    checks = Checks()
    try:
        deadline = time.monotonic() + 60
        while True:
            if exp.poll() is not None:
                assert exp.stderr is not None
                print("exporter exited:", exp.stderr.read().decode(), file=sys.stderr)
                return 1
            try:
                s, _, _ = scrape(url)
                if get(s, "llm_exporter_gpu_up") == 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print("exporter never reported gpu_up 1", file=sys.stderr)
                return 1
            time.sleep(0.1)
        uuid = next(dict(lab)["hw_id"] for (n, lab) in s if n == "hw_gpu_memory_limit_bytes"
                    and dict(lab)["gpu"] == "0")
        time.sleep(2 * args.interval)
        idle = pairs(url, 5, args.interval, uuid)
        load = subprocess.Popen([sys.executable, "-c", LOAD, str(args.gib), str(args.load_seconds)],
                                stdout=subprocess.PIPE, text=True)
        assert load.stdout is not None
        line = load.stdout.readline().strip()
        if line != "ready":
            print(f"load did not start: {line!r}", file=sys.stderr)
            return 1
        time.sleep(4.0)  # utilisation and the 1 s power average settle
        busy = pairs(url, 10, args.interval, uuid)
        apps = smi_apps()
        with urllib.request.urlopen(url, timeout=10) as r:
            exposition = r.read().decode()
        s, _, _ = scrape(url)
        ours_proc = get(s, "llm_gpu_process_memory_bytes", hw_id=uuid, pid=str(load.pid))
        scrape_times = []
        size = 0
        for _ in range(args.reps):
            _, dt, size = scrape(url)
            scrape_times.append(dt)
        load.wait(timeout=args.load_seconds + 120)
        time.sleep(4 * args.interval)
        after, _, _ = scrape(url)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        exp.terminate()
        try:
            exp.wait(15)
        except subprocess.TimeoutExpired:
            exp.kill()

    limit = get(s, "hw_gpu_memory_limit_bytes", hw_id=uuid) or 0.0
    tol_mem = max(64 * MiB, 0.01 * limit)  # 1% of the card, at least 64 MiB
    for label, rows in (("idle", idle), ("load", busy)):
        ours, theirs = med(rows, "used"), med(rows, "", "memory.used") * MiB
        checks.add(f"memory used, {label} (MiB)", f"{ours / MiB:.0f}", f"{theirs / MiB:.0f}",
                   abs(ours - theirs) <= tol_mem)
    grow = med(busy, "used") - med(idle, "used")
    checks.add("memory used grew by >= --gib (GiB)", f"{grow / GiB:.2f}",
               f"{(med(busy, '', 'memory.used') - med(idle, '', 'memory.used')) / 1024:.2f}", grow >= args.gib * GiB)
    u_idle, u_busy = med(idle, "util") * 100, med(busy, "util") * 100
    s_idle, s_busy = med(idle, "", "utilization.gpu"), med(busy, "", "utilization.gpu")
    checks.add("utilisation, idle (%)", f"{u_idle:.0f}", f"{s_idle:.0f}", abs(u_idle - s_idle) <= 10)
    checks.add("utilisation, load (%)", f"{u_busy:.0f}", f"{s_busy:.0f}", u_busy >= 80 and abs(u_busy - s_busy) <= 15)
    p_idle, p_busy = med(idle, "power"), med(busy, "power")
    sp_idle, sp_busy = med(idle, "", "power.draw"), med(busy, "", "power.draw")
    checks.add("power, idle (W)", f"{p_idle:.0f}", f"{sp_idle:.0f}", abs(p_idle - sp_idle) <= max(20, .15 * sp_idle))
    checks.add("power, load (W)", f"{p_busy:.0f}", f"{sp_busy:.0f}",
               p_busy > p_idle + 50 and abs(p_busy - sp_busy) <= max(20, .15 * sp_busy))
    t_busy, st_busy = med(busy, "temp"), med(busy, "", "temperature.gpu")
    checks.add("temperature, load (°C)", f"{t_busy:.0f}", f"{st_busy:.0f}", abs(t_busy - st_busy) <= 3)
    c_busy, sc_busy = med(busy, "sm") / 1e6, med(busy, "", "clocks.sm")
    checks.add("SM clock, load (MHz)", f"{c_busy:.0f}", f"{sc_busy:.0f}", abs(c_busy - sc_busy) <= .05 * sc_busy)
    theirs_proc = apps.get(load.pid) if load is not None else None
    checks.add(f"process memory, load pid {load.pid if load else '?'} (MiB)",
               "absent" if ours_proc is None else f"{ours_proc / MiB:.0f}",
               "absent" if theirs_proc is None else f"{theirs_proc / MiB:.0f}",
               ours_proc is not None and theirs_proc is not None and abs(ours_proc - theirs_proc) <= 64 * MiB
               and ours_proc >= args.gib * GiB)
    gone = get(after, "llm_gpu_process_memory_bytes", hw_id=uuid, pid=str(load.pid) if load else "")
    checks.add("process memory gone after the load", "absent" if gone is None else f"{gone / MiB:.0f}", "-",
               gone is None)
    ups = [r["up"] for r in idle + busy]
    checks.add("llm_exporter_gpu_up at every scrape", f"{min(ups):.0f}", "-", all(u == 1 for u in ups))
    e0, e1 = get(idle[0]["samples"], "hw_energy_joules_total", hw_id=uuid), get(after, "hw_energy_joules_total",
                                                                                   hw_id=uuid)
    checks.add("energy counter did not go down (J)", f"{(e1 or 0) - (e0 or 0):.0f}", "-",
               e0 is not None and e1 is not None and e1 >= e0)
    scr = statistics.median(scrape_times)
    checks.add("scrape during load, median (ms)", f"{scr * 1e3:.2f}", "-", scr < 0.05)
    in_exporter = [r["poll_s"] for r in busy if r["poll_s"] is not None]
    print(f"\n== exporter against nvidia-smi (medians of {len(idle)} idle and {len(busy)} loaded pairs; "
          f"load: {args.gib:g} GiB + bf16 8192^3 matmuls) ==")
    checks.print()
    print(f"\nscrape of /metrics during load: {ms(scrape_times)} ({args.reps} scrapes, {size} bytes)")
    print(f"poll inside the exporter during load (llm_exporter_gpu_poll_duration_seconds): {ms(in_exporter)}")
    report["checks"] = [{"check": n, "exporter": o, "nvidia_smi": t, "pass": ok} for n, o, t, ok in checks.rows]
    report["scrape"] = {"mean": statistics.fmean(scrape_times), "p99": pct(scrape_times, .99), "bytes": size}
    report["pairs"] = [{k: v for k, v in r.items() if k != "samples"} for r in idle + busy]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "metrics_under_load.txt").write_text(exposition)
    print("\nRESULT:", "PASS" if checks.ok else "FAIL")
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
