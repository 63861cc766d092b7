"""GPU energy and energy per output token on a real NVIDIA GPU: the exporter against nvidia-smi.

    python bench/energy_check.py [--load-seconds 60] [--idle-seconds 15] [--rate 100] [--tokens 50] [--out DIR]

One child process (torch) idles, then runs bf16 8192^3 matmuls on GPU 0 for `--load-seconds`
while printing `--rate` application JSON lines a second, each with `--tokens` output tokens (a
synthetic token stream of known size), then idles again. Two real exporters read it:

- A, wrapper mode: `llm-exporter --gpu on --gpu-processes -- python load.py`: the child's stdout
  is the token stream, and energy is attributed to the GPUs the child's process tree uses;
- B, file mode: `llm-exporter --gpu on --gpu-devices 0 --file stream.log`: the same lines from
  the file the child also writes, energy from the named GPU.

Meanwhile `nvidia-smi --query-gpu=timestamp,power.draw[,power.draw.instant] -lms 100` samples the
board's power. Checks (each exporter): the increase of `hw_energy_joules_total` between a scrape
in the idle time before the load and one after it, against the trapezoid integral of nvidia-smi's
power over the same interval (the readings' own times: scrape time minus
`llm_exporter_gpu_snapshot_age_seconds`), within 5 %; the output tokens counted against the tokens
fed; the page's energy per output token (`/api/dashboard` `energy`) against the nvidia-smi
integral over the page's own interval divided by the tokens fed, within 5 %; and the recording
rule's arithmetic (increase of energy / increase of `gen_ai_client_token_usage_sum{output}`)
from the two scrapes.

Prints a table and writes it with the raw figures to `--out`/energy_check.json. Exit 0 when every
check passes. Needs nvidia-smi, torch and the exporter's dependencies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.05

LOAD = r"""
import json, os, sys, time
import torch
idle, seconds, rate, tokens, stream_path, info_path = sys.argv[1:7]
idle, seconds, rate, tokens = float(idle), float(seconds), float(rate), int(tokens)
stream = open(stream_path, "w")
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
c = a @ b
torch.cuda.synchronize()
info = {"ready": time.time()}
json.dump(info, open(info_path + ".ready", "w"))
time.sleep(idle)
n = 0
info["load_start"] = time.time()
start = time.monotonic()
end = start + seconds
while time.monotonic() < end:
    for _ in range(5):
        c = a @ b
    torch.cuda.synchronize()
    due = min(int((time.monotonic() - start) * rate), int(seconds * rate))
    while n < due:
        line = json.dumps({"request_id": f"r{n}", "model": "synthetic", "status": "success",
                           "input_tokens": 10, "output_tokens": tokens, "duration_ms": 250})
        print(line, flush=True)
        stream.write(line + "\n")
        stream.flush()
        n += 1
info["load_end"] = time.time()
info["lines"] = n
info["tokens"] = n * tokens
info["checksum"] = float(c[0, 0])
time.sleep(idle)
info["end"] = time.time()
json.dump(info, open(info_path, "w"))
while not os.path.exists(info_path + ".release"):  # stay (with the GPU context) until the last scrape
    time.sleep(0.1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def scrape(port: int) -> tuple[float, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """(when, samples) of one /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    t = time.time()
    body = http(f"http://127.0.0.1:{port}/metrics").decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return t, out


def values(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> list[float]:
    return [v for (n, lab), v in samples.items() if n == name and all((k, x) in lab for k, x in labels.items())]


class PowerLog:
    """nvidia-smi sampling GPU 0's power every 100 ms, on a thread; (epoch seconds, watts) rows."""

    def __init__(self) -> None:
        fields = "timestamp,power.draw,power.draw.instant"
        probe = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", "0"],
                               capture_output=True, text=True)
        if probe.returncode != 0 or "not a valid field" in probe.stdout + probe.stderr:
            fields = "timestamp,power.draw"
        self.fields = fields
        self.rows: list[tuple[float, float, float | None]] = []
        self.proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                                      "-i", "0", "-lms", "100"], stdout=subprocess.PIPE, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                w = float(parts[1])
                inst = float(parts[2]) if len(parts) > 2 and parts[2] not in ("", "[N/A]", "N/A") else None
            except (ValueError, IndexError):
                continue
            self.rows.append((t, w, inst))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def integral(self, t0: float, t1: float, column: int = 1) -> float | None:
        """Trapezoid integral of the power column over [t0, t1] (linear between samples)."""
        pts: list[tuple[float, float]] = []
        for r in self.rows:
            w = r[column]
            if w is not None:
                pts.append((r[0], w))
        if len(pts) < 2 or pts[0][0] > t0 or pts[-1][0] < t1:
            return None

        def at(t: float) -> float:
            for (ta, wa), (tb, wb) in itertools.pairwise(pts):
                if ta <= t <= tb:
                    return wa if tb == ta else wa + (wb - wa) * (t - ta) / (tb - ta)
            return pts[-1][1]

        inner = [(t, w) for t, w in pts if t0 < t < t1]
        seq = [(t0, at(t0)), *inner, (t1, at(t1))]
        return sum((tb - ta) * (wa + wb) / 2 for (ta, wa), (tb, wb) in itertools.pairwise(seq))


