"""What a new user meets in the first hour, run as real processes: the standard process metrics,
and nothing silent (a --file glob that matches nothing, stdin at EOF)."""

from __future__ import annotations

from tests.helpers import Exporter, total


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
