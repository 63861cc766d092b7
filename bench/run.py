"""`make bench`: llm-exporter against mtail, a hand-written exporter and reference limits.

Everything runs in one process tree on this machine, in one run: the contenders read the same
input file, interleaved (each round runs them all, in a rotated order), and the report gives
medians over the rounds and ratios between contenders, because absolute figures on a shared
machine are noisy while ratios taken side by side are not. Then the daemon alone: CPU at a steady
request rate, RSS over a long run with many distinct request ids, passthrough against `cat`,
/metrics scrape time with many series, start-up time to /readyz.

    python -m bench.run [--quick | --smoke] [--json PATH] [--only SECTIONS]

Prints a table and writes the figures as JSON (default bench/results/bench-MODE.json). Every input
is in the repository: the application logs come from bench/workload.py, the server text mix from
the real vLLM and TGI lines in tests/fixtures/samples, the peers are mtail with the programs in
bench/mtail/ (app.mtail for the application logs, server.mtail for the server mix) and the
hand-written exporter bench/baseline_exporter.py. Without mtail a full run stops with one clear
line; a smoke run skips it and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import inputs
from bench.procs import (
    EXPORTER,
    ROOT,
    Daemon,
    Measured,
    cpu_seconds,
    rss_mb,
    run_measured,
    wait_measured,
)

BENCH = ROOT / "bench"
MTAIL_APP = BENCH / "mtail" / "app.mtail"  # the application JSON shapes, by regular expressions
MTAIL_SERVER = BENCH / "mtail" / "server.mtail"  # TGI Success timings, vLLM stats, access lines
BASELINE = BENCH / "baseline_exporter.py"  # json.loads + prometheus-client, written by hand

ORJSON_ONLY = """
import sys, orjson
loads, bad = orjson.loads, orjson.JSONDecodeError
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        try:
            loads(line)
        except bad:
            pass
