"""The wrapped command, in-process: a real short child (this Python), its pipes, signals and exit code.

Every test waits on the source's own state: the child's exit reported through `on_exit`, or a line
of the child's arriving at the worker. Expected bytes, lines and codes are the child's own script,
worked out by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import StartupError
from llm_exporter.sources.command import FORWARDED, CommandSource, exit_code, process_tree
from llm_exporter.worker import Worker

#: a guard against a hang only (a child that never ends); nothing is timed
GUARD = 30


class Recorder:
    """Stands in for the worker: records the lines each pipe hands on; `seen(text)` waits for one."""

    def __init__(self) -> None:
        self.lines: dict[str, list[bytes]] = {}
        self.flushed: list[str] = []
        self._cond = threading.Condition()

    def offer(self, source: str, lines: list[bytes]) -> bool:
        with self._cond:
            self.lines.setdefault(source, []).extend(lines)
            self._cond.notify_all()
        return True

    def put(self, source: str, lines: list[bytes], timeout: float | None = None, **_: Any) -> None:
        self.offer(source, lines)

    def flush_source(self, source: str, stream: str | None = None, forget: bool = False) -> None:
        self.flushed.append(source)

    def seen(self, source: str, line: bytes) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: line in self.lines.get(source, []), GUARD), line


class Run:
    """A CommandSource running `script` in a child Python; `wait()` returns its exit code."""

    def __init__(self, script: str, worker: Any = None, metrics: LLMMetrics | None = None, **kw: Any) -> None:
        self.metrics = metrics or LLMMetrics()
        self.rec = Recorder()
        self.ended = threading.Event()
        self.codes: list[int] = []
        self.kills = 0
        self.lines_at_exit: dict[str, list[bytes]] = {}

        def on_exit(code: int) -> None:
            self.lines_at_exit = {k: list(v) for k, v in self.rec.lines.items()}
            self.codes.append(code)
            self.ended.set()

        def on_kill() -> None:
            self.kills += 1

        kw.setdefault("passthrough", False)
        kw.setdefault("kill_after", 30.0)
        self.src = CommandSource([sys.executable, "-c", script], cast(Worker, worker or self.rec),
                                 self.metrics.source, on_exit=on_exit, on_kill=on_kill, **kw)

    def release(self, grandchild: int | None) -> None:
        """End a grandchild that holds the child's pipes; close them once their readers are done."""
        if grandchild is not None:
            os.kill(grandchild, signal.SIGKILL)
        for pipe in self.src.pipes:
            assert pipe.done.wait(GUARD)
        if self.src.proc is not None:
            for f in (self.src.proc.stdout, self.src.proc.stderr):
                if f is not None:
                    f.close()

    def wait(self) -> int:
        assert self.ended.wait(GUARD), "the child did not end"
        assert len(self.codes) == 1
        return self.codes[0]


READY = "import signal, sys, time\nprint('ready', flush=True)\n"


def test_the_childs_output_passes_through_unchanged_and_its_lines_are_counted(
        capfd: pytest.CaptureFixture[str]) -> None:
    """stdout to our stdout, stderr to our stderr, byte for byte; each line counted under its pipe's
    source, with its outcome, before `on_exit` gets the child's own exit code."""
    reqs = [b'{"request_id":"r%d","model":"m","status":"success","duration_ms":5,"output_tokens":%d}' % (i, i)
            for i in (1, 2, 3)]
    long = b"x" * 150
    out = b"\n".join(reqs) + b"\n" + long + b"\nno newline at the end"
    err = b"WARNING one\nWARNING two\n"
    script = (f"import sys\nsys.stdout.buffer.write({out!r}); sys.stdout.flush()\n"
              f"sys.stderr.buffer.write({err!r}); sys.stderr.flush()\nsys.exit(3)")
    metrics = LLMMetrics()
    worker = Worker(Pipeline(metrics), max_chunks=64)
    worker.start()
    run = Run(script, worker, metrics, passthrough=True, max_line=100)
    try:
        run.src.start()
        assert run.src.attached
        assert run.wait() == 3
    finally:
        worker.stop()
    captured = capfd.readouterr()
    assert captured.out == out.decode()
    assert captured.err == err.decode()
    lines = metrics.internal.lines
    assert lines[("stdout", "record")] == 3
    assert lines[("stdout", "too_long")] == 1
    assert sum(n for (s, _), n in lines.items() if s == "stdout") == 5  # 3 requests, the long one, the last
    assert sum(n for (s, _), n in lines.items() if s == "stderr") == 2
    assert metrics.internal.bytes["stdout"] == len(out) and metrics.internal.bytes["stderr"] == len(err)


