"""Measuring processes: wall time, CPU seconds and peak RSS of a child, and a live exporter.

CPU and peak RSS come from the kernel (`wait4` rusage of the child alone, `/proc/PID/stat` and
`/proc/PID/status` while it runs), so the figures do not depend on what the child says of itself.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: the daemon as a user starts it (the virtual environment's python that runs the benchmark)
EXPORTER = [sys.executable, "-m", "llm_exporter"]


@dataclass
class Measured:
    """One finished child: wall seconds, CPU seconds (user+system), peak RSS in MiB, exit code."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    rc: int
    stderr: str = ""


def wait_measured(proc: subprocess.Popen[bytes], t0: float, timeout: float | None = None) -> Measured:
    """Reap `proc` with wait4 (its own CPU time) and time it from `t0` (a perf_counter value);
    past `timeout` seconds it is killed (and its exit code is then -9).

    Peak RSS is sampled from /proc every few milliseconds while it runs: the kernel's
    ru_maxrss of a child started from this (larger) Python process would report our size."""
    deadline = None if timeout is None else time.perf_counter() + timeout
    peak = 0.0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError, ValueError, IndexError):
            peak = max(peak, rss_mb(proc.pid))
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            deadline = None
        time.sleep(0.004)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = ""
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    return Measured(wall, ru.ru_utime + ru.ru_stime, peak or ru.ru_maxrss / 1024, proc.returncode, err)


def run_measured(argv: list[str], stdin: IO[Any] | int | None = subprocess.DEVNULL,
                 stdout: IO[Any] | int | None = subprocess.DEVNULL,
                 env: dict[str, str] | None = None) -> Measured:
    """Run `argv` to its end and measure it."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child never blocks on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        m = wait_measured(proc, t0)
        err.seek(0)
        m.stderr = err.read().decode(errors="replace")
    return m


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a running process (its threads, not its children)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of a running process, in MiB."""
    with open(f"/proc/{pid}/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE / (1 << 20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def lines_by_outcome(exposition: bytes) -> dict[str, float]:
    """llm_exporter_lines_total summed by outcome, read from a text exposition."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith(b"llm_exporter_lines_total{"):
            labels, _, value = line.rpartition(b" ")
            outcome = labels.split(b'outcome="', 1)[1].split(b'"', 1)[0].decode()
            out[outcome] = out.get(outcome, 0.0) + float(value)
    return out


class Daemon:
    """A real `llm-exporter` daemon reading a pipe we hold, on a free 127.0.0.1 port."""

    def __init__(self, *args: str, stdin: int | None = None,
                 stdout: int | IO[Any] = subprocess.DEVNULL) -> None:
        self.port = free_port()
        self.t_spawn = time.perf_counter()
        self._write_fd: int | None = None
        if stdin is None:
            r, self._write_fd = os.pipe()
            stdin = r
        self.proc = subprocess.Popen([*EXPORTER, "--listen", f"127.0.0.1:{self.port}", *args],
                                     stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)
        os.close(stdin)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll /readyz until 200; returns seconds since spawn."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"llm-exporter exited {self.proc.returncode} before ready: {err.strip()}")
            with contextlib.suppress(OSError):
                if http_get(self.port, "/readyz", timeout=1.0)[0] == 200:
                    return time.perf_counter() - self.t_spawn
            time.sleep(0.005)
        raise RuntimeError("llm-exporter not ready in time")

    def write(self, data: bytes) -> None:
        assert self._write_fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._write_fd, view):]

    def close_stdin(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def scrape(self, headers: dict[str, str] | None = None) -> bytes:
        code, body = http_get(self.port, "/metrics", headers)
        if code != 200:
            raise RuntimeError(f"/metrics answered {code}")
        return body

    def lines(self) -> dict[str, float]:
        return lines_by_outcome(self.scrape())

    def wait_lines(self, n: int, timeout: float = 600.0, poll: float = 0.05) -> dict[str, float]:
        """Scrape until every one of `n` lines has an outcome."""
        deadline = time.perf_counter() + timeout
        while True:
            got = self.lines()
            if sum(got.values()) >= n:
                return got
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {sum(got.values()):.0f} of {n} lines counted in {timeout:.0f} s")
            time.sleep(poll)

    def finish(self, timeout: float = 120.0) -> Measured:
        """Close stdin (the daemon exits 0 at EOF) and reap it."""
        self.close_stdin()
        return wait_measured(self.proc, self.t_spawn, timeout)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_stdin()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