"""


@dataclass(frozen=True)
class Mode:
    """How big each part of a run is."""

    name: str
    lines: int  # the application JSON log file
    mix_lines: int
    rounds: int
    steady_rate: int  # requests per second
    steady_seconds: float
    rss_lines: int
    rss_ids: int
    passthrough_lines: int
    passthrough_rounds: int
    scrape_series: int
    scrapes: int
    starts: int


MODES = {
    "full": Mode("full", 200_000, 200_000, 5, 1000, 60.0, 10_000_000, 1_000_000, 200_000, 5, 10_000, 25, 5),
    "quick": Mode("quick", 200_000, 100_000, 3, 1000, 20.0, 1_000_000, 100_000, 100_000, 3, 10_000, 15, 3),
    "smoke": Mode("smoke", 2_000, 2_000, 1, 200, 1.0, 20_000, 2_000, 2_000, 1, 500, 3, 1),
}


class Missing(Exception):
    """An input or tool the run needs is not on this machine."""


class Bench:
    def __init__(self, mode: Mode, work: Path, log: Callable[[str], None]) -> None:
        self.mode = mode
        self.work = work
        self.log = log
        self.skipped: dict[str, str] = {}

    # -- contenders -----------------------------------------------------------------------------

    def contenders(self, mtail_program: Path) -> dict[str, Callable[[Path], Measured]]:
        """Everyone who reads the file; mtail runs `mtail_program` (the one written for this input)."""
        out: dict[str, Callable[[Path], Measured]] = {
            "llm-exporter replay": self.replay,
            "llm-exporter pipe": self.pipe,
        }
        mtail = shutil.which("mtail")
        if mtail is None:
            self.missing("mtail", "mtail not installed (make tools installs Debian's mtail)")
        else:
            out["mtail"] = lambda path: self.mtail(mtail, mtail_program, path)
        out["baseline exporter"] = lambda path: self.baseline(path)
        out["cat"] = lambda path: run_measured(["cat", str(path)])
        out["orjson.loads alone"] = lambda path: run_measured([sys.executable, "-c", ORJSON_ONLY, str(path)])
        return out

    def missing(self, what: str, why: str) -> None:
        if self.mode.name != "smoke":
            raise Missing(why)
        self.skipped[what] = why

    def replay(self, path: Path) -> Measured:
        return run_measured([*EXPORTER, "replay", str(path)])

    def pipe(self, path: Path) -> Measured:
        """`cat FILE | llm-exporter > /dev/null`, timed from the first byte to the exit at EOF.

        The parse queue is made larger than the file, so that every line is parsed (none
        dropped) and the time is the parser's; start-up is left out (see `startup`)."""
        r, w = os.pipe()
        d = Daemon("--queue-chunks", "1000000", stdin=r)
        try:
            d.wait_ready()
            cpu0 = cpu_seconds(d.pid)
            t0 = time.perf_counter()
            feeder = subprocess.Popen(["cat", str(path)], stdout=w)
            os.close(w)
            m = wait_measured(d.proc, t0, timeout=600)
            feeder.wait()
        finally:
            d.__exit__()
        m.cpu_s -= cpu0
        return m

    def pipe_outcomes(self, path: Path, lines: int) -> dict[str, float]:
        """One untimed pipe run that scrapes the line outcomes before EOF (a check, not a figure)."""
        r, w = os.pipe()
        keep = os.dup(w)  # the daemon sees EOF only when we close this too
        with Daemon("--queue-chunks", "1000000", stdin=r) as d:
            d.wait_ready()
            subprocess.run(["cat", str(path)], stdout=w, check=True)
            os.close(w)
            got = d.wait_lines(lines, poll=0.2)
            os.close(keep)
            d.finish()
        return got

    def mtail(self, mtail: str, program: Path, path: Path) -> Measured:
        return run_measured([mtail, "--one_shot", "--one_shot_format", "prometheus", "--progs", str(program),
                             "--logs", str(path), "--address", "127.0.0.1", "--port", "0", "--logtostderr",
                             "--stderrthreshold", "FATAL"])

    def baseline(self, path: Path) -> Measured:
        with path.open("rb") as fh:
            return run_measured([sys.executable, str(BASELINE)], stdin=fh)

    # -- sections -------------------------------------------------------------------------------

    def throughput(self, name: str, path: Path, lines: int, mtail_program: Path) -> dict[str, Any]:
        contenders = self.contenders(mtail_program)
        runs: dict[str, list[Measured]] = {c: [] for c in contenders}
        names = list(contenders)
        for rnd in range(self.mode.rounds):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            for c in order:
                m = contenders[c](path)
                if m.rc != 0:
                    raise RuntimeError(f"{c} exited {m.rc} on {path.name}: {m.stderr.strip()[-400:]}")
                runs[c].append(m)
            self.log(f"  {name}: round {rnd + 1}/{self.mode.rounds} done")
        out: dict[str, Any] = {"lines": lines, "bytes": path.stat().st_size, "contenders": {},
                               "mtail_program": str(mtail_program.relative_to(ROOT))}
        for c, ms in runs.items():
            wall = statistics.median(m.wall_s for m in ms)
            cpu = statistics.median(m.cpu_s for m in ms)
            out["contenders"][c] = {
                "lines_per_s": lines / wall, "wall_s": wall, "cpu_s": cpu,
                "lines_per_cpu_s": lines / cpu if cpu > 0 else None,
                "peak_rss_mb": max(m.peak_rss_mb for m in ms),
                "runs": [{k: v for k, v in asdict(m).items() if k != "stderr"} for m in ms],
            }
        out["replay_outcomes"] = _replay_outcomes(runs["llm-exporter replay"][-1].stderr)
        out["pipe_outcomes"] = self.pipe_outcomes(path, lines)
        for key, figure in (("ratios", "lines_per_s"), ("ratios_cpu", "lines_per_cpu_s")):
            rate = {c: v[figure] for c, v in out["contenders"].items()}
            out[key] = {
                f"{ours} / {other}": rate[ours] / rate[other]
                for ours in ("llm-exporter pipe", "llm-exporter replay")
                for other in ("mtail", "baseline exporter", "orjson.loads alone") if rate.get(other)
            }
        return out

    def steady_cpu(self) -> dict[str, Any]:
        """CPU share of one core while requests arrive at a steady rate (scraped every 15 s):
        once written a line at a time (what an app's logging does: one write per record), once
        in 10 ms batches (an app or a collector that buffers its output)."""
        return {"line_writes": self._steady(0.001), "batched_10ms": self._steady(0.01)}

    def _steady(self, tick: float) -> dict[str, Any]:
        rate, seconds = self.mode.steady_rate, self.mode.steady_seconds
        stream = inputs.RequestStream(distinct=1 << 30)
        with Daemon() as d:
            d.wait_ready()
            written = 0
            writes = 0

            def feed(duration: float) -> None:
                nonlocal written, writes
                start, done = time.perf_counter(), written
                next_scrape = start + 15.0
                while (now := time.perf_counter()) - start < duration:
                    due = done + int((now - start) * rate) + 1
                    if due > written:
                        d.write(stream.chunk(written, due - written))
                        written = due
                        writes += 1
                    if now >= next_scrape:
                        d.scrape()
                        next_scrape += 15.0
                    time.sleep(tick)

            feed(min(2.0, seconds))  # warm-up: first shapes, first series
            d.wait_lines(written)
            base, writes = written, 0
            cpu0, t0 = cpu_seconds(d.pid), time.perf_counter()
            feed(seconds)
            cpu1, t1 = cpu_seconds(d.pid), time.perf_counter()
            outcomes = d.wait_lines(written)
            d.finish()
        measured = written - base
        return {"requests_per_s": measured / (t1 - t0), "writes_per_s": writes / (t1 - t0),
                "seconds": t1 - t0, "cpu_s": cpu1 - cpu0, "cpu_percent_of_core": 100 * (cpu1 - cpu0) / (t1 - t0),
                "outcomes": outcomes, "cpu_time_resolution_s": 1 / os.sysconf("SC_CLK_TCK")}

    def rss(self) -> dict[str, Any]:
        """RSS while many lines with many distinct request ids go through the daemon."""
        total, ids = self.mode.rss_lines, self.mode.rss_ids
        stream = inputs.RequestStream(distinct=ids)
        block = 10_000
        points: list[tuple[int, float]] = []
        every = max(total // 10, block)
        t0 = time.perf_counter()
        with Daemon() as d:
            d.wait_ready()
            idle = rss_mb(d.pid)
            written = 0
            while written < total:
                n = min(block, total - written)
                d.write(stream.chunk(written, n))
                written += n
                # keep at most two blocks in flight: the default queue never overflows
                d.wait_lines(max(0, written - block), poll=0.005)
                if written % every == 0 or written == total:
                    d.wait_lines(written, poll=0.005)
                    points.append((written, rss_mb(d.pid)))
            outcomes = d.wait_lines(written)
            m = d.finish()
        first, last = points[0][1], points[-1][1]
        return {"lines": total, "distinct_request_ids": ids, "idle_rss_mb": idle,
                "rss_mb_by_lines": points, "final_rss_mb": last, "growth_mb": last - first,
                "peak_rss_mb": m.peak_rss_mb, "lines_per_s": total / (time.perf_counter() - t0),
                "outcomes": outcomes}

    def passthrough(self) -> dict[str, Any]:
        """A producer's time to write its lines through `cat` and through the daemon to /dev/null."""
        n = self.mode.passthrough_lines
        producer = inputs.producer_argv(n)
        runs: dict[str, list[float]] = {"cat": [], "llm-exporter": []}
        dropped: list[float] = []
        for _ in range(self.mode.passthrough_rounds):
            r, w = os.pipe()
            cat = subprocess.Popen(["cat"], stdin=r, stdout=subprocess.DEVNULL)
            os.close(r)
            runs["cat"].append(_produce(producer, w))
            cat.wait()

            r, w = os.pipe()
            keep = os.dup(w)
            with Daemon(stdin=r) as d:
                d.wait_ready()
                runs["llm-exporter"].append(_produce(producer, w))
                got = d.wait_lines(n, poll=0.1)
                dropped.append(got.get("dropped", 0.0))
                os.close(keep)
                d.finish()
        cat_s, ours_s = statistics.median(runs["cat"]), statistics.median(runs["llm-exporter"])
        return {"lines": n, "producer": " ".join(Path(a).name for a in producer[1:]),
                "producer_wall_s": {"cat": cat_s, "llm-exporter": ours_s}, "ratio": ours_s / cat_s,
                "dropped_lines": dropped, "runs": runs}

    def scrape(self) -> dict[str, Any]:
        """Time of GET /metrics (text, and gzip) with about `scrape_series` series."""
        per_model = 4 * 140  # four operations; a success and an error each: ~140 series
        models = max(1, math.ceil(self.mode.scrape_series / per_model))
        body = inputs.series_lines(models)
        with Daemon() as d:
            d.wait_ready()
            d.write(body)
            d.wait_lines(body.count(b"\n"))
            text = d.scrape()
            series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            times: dict[str, list[float]] = {"text": [], "gzip": []}
            for _ in range(self.mode.scrapes):
                for kind, headers in (("text", {}), ("gzip", {"Accept-Encoding": "gzip"})):
                    t0 = time.perf_counter()
                    d.scrape(headers)
                    times[kind].append(time.perf_counter() - t0)
            d.finish()
        return {"series": series, "bytes": len(text),
                "ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
                "ms_max": {k: 1000 * max(v) for k, v in times.items()}}

    def startup(self) -> dict[str, Any]:
        times = []
        for _ in range(self.mode.starts):
            with Daemon() as d:
                times.append(d.wait_ready())
                d.finish()
        return {"seconds": statistics.median(times), "runs": times}


def _produce(argv: list[str], w: int) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=w, cwd=ROOT)
    os.close(w)
    if p.wait() != 0:
        raise RuntimeError(f"producer {argv} exited {p.returncode}")
    return time.perf_counter() - t0