def energy_reading(port: int) -> dict[str, Any]:
    """A scrape's summed hw_energy_joules_total, the time it was read by NVML, and the counts."""
    t, s = scrape(port)
    age = (values(s, "llm_exporter_gpu_snapshot_age_seconds") or [0.0])[0]
    e = values(s, "hw_energy_joules_total")
    return {"scraped": t, "read": t - age, "joules": sum(e) if e else None, "gpus_with_energy": len(e),
            "output_tokens": sum(values(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output")),
            "requests": sum(values(s, "llm_requests_total")),
            "process_pids": sorted({dict(k[1]).get("pid", "") for k in s if k[0] == "llm_gpu_process_memory_bytes"}),
            "power_w": values(s, "hw_power_watts")}


def energy_call_cost(reps: int = 200) -> dict[str, float]:
    """Milliseconds one nvmlDeviceGetTotalEnergyConsumption call takes (the collector now makes it
    every poll): mean, p50, p99 over `reps` calls on GPU 0."""
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        ts.append((time.perf_counter() - t0) * 1e3)
    pynvml.nvmlShutdown()
    ts.sort()
    return {"mean": sum(ts) / len(ts), "p50": ts[len(ts) // 2], "p99": ts[min(len(ts) - 1, int(len(ts) * 0.99))]}


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def ready(port: int) -> bool:
    try:
        return http(f"http://127.0.0.1:{port}/readyz") is not None
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--idle-seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=100.0, help="lines a second during the load")
    ap.add_argument("--tokens", type=int, default=50, help="output tokens per line")
    ap.add_argument("--interval", type=float, default=0.5, help="--gpu-interval of the exporters")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="energy-check-"))
    stream, info = work / "stream.log", work / "info.json"
    stream.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    exe = [sys.executable, "-m", "llm_exporter", "--gpu", "on", "--gpu-interval", str(args.interval),
           "--log-level", "info"]
    pa, pb = free_port(), free_port()
    cost = energy_call_cost()
    power = PowerLog()
    time.sleep(1.0)
    load = [sys.executable, "-c", LOAD, str(args.idle_seconds), str(args.load_seconds), str(args.rate),
            str(args.tokens), str(stream), str(info)]
    with open(work / "a.err", "wb") as ea, open(work / "b.err", "wb") as eb:
        a = subprocess.Popen([*exe, "--gpu-processes", "--listen", f"127.0.0.1:{pa}", "--", *load], env=env,
                             stdout=subprocess.DEVNULL, stderr=ea)
        b = subprocess.Popen([*exe, "--gpu-devices", "0", "--file", str(stream), "--file-start", "beginning",
                              "--listen", f"127.0.0.1:{pb}"], env=env, stdout=subprocess.DEVNULL, stderr=eb)
    result: dict[str, Any] = {"args": vars(args) | {"out": str(args.out)}, "power_fields": power.fields,
                              "energy_call_ms": cost}
    try:
        wait_for(lambda: ready(pa) and ready(pb), 120, "both exporters ready")
        wait_for(lambda: (work / "info.json.ready").exists(), 300, "the load process (CUDA up)")
        time.sleep(min(3.0, args.idle_seconds / 3) + args.interval)
        before = {"A": energy_reading(pa), "B": energy_reading(pb)}
        wait_for(info.exists, args.idle_seconds + args.load_seconds + 600, "the load to finish")
        time.sleep(args.interval + 0.5)
        after = {"A": energy_reading(pa), "B": energy_reading(pb)}
        pages = {"A": json.loads(http(f"http://127.0.0.1:{pa}/api/dashboard"))["energy"],
                 "B": json.loads(http(f"http://127.0.0.1:{pb}/api/dashboard"))["energy"]}
    finally:
        (work / "info.json.release").touch()
        time.sleep(0.5)
        power.stop()
        for p in (a, b):
            p.terminate()
        for p in (a, b):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    load_info = json.loads(info.read_text())
    fed = load_info["tokens"]
    rows: list[tuple[str, str, str, str]] = []
    ok = True

    def check(name: str, ours: float | None, ref: float | None, tol: float | None, fmt: str = "{:.1f}") -> None:
        nonlocal ok
        good = ours is not None and ref is not None and (
            ours == ref if tol is None else abs(ours - ref) <= tol * abs(ref))
        ok = ok and good
        diff = "" if ours is None or ref is None or not ref else f"{(ours - ref) / ref * 100:+.2f} %"
        rows.append((name, "-" if ours is None else fmt.format(ours), "-" if ref is None else fmt.format(ref),
                     ("PASS" if good else "FAIL") + (f" ({diff})" if diff else "")))

    smi = power.rows
    idle_w = [w for t, w, _ in smi if t < load_info["load_start"] - 1]
    load_w = [w for t, w, _ in smi if load_info["load_start"] + 5 < t < load_info["load_end"] - 1]
    result.update(load=load_info, before=before, after=after, pages=pages, smi_samples=len(smi),
                  idle_watts_median=sorted(idle_w)[len(idle_w) // 2] if idle_w else None,
                  load_watts_median=sorted(load_w)[len(load_w) // 2] if load_w else None)
    for name in ("B", "A"):
        x0, x1, pg = before[name], after[name], pages[name]
        label = {"A": "A (wrapper, --gpu-processes)", "B": "B (--gpu-devices 0, file)"}[name]
        e_ours = None if x0["joules"] is None or x1["joules"] is None else x1["joules"] - x0["joules"]
        e_smi = power.integral(x0["read"], x1["read"])
        check(f"{label}: energy over the load (J)", e_ours, e_smi, TOLERANCE, "{:.0f}")
        if "instant" in power.fields:
            e_inst = power.integral(x0["read"], x1["read"], column=2)
            rows.append((f"{label}: same, vs power.draw.instant (J)", "" if e_ours is None else f"{e_ours:.0f}",
                         "-" if e_inst is None else f"{e_inst:.0f}",
                         "" if e_ours is None or not e_inst else f"({(e_ours - e_inst) / e_inst * 100:+.2f} %)"))
        check(f"{label}: output tokens counted", x1["output_tokens"] - x0["output_tokens"], float(fed), None, "{:.0f}")
        rule = None if e_ours is None or not (x1["output_tokens"] - x0["output_tokens"]) else \
            e_ours / (x1["output_tokens"] - x0["output_tokens"])
        ref = None if e_smi is None else e_smi / fed
        check(f"{label}: rule arithmetic, J per output token", rule, ref, TOLERANCE, "{:.4f}")
        page_ref = None
        if pg.get("since") is not None and pg.get("until") is not None and \
                pg["since"] < load_info["load_start"] and pg["until"] > load_info["load_end"]:
            i = power.integral(pg["since"], pg["until"])
            page_ref = None if i is None else i / fed
        check(f"{label}: page J per output token (15 min)", pg.get("joules_per_output_token"), page_ref, TOLERANCE,
              "{:.4f}")
    result["rows"] = rows
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"GPU 0 power (nvidia-smi, median): idle {result['idle_watts_median']} W, "
          f"load {result['load_watts_median']} W; {len(smi)} samples ({power.fields})")
    print(f"load: {args.load_seconds:.0f} s of bf16 8192^3 matmuls; fed {load_info['lines']} lines, {fed} output "
          f"tokens; load {load_info['load_end'] - load_info['load_start']:.2f} s")
    print(f"nvmlDeviceGetTotalEnergyConsumption: mean {cost['mean']:.2f} ms, p50 {cost['p50']:.2f}, "
          f"p99 {cost['p99']:.2f} (200 calls)")
    print(f"A saw GPU processes (pids): {after['A']['process_pids']}; energy series exported: "
          f"A {after['A']['gpus_with_energy']}, B {after['B']['gpus_with_energy']}")
    print(f"{'check':<{w[0]}}  {'exporter':>{w[1]}}  {'nvidia-smi':>{w[2]}}  result")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]}")
    print("RESULT:", "PASS" if ok else "FAIL")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "energy_check.json").write_text(json.dumps(result, indent=1, default=str))
        for f in ("a.err", "b.err"):
            (args.out / f"exporter_{f[0]}.log").write_bytes((work / f).read_bytes()[-200_000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
