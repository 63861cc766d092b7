"""Never block the app: a producer writes N times faster than the exporter parses, for S seconds.

The producer is this script, writing whole application JSON log lines (bench/workload.py) into a
real `llm-exporter`'s stdin pipe at a paced rate of FACTOR x the measured parse rate, and timing
every `write()`: a write that takes long is the watched server being slowed by us. Figures: the
longest write stall and its 99.9th percentile, writes over 50 ms, lines written / counted /
dropped (every line must land in exactly one outcome), and the exporter's peak RSS sampled from
/proc.

    python -m bench.overload [--seconds 30] [--factor 5] [--json out.json]

The parse rate is measured first (the same daemon, fed a file as fast as it can parse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.inputs import app_logs
from bench.procs import Daemon, http_get, lines_by_outcome, rss_mb

BLOCK = 1 << 16


def load_lines(n: int) -> list[bytes]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "app.log"
        app_logs(path, n)
        return path.read_bytes().splitlines(keepends=True)


def parse_rate(lines: list[bytes]) -> float:
    """Lines per second the daemon parses when nothing else limits it (file on stdin: waits, no drops)."""
    with tempfile.TemporaryFile() as fh:
        fh.write(b"".join(lines))
        fh.seek(0)
        d = Daemon("--shutdown-grace", "60", stdin=os.dup(fh.fileno()))
        d.wait_ready()
        t0 = time.perf_counter()
        while True:
            got = sum(lines_by_outcome(http_get(d.port, "/metrics")[1]).values())
            if got >= len(lines):
                break
            time.sleep(0.01)
        rate = len(lines) / (time.perf_counter() - t0)
        d.proc.kill()
        d.proc.wait(30)
        return rate


def blocks(lines: list[bytes]) -> list[tuple[bytes, int]]:
    """The lines cut into whole-line blocks of about 64 KiB, with their line counts."""
    out, cur, n = [], bytearray(), 0
    for ln in lines:
        cur += ln
        n += 1
        if len(cur) >= BLOCK:
            out.append((bytes(cur), n))
            cur, n = bytearray(), 0
    if cur:
        out.append((bytes(cur), n))
    return out


def overload(lines: list[bytes], rate: float, factor: float, seconds: float) -> dict[str, Any]:
    target = rate * factor
    bl = blocks(lines)
    d = Daemon("--shutdown-grace", "30")
    d.wait_ready()
    rss: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                rss.append(rss_mb(d.pid))
            except OSError:
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stalls: list[float] = []
    written = 0
    fd = d._write_fd
    assert fd is not None
    t0 = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) - t0 < seconds:
        due = t0 + written / target
        if due > now:
            time.sleep(due - now)
        data, n = bl[i % len(bl)]
        i += 1
        w0 = time.perf_counter()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        stalls.append(time.perf_counter() - w0)
        written += n
    elapsed = time.perf_counter() - t0
    os.close(fd)
    d._write_fd = None
    deadline = time.monotonic() + 120
    outcomes: dict[str, float] = {}
    while time.monotonic() < deadline:
        outcomes = lines_by_outcome(http_get(d.port, "/metrics")[1])
        if sum(outcomes.values()) >= written:
            break
        time.sleep(0.1)
    done.set()
    d.proc.kill()
    d.proc.wait(30)
    stalls.sort()
    return {
        "parse_rate_lines_per_s": round(rate),
        "factor": factor,
        "target_lines_per_s": round(target),
        "achieved_lines_per_s": round(written / elapsed),
        "seconds": round(elapsed, 1),
        "writes": len(stalls),
        "max_write_stall_ms": round(stalls[-1] * 1000, 2),
        "write_stall_total_s": round(sum(stalls), 2),
        "p999_write_stall_ms": round(stalls[int(len(stalls) * 0.999)] * 1000, 2),
        "writes_over_50ms": sum(1 for s in stalls if s > 0.05),
        "lines_written": written,
        "lines_counted": int(sum(outcomes.values())),
        "lines_dropped": int(outcomes.get("dropped", 0)),
        "lines_parsed": int(sum(v for k, v in outcomes.items() if k != "dropped")),
        "rss_max_mib": round(max(rss), 1) if rss else None,
        "rss_start_mib": round(rss[0], 1) if rss else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--factor", type=float, default=5.0)
    p.add_argument("--lines", type=int, default=200_000, help="distinct lines, cycled")
    p.add_argument("--rate", type=float, help="skip measuring: the parse rate in lines/s")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--switchinterval", type=float,
                   help="run the daemon with this GIL switch interval instead of its own (an A/B check)")
    ns = p.parse_args(argv)
    if ns.switchinterval:
        procs.EXPORTER = [sys.executable, "-c", f"import sys; sys.setswitchinterval({ns.switchinterval}); "
                          "sys.setswitchinterval = lambda v: None; from llm_exporter.cli import main; sys.exit(main())"]
    lines = load_lines(ns.lines)
    rate = ns.rate or parse_rate(lines)
    res = overload(lines, rate, ns.factor, ns.seconds)
    res["switchinterval_s"] = ns.switchinterval or 0.001
    out = json.dumps(res, indent=2)
    print(out)
    if ns.json:
        Path(ns.json).write_text(out + "\n")
    ok = res["max_write_stall_ms"] <= 50 and res["lines_counted"] == res["lines_written"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