def _replay_outcomes(stderr: str) -> dict[str, float]:
    for line in stderr.splitlines():
        if line.startswith("lines: "):
            body = line[len("lines: "):].split(" (", 1)[0]
            return {k: float(v) for k, v in (kv.split("=") for kv in body.split(", "))}
    return {}


# -- report -------------------------------------------------------------------------------------


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: str, met: bool | None) -> None:
        out.append({"name": name, "value": value, "target": target, "met": met})

    app = res.get("throughput", {}).get("app_json", {})
    for key, per in (("ratios", "lines/s"), ("ratios_cpu", "lines/CPU-s")):
        for ours in ("pipe", "replay"):
            for other, want in (("mtail", 1.5), ("baseline exporter", 2.0)):
                v = app.get(key, {}).get(f"llm-exporter {ours} / {other}")
                add(f"{ours} {per} vs {other}", v, f">= {want}x", None if v is None else v >= want)
    mix = res.get("throughput", {}).get("vllm_tgi_mix", {})
    for ours in ("pipe", "replay"):
        v = mix.get("ratios_cpu", {}).get(f"llm-exporter {ours} / mtail")
        add(f"server mix, {ours} lines/CPU-s vs mtail", v, ">= 1x", None if v is None else v >= 1.0)
    for kind, how in (("line_writes", "line by line"), ("batched_10ms", "10 ms batches")):
        if kind in res.get("steady_cpu", {}):
            v = res["steady_cpu"][kind]["cpu_percent_of_core"]
            add(f"CPU at {res['sizes']['steady_rate']:,} req/s, {how} (% of a core)", v, "<= 1 %", v <= 1.0)
    if "rss" in res:
        r = res["rss"]
        add("RSS at the end (MiB)", r["final_rss_mb"], "<= 60", r["final_rss_mb"] <= 60)
        add("RSS growth over the run (MiB)", r["growth_mb"], "<= 5 (flat)", r["growth_mb"] <= 5)
    if "passthrough" in res:
        v = res["passthrough"]["ratio"]
        add("passthrough time vs cat", v, "<= 1.1x", v <= 1.1)
    if "scrape" in res:
        v = res["scrape"]["ms"]["text"]
        add(f"scrape, {res['scrape']['series']} series (ms)", v, "<= 20", v <= 20)
    if "startup" in res:
        v = res["startup"]["seconds"]
        add("start-up to /readyz (s)", v, "<= 0.5", v <= 0.5)
    return out