def test_without_passthrough_nothing_is_written_but_every_line_is_read(capfd: pytest.CaptureFixture[str]) -> None:
    """Both pipes are read to their end before `on_exit`: the last lines are not lost."""
    script = "import sys\nprint('a'); print('b')\nprint('c', file=sys.stderr)\nsys.stdout.write('d')"
    run = Run(script)
    run.src.start()
    assert run.wait() == 0
    assert run.lines_at_exit == {"stdout": [b"a", b"b", b"d"], "stderr": [b"c"]}
    assert sorted(run.rec.flushed) == ["stderr", "stdout"]
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (1, 1), (3, 3), (255, 255), (-1, 129), (-9, 137),
                                                   (-15, 143)])
def test_the_exit_code_is_the_childs_or_128_plus_the_signal_that_killed_it(returncode: int, code: int) -> None:
    assert exit_code(returncode) == code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_child_killed_by_a_signal_ends_with_128_plus_n(sig: int) -> None:
    run = Run(f"import os\nos.kill(os.getpid(), {int(sig)})\nimport time\ntime.sleep(60)")
    run.src.start()
    assert run.wait() == 128 + sig


def test_the_child_is_logged_when_it_starts_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_exporter.source")
    run = Run("import sys; sys.exit(7)")
    run.src.start()
    assert run.wait() == 7
    assert run.src.proc is not None
    pid = run.src.proc.pid
    got = [(r.levelname, r.getMessage(), getattr(r, "fields", None)) for r in caplog.records
           if r.name == "llm_exporter.source"]
    assert got == [("INFO", "started child", {"pid": pid, "argv": run.src.argv}),
                   ("INFO", "child exited", {"pid": pid, "code": 7})]


def test_an_unknown_command_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    src = CommandSource([str(tmp_path / "no-such-server"), "--port", "8000"], cast(Worker, Recorder()),
                        LLMMetrics().source, passthrough=False, kill_after=30.0)
    with pytest.raises(StartupError) as e:
        src.start()
    assert str(e.value) == f"cannot run {str(tmp_path / 'no-such-server')!r}: No such file or directory"
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert src.proc is None and src.pids() is None and not src.attached


def test_stop_signals_are_forwarded_and_a_child_that_ignores_them_is_killed_after_the_grace_time(
        caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM to the child; still running `kill_after` later: SIGKILL, counted once, 128+9."""
    caplog.set_level(logging.WARNING, logger="llm_exporter.source")
    run = Run(READY + "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "print('ignoring', flush=True)\ntime.sleep(60)", kill_after=0.4)
    before = set(threading.enumerate())
    run.src.start()
    run.rec.seen("stdout", b"ignoring")
    run.src.forward(signal.SIGTERM)
    run.src.forward(signal.SIGINT)  # one grace time: the second stop signal starts no second timer
    started = set(threading.enumerate()) - before
    assert {"child-wait", "source-stdout", "source-stderr"} <= {t.name for t in started}
    assert all(t.daemon for t in started), "a thread of ours would keep the process up"
    assert run.wait() == 128 + signal.SIGKILL
    assert run.kills == 1
    assert run.src.proc is not None
    assert [(r.getMessage(), getattr(r, "fields", None)) for r in caplog.records if r.levelno == logging.WARNING] \
        == [("child still running 0 s after the stop signal (--command-kill-after); sending SIGKILL",
             {"pid": run.src.proc.pid})]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_reaches_the_child_which_decides_when_we_stop(sig: int) -> None:
    """The child handles the signal, says so and exits 0: no kill, and the grace timer is let go."""
    run = Run(READY.replace("print(", f"signal.signal({int(sig)}, lambda *a: (print('got', a[0], flush=True), "
                                      "sys.exit(0)))\nprint(") + "time.sleep(60)")
    run.src.start()
    run.rec.seen("stdout", b"ready")
    run.src.forward(sig)
    assert run.wait() == 0
    assert b"got %d" % sig in run.rec.lines["stdout"]
    assert run.kills == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_sent_to_us_is_forwarded_to_the_child(sig: int) -> None:
    """With the event loop given, SIGTERM and SIGINT to our own process go to the child, which
    dies of it (128+N); nothing reaches the handler the loop replaced."""
    loop = asyncio.get_running_loop()
    reached: list[int] = []
    saved = {s: signal.getsignal(s) for s in FORWARDED}
    for s in FORWARDED:
        signal.signal(s, lambda n, _f: reached.append(n))  # where a signal the loop did not take lands
    run = Run(READY + "time.sleep(60)")
    try:
        run.src.start(loop)
        await loop.run_in_executor(None, run.rec.seen, "stdout", b"ready")
        os.kill(os.getpid(), sig)
        code = await loop.run_in_executor(None, run.wait)
    finally:
        for s in FORWARDED:
            loop.remove_signal_handler(s)
            signal.signal(s, saved[s])
        if run.src.proc is not None and run.src.proc.poll() is None:
            run.src.proc.kill()
    assert code == 128 + sig
    assert reached == []


def test_only_a_stop_signal_starts_the_grace_timer_and_only_while_the_child_runs() -> None:
    """SIGHUP is handed on without a timer; after the child is gone nothing is sent nor started."""
    run = Run(READY.replace("print(", "signal.signal(signal.SIGHUP, lambda *a: print('hup', flush=True))\n"
                                      "signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))\nprint(")
              + "time.sleep(60)")
    run.src.start()
    run.rec.seen("stdout", b"ready")
    before = set(threading.enumerate())
    run.src.forward(signal.SIGHUP)
    run.rec.seen("stdout", b"hup")
    assert set(threading.enumerate()) - before == set()
    run.src.send_signal(signal.SIGTERM)  # handed on, no timer either
    assert run.wait() == 5
    run.src.forward(signal.SIGTERM)
    run.src.send_signal(signal.SIGTERM)
    assert set(threading.enumerate()) - before == set()
    run.src._kill()  # a grace timer firing just as the child ended: nothing to kill, nothing counted
    assert run.kills == 0


def test_signals_before_the_child_starts_are_nothing() -> None:
    src = CommandSource([sys.executable, "-c", "pass"], cast(Worker, Recorder()), LLMMetrics().source,
                        passthrough=False, kill_after=30.0)
    src.send_signal(signal.SIGHUP)
    src.forward(signal.SIGTERM)
    assert src.pids() is None and src.routes() == [] and not src.attached
    src.stop()  # nothing to do: the child decides


def test_a_grandchild_that_keeps_the_pipes_open_does_not_hold_up_the_exit(caplog: pytest.LogCaptureFixture) -> None:
    """The child exits; its grandchild still holds stdout and stderr: each is given up after
    drain_timeout with one warning, and `on_exit` still gets the child's code."""
    caplog.set_level(logging.WARNING, logger="llm_exporter.source")
    script = ("import subprocess, sys\n"
              "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(g.pid, flush=True)\nsys.exit(4)")
    run = Run(script, drain_timeout=0.2)
    run.src.start()
    try:
        assert run.wait() == 4
    finally:
        run.release(int(run.rec.lines["stdout"][0]))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"child exited but its {name} is still open (a grandchild?); not waiting for it"
        for name in ("stdout", "stderr")]


