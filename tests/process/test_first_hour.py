"""What a new user meets in the first hour, run as real processes: the standard process metrics,
and nothing silent (a --file glob that matches nothing, stdin at EOF)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, Exporter, free_port, http_get, total

# a real vLLM V1 stats line with an engine tag (tests/fixtures/samples/vllm.log)
ENGINE_STATS = next(line for line in (ROOT / "tests/fixtures/samples/vllm.log").read_text().splitlines()
                    if "Engine 000:" in line and "KV cache usage" in line)


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_process_and_platform_metrics_like_every_python_exporter() -> None:
    """process_* (read from /proc by prometheus-client), python_info and python_gc_* are served."""
    with Exporter("--no-passthrough", "--gpu", "off") as e:
        e.wait_ready()
        s = e.samples()
        rss = _rss_bytes(e.proc.pid)
    assert total(s, "process_resident_memory_bytes") > 0
    assert abs(total(s, "process_resident_memory_bytes") - rss) < 0.5 * rss  # the same process, read apart
    assert total(s, "process_start_time_seconds") > 1.6e9
    assert total(s, "process_open_fds") >= 3
    assert total(s, "process_max_fds") > 0
    assert ("process_cpu_seconds_total", ()) in s
    info = [dict(labels) for (name, labels), _ in s.items() if name == "python_info"]
    assert len(info) == 1 and info[0]["implementation"] == "CPython"
    assert info[0]["major"] == "3"
    assert total(s, "python_gc_collections_total") >= 0 and any(n == "python_gc_objects_collected_total"
                                                                  for n, _ in s)


def _logs(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def test_a_glob_that_matches_nothing_is_said_at_start_and_shown_as_a_gauge(tmp_path: Path) -> None:
    """--file on a glob matching nothing: a warning naming the glob at start, and
    llm_exporter_file_glob_files{glob} at 0 until a file appears; then 1 and its lines counted.
    Ready means the sources are attached, so /readyz is 200 all along (as documented)."""
    pattern = str(tmp_path / "logs" / "*.log")
    (tmp_path / "logs").mkdir()
    with Exporter("--no-stdin", "--gpu", "off", "--file-start", "beginning", "--file", pattern,
                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        assert http_get(e.url + "/readyz")[0] == 200
        s = e.samples()
        assert total(s, "llm_exporter_file_glob_files", glob=pattern) == 0
        assert ("llm_exporter_file_glob_files", (("glob", pattern),)) in s
        (tmp_path / "logs" / "app.log").write_text("one\ntwo\n")
        e.wait_lines(2)
        assert total(e.samples(), "llm_exporter_file_glob_files", glob=pattern) == 1
        e.stop()
        logs = _logs(e.stderr_text())
    warned = [x for x in logs if x.get("level") == "warning" and "matches no file yet" in x.get("msg", "")]
    assert len(warned) == 1 and pattern in warned[0]["msg"], logs
    assert any("matches 1 file(s) now" in x.get("msg", "") for x in logs)


def test_stdin_that_can_carry_nothing_is_refused_with_a_hint() -> None:
    """`docker run` without -i, systemd, nohup: stdin is /dev/null. With stdin the only source the
    exporter used to exit 0 at once (and a restart policy looped); now one line says what to do."""
    r = subprocess.run([sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{free_port()}", "--gpu", "off"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if line.startswith("llm-exporter: error:")]
    assert len(err) == 1, r.stderr
    assert "stdin is /dev/null" in err[0] and "-i" in err[0] and "--file" in err[0] and "--http-ingest" in err[0]


def test_stdin_at_eof_says_why_it_stops() -> None:
    """A writer that exits: exit 0, and the log says stdin ended (not a bare "stopping")."""
    with Exporter("--no-passthrough", "--gpu", "off") as e:
        e.wait_ready()
        e.stdin.write(b"a line\n")
        e.stdin.close()
        assert e.proc.wait(30) == 0
        logs = _logs(e.stderr_text())
    msgs = [x.get("msg", "") for x in logs]
    i = next(i for i, m in enumerate(msgs) if "stdin reached its end" in m)
    assert "stopping" in msgs[i] and msgs.index("stopping") > i, msgs


def test_stats_gauges_say_when_the_engine_last_logged_them() -> None:
    """llm_server_stats_last_seen_timestamp_seconds per engine: the wall-clock time the stats line
    was read, so a stale llm_kv_cache_usage_ratio can be told from a fresh one."""
    with Exporter("--no-passthrough", "--gpu", "off") as e:
        e.wait_ready()
        before = time.time()
        e.stdin.write(ENGINE_STATS.encode() + b"\n")
        e.stdin.flush()
        s = e.wait_lines(1)
        after = time.time()
    seen = {dict(k)["engine"]: v for (n, k), v in s.items() if n == "llm_server_stats_last_seen_timestamp_seconds"}
    assert set(seen) == {"0"}
    assert before - 1 <= seen["0"] <= after + 1
    assert total(s, "llm_kv_cache_usage_ratio", engine="0") > 0


def test_state_dir_on_a_file_says_so(tmp_path: Path) -> None:
    """--state-dir naming a file: one line saying it is a file (it said "File exists")."""
    f = tmp_path / "state"
    f.write_text("x")
    for target in (f, f / "sub"):
        r = subprocess.run([sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{free_port()}", "--gpu",
                            "off", "--state-dir", str(target)], input=b"", capture_output=True, timeout=60, cwd=ROOT)
        assert r.returncode == 1
        assert r.stderr.decode().strip() == f"llm-exporter: error: --state-dir {target}: {f} is a file, not a directory"