def _n(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def table(res: dict[str, Any]) -> str:
    lines = [f"llm-exporter benchmark ({res['mode']} mode) on {res['machine']['cpus']} CPUs, "
             f"load average {res['machine']['loadavg_start']:.1f} at start; medians of "
             f"{res['rounds']} interleaved rounds"]
    for name, tp in res.get("throughput", {}).items():
        lines += ["", f"{name}: {tp['lines']:,} lines, {tp['bytes'] / 1e6:.1f} MB; mtail runs {tp['mtail_program']}",
                  f"  {'contender':<22} {'lines/s':>11} {'wall s':>8} {'CPU s':>7} {'lines/CPU-s':>12} "
                  f"{'peak RSS MiB':>13}"]
        for c, v in tp["contenders"].items():
            lines.append(f"  {c:<22} {_n(v['lines_per_s']):>11} {v['wall_s']:>8.3f} {v['cpu_s']:>7.2f} "
                         f"{_n(v['lines_per_cpu_s']):>12} {v['peak_rss_mb']:>13.1f}")
        lines.append("  ratios of lines/s: " + ", ".join(f"{k} {v:.2f}x" for k, v in tp["ratios"].items()))
        lines.append("  ratios of lines/CPU-s: " + ", ".join(f"{k} {v:.2f}x" for k, v in tp["ratios_cpu"].items()))
        lines.append("  outcomes (pipe): " + ", ".join(f"{k}={v:,.0f}" for k, v in tp["pipe_outcomes"].items()
                                                       if v))
    if "steady_cpu" in res:
        lines.append("")
    for kind, how in (("line_writes", "one write per line"), ("batched_10ms", "10 ms batches")):
        if kind in res.get("steady_cpu", {}):
            s = res["steady_cpu"][kind]
            lines.append(f"steady load, {how}: {s['requests_per_s']:,.0f} requests/s in {s['writes_per_s']:,.0f} "
                         f"writes/s for {s['seconds']:.0f} s: {s['cpu_percent_of_core']:.2f} % of one core")
    if "rss" in res:
        r = res["rss"]
        lines.append(f"memory: {r['lines']:,} lines, {r['distinct_request_ids']:,} distinct request ids: "
                     f"RSS idle {r['idle_rss_mb']:.1f} MiB, " +
                     " ".join(f"{n / 1e6:g}M:{mb:.1f}" for n, mb in r["rss_mb_by_lines"]) +
                     f" MiB; growth {r['growth_mb']:+.1f} MiB")
    if "passthrough" in res:
        p = res["passthrough"]
        walls = p["producer_wall_s"]
        lines.append(f"passthrough: `{p['producer']} | X > /dev/null`: producer done in "
                     f"{walls['cat']:.3f} s with cat, {walls['llm-exporter']:.3f} s with llm-exporter "
                     f"({p['ratio']:.2f}x); dropped lines {p['dropped_lines']}")
    if "scrape" in res:
        s = res["scrape"]
        lines.append(f"scrape: {s['series']:,} series, {s['bytes'] / 1e6:.2f} MB: "
                     f"{s['ms']['text']:.1f} ms text, {s['ms']['gzip']:.1f} ms gzip (median)")
    if "startup" in res:
        lines.append(f"start-up to /readyz: {res['startup']['seconds']:.2f} s (median)")
    lines += ["", "targets:"]
    for t in res["targets"]:
        mark = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        lines.append(f"  {t['name']:<44} {_n(t['value'], 2):>10}  {t['target']:<14} {mark}")
    if res["skipped"]:
        lines += ["", "skipped: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items())]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]}


SECTIONS = ("app_json", "mix", "steady_cpu", "rss", "passthrough", "scrape", "startup")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="fewer rounds, shorter steady and memory runs")
    g.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the benchmark runs")
    ap.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    ap.add_argument("--json", type=Path, help="where to write the figures (bench/results/bench-MODE.json)")
    ns = ap.parse_args(argv)
    mode = MODES["smoke" if ns.smoke else "quick" if ns.quick else "full"]
    only = set(ns.only.split(",")) if ns.only else set(SECTIONS)
    if only - set(SECTIONS):
        ap.error(f"unknown section(s): {', '.join(sorted(only - set(SECTIONS)))}")

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    res: dict[str, Any] = {"mode": mode.name, "rounds": mode.rounds, "machine": machine(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sizes": asdict(mode)}
    with tempfile.TemporaryDirectory(prefix="llm-bench-") as tmp:
        b = Bench(mode, Path(tmp), log)
        try:
            res["inputs"] = {}
            res["throughput"] = {}
            if "app_json" in only:
                path = b.work / "app.log"
                res["inputs"]["app_json"] = inputs.app_logs(path, mode.lines)
                log(f"throughput on {mode.lines:,} application JSON log lines")
                res["throughput"]["app_json"] = b.throughput("app_json", path, mode.lines, MTAIL_APP)
            if "mix" in only:
                path = b.work / "mix.log"
                res["inputs"]["mix"] = inputs.server_mix(path, mode.mix_lines)
                log(f"throughput on {mode.mix_lines:,} vLLM/TGI sample lines")
                res["throughput"]["vllm_tgi_mix"] = b.throughput("vllm_tgi_mix", path, mode.mix_lines, MTAIL_SERVER)
            for section in ("steady_cpu", "rss", "passthrough", "scrape", "startup"):
                if section in only:
                    log(section)
                    res[section] = getattr(b, section)()
        except Missing as e:
            print(f"bench: {e}", file=sys.stderr)
            return 1
        res["skipped"] = b.skipped
    res["machine"]["loadavg_end"] = os.getloadavg()[0]
    res["targets"] = targets(res)
    print(table(res))
    out = ns.json or ROOT / "bench" / "results" / f"bench-{mode.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    out.write_text(json.dumps(res, indent=2) + "\n")
    log(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