def test_the_childs_process_tree_is_read_from_proc() -> None:
    """pids(): the child and its grandchild while they run; empty once the child is gone."""
    script = ("import subprocess, sys, time\n"
              "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(g.pid, flush=True)\ntime.sleep(60)")
    run = Run(script, drain_timeout=0.2)
    assert run.src.pids() is None
    run.src.start()
    grandchild = None
    try:
        assert run.src.proc is not None
        with run.rec._cond:
            assert run.rec._cond.wait_for(lambda: run.rec.lines.get("stdout"), GUARD)
        grandchild = int(run.rec.lines["stdout"][0])
        assert run.src.pids() == {run.src.proc.pid, grandchild}
        assert process_tree(run.src.proc.pid) == {run.src.proc.pid, grandchild}
        assert process_tree(grandchild) == {grandchild}
        run.src.send_signal(signal.SIGKILL)
        assert run.wait() == 128 + signal.SIGKILL
        assert run.src.pids() == set()
    finally:
        run.release(grandchild)


def _stat(root: Path, pid: int, text: str) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "stat").write_text(text)


def test_process_tree_follows_parents_whatever_the_command_names_hold(tmp_path: Path) -> None:
    """/proc/<pid>/stat is `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    Entries that are not processes, or that vanish meanwhile, are passed over."""
    _stat(tmp_path, 1, "1 (init) S 0 1 1 0 -1 4194560 0")
    _stat(tmp_path, 10, "10 (vllm serve) S 1 7 7 0 -1 4194560 0")
    _stat(tmp_path, 11, "11 (python3 (worker)) R 10 7 7 0 -1 4194560 0")
    _stat(tmp_path, 12, "12 (a) b) S 11 7 7 0 -1 4194560 0")
    _stat(tmp_path, 13, "13 (short) S 10")
    _stat(tmp_path, 14, "14 (gone) Z")
    _stat(tmp_path, 15, "15 (other) S 1 15 15 0 -1 4194560 0")
    _stat(tmp_path, 16, "16 (odd) S x 7 7 0")
    (tmp_path / "17").mkdir()  # exited between the listing and the read
    for name in ("self", "net", "sys"):
        (tmp_path / name).mkdir()
    assert process_tree(10, str(tmp_path)) == {10, 11, 12, 13}
    assert process_tree(11, str(tmp_path)) == {11, 12}
    assert process_tree(1, str(tmp_path)) == {1, 10, 11, 12, 13, 15}
    assert process_tree(99, str(tmp_path)) == set()
    assert process_tree(10, str(tmp_path / "missing")) == set()
