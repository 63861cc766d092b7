"""Counts exact across restarts: SIGKILL at random points while a writer appends, then compare with the file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, Exporter, total

KILLS = 6


def _writer(path: Path, stop: threading.Event, seed: int) -> None:
    """Append request lines (and some junk) in small bursts until told to stop."""
    rnd = random.Random(seed)
    i = 0
    with open(path, "ab", buffering=0) as f:
        while not stop.is_set():
            burst = []
            for _ in range(rnd.randint(1, 60)):
                i += 1
                if rnd.random() < 0.05:
                    burst.append(b"junk that no adapter knows")
                    continue
                status = rnd.choice(["success"] * 6 + ["error", "aborted"])
                rec: dict[str, Any] = {"request_id": f"k{i}", "model": rnd.choice(["a", "b", "c"]),
                                       "task_type": rnd.choice(["chat", "embed"]), "status": status,
                                       "total_time_ms": rnd.randint(1, 30000), "ttft_ms": rnd.randint(1, 900),
                                       "input_tokens": rnd.randint(0, 4000), "output_tokens": rnd.randint(0, 700)}
                if status == "error":
                    rec["error_type"] = rnd.choice(["timeout", "oom", "validation"])
                burst.append(json.dumps(rec).encode())
            f.write(b"\n".join(burst) + b"\n")
            time.sleep(rnd.uniform(0.001, 0.02))


def _truth(path: Path) -> dict[str, float]:
    """Independent counts of the file's lines."""
    t: dict[str, float] = {"lines": 0, "record": 0, "unparsed": 0, "bytes": path.stat().st_size,
                           "success": 0, "error": 0, "aborted": 0, "input": 0, "output": 0, "durations": 0}
    for raw in path.read_bytes().splitlines():
        t["lines"] += 1
        if not raw.startswith(b"{"):
            t["unparsed"] += 1
            continue
        r = json.loads(raw)
        t["record"] += 1
        t[r["status"]] += 1
        t["input"] += r["input_tokens"]
        t["output"] += r["output_tokens"]
        t["durations"] += 1
        if r["status"] == "error":
            t["err:" + r["error_type"]] = t.get("err:" + r["error_type"], 0) + 1
    return t


def _measured(s: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    m = {"lines": total(s, "llm_exporter_lines_total", source="file"),
         "record": total(s, "llm_exporter_lines_total", source="file", outcome="record"),
         "unparsed": total(s, "llm_exporter_lines_total", source="file", outcome="unparsed"),
         "bytes": total(s, "llm_exporter_bytes_total", source="file"),
         "input": total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input"),
         "output": total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output"),
         "durations": total(s, "gen_ai_server_request_duration_seconds_count")}
    for o in ("success", "error", "aborted"):
        m[o] = total(s, "llm_requests_total", outcome=o)
    for et in ("timeout", "oom", "validation"):
        n = total(s, "llm_request_errors_total", error_type=et)
        if n:
            m["err:" + et] = n
    return m


def _start(log: Path, state: Path) -> Exporter:
    e = Exporter("--no-stdin", "--file", str(log), "--file-start", "beginning", "--state-dir", str(state),
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    e.wait_ready()
    return e


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Kill -9 the exporter at random moments while lines are appended; after a final restart every
    counter equals an independent count of the file, and clean restarts never lower a counter."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_bytes(b"")
    rnd = random.Random(int(os.environ.get("RESTART_SEED", "1")))
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(log, stop, 2), daemon=True)
    writer.start()
    kills = 0
    try:
        for _ in range(KILLS):
            with _start(log, state) as e:
                time.sleep(rnd.uniform(0.5, 9.0))  # random point: before, between or after checkpoints
                e.proc.send_signal(signal.SIGKILL)
                e.proc.wait(10)
                kills += 1
    finally:
        stop.set()
        writer.join(10)
    truth = _truth(log)
    assert truth["lines"] > 1000
    # clean restarts: the counters only go up, and end exactly at the file's counts
    previous: dict[str, float] = {}
    for _ in range(2):
        with _start(log, state) as e:
            s = e.wait_lines(int(truth["lines"]), timeout=60)
            got = _measured(s)
            assert all(got.get(k, 0) >= v for k, v in previous.items()), (previous, got)
            previous = got
            assert e.stop() == 0
    diffs = {k: got.get(k, 0) - truth[k] for k in truth if got.get(k, 0) != truth[k]}
    report = {"kills": kills, "lines": int(truth["lines"]), "requests": int(truth["record"]),
              "differences": len(diffs)}
    print("restart test:", json.dumps(report))
    (ROOT / "test-output").mkdir(exist_ok=True)
    (ROOT / "test-output" / "restart.json").write_text(
        json.dumps({**report, "diffs": diffs, "truth": truth}, indent=1))
    assert diffs == {}


def test_extra_labels_survive_a_restart(tmp_path: Path) -> None:
    """With --config extra labels, request series restored from the checkpoint keep their values."""
    log, state, cfg = tmp_path / "app.log", tmp_path / "state", tmp_path / "c.yml"
    cfg.write_text("extra_labels: [src_lang]\n")
    line = '{"request_id":"x%d","model":"m","status":"success","latency_ms":30,"src_lang":"%s"}\n'
    log.write_text("".join(line % (i, "de" if i % 3 else "fr") for i in range(300)))
    args = ("--no-stdin", "--file", str(log), "--file-start", "beginning", "--state-dir", str(state),
            "--config", str(cfg))
    for n in (300, 450):
        with Exporter(*args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as e:
            e.wait_ready()
            s = e.wait_lines(n)
            assert total(s, "llm_requests_total", src_lang="fr") == n // 3
            assert total(s, "llm_requests_total", src_lang="de") == n - n // 3
            assert e.stop() == 0
        with open(log, "a") as f:
            f.write("".join(line % (i, "de" if i % 3 else "fr") for i in range(300, 450)))
