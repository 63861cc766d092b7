"""Wrapper mode: `llm-exporter [OPTIONS] -- COMMAND ARG...` runs COMMAND as a child and reads it.

The child's stdout and stderr are two pipes, each read by a `PipeSource` (sources `stdout` and
`stderr`): every byte goes first to our own stdout / stderr, unchanged, then to the parser, which
drops (and counts) lines rather than ever slowing the child. The child inherits our stdin and
environment. SIGTERM and SIGINT sent to us are forwarded to the child (SIGHUP too, after our own
reload, through `send_signal`); we stop when the child has exited. A child still running
`kill_after` seconds after the first SIGTERM/SIGINT is killed (SIGKILL), as Kubernetes does after
its grace period, so a child that ignores SIGTERM cannot keep us up forever. When the child
exits, what is left in its pipes is read (up to `drain_timeout` seconds if a grandchild keeps
them open), then `on_exit` gets the child's exit code: its own, or 128+N when signal N killed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from aiohttp import web

from llm_exporter.metrics.internal import Counters
from llm_exporter.problems import StartupError
from llm_exporter.sources.pipe import PipeSource
from llm_exporter.worker import Worker

log = logging.getLogger("llm_exporter.source")

#: taken over from the app's stop handlers: the child decides when we stop (SIGHUP is the app's:
#: it reloads our configuration and hands the signal on through `send_signal`)
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def process_tree(root: int, proc_dir: str = "/proc") -> set[int]:
    """`root` and every process descended from it (from /proc/*/stat; empty when root is gone)."""
    import os

    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(proc_dir)
    except OSError:
        return set()
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc_dir}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses; the last ')' ends it
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(name))
    if not os.path.exists(f"{proc_dir}/{root}"):
        return set()
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, ()))
    return out


def exit_code(returncode: int) -> int:
    """A shell's view of the child's end: its code, or 128+N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode


class CommandSource:
    """Runs the child and its two pipe readers; `on_exit(code)` once the child is gone and drained."""

    name = "command"

    def __init__(self, argv: list[str], worker: Worker, counters: Counters, *, passthrough: bool,
                 max_line: int = 1 << 20, on_exit: Callable[[int], None] | None = None,
                 drain_timeout: float = 2.0, kill_after: float,
                 on_kill: Callable[[], None] | None = None) -> None:
        self.argv = list(argv)
        self._worker = worker
        self._counters = counters
        self._passthrough = passthrough
        self._max_line = max_line
        self._on_exit = on_exit
        self._drain_timeout = drain_timeout
        self._kill_after = kill_after
        self._on_kill = on_kill
        self._kill_timer: threading.Timer | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pipes: list[PipeSource] = []
        self._files: list[IO[bytes]] = []
        self.attached = False

    def pids(self) -> set[int] | None:
        """The child's process tree now (None before it started; empty once it is gone)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return set()
        return process_tree(self.proc.pid)

    def routes(self) -> list[web.RouteDef]:
        return []

    def stop(self) -> None:
        """Nothing to do: the child decides when its pipes end, and what it still writes is read."""

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the child (an unknown command is a start-up error) and forward signals to it."""
        try:
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise StartupError(f"cannot run {self.argv[0]!r}: {e.strerror or e}") from None
        self.proc = proc
        log.info("started child", extra={"fields": {"pid": proc.pid, "argv": self.argv}})
        assert proc.stdout is not None and proc.stderr is not None
        self._files = [proc.stdout, proc.stderr]
        for name, f, out in (("stdout", proc.stdout, 1), ("stderr", proc.stderr, 2)):
            src = PipeSource(name, f.fileno(), out if self._passthrough else None, self._worker,
                             self._counters, self._max_line)
            src.start()
            self.pipes.append(src)
        if loop is not None:
            for sig in FORWARDED:
                loop.add_signal_handler(sig, self.forward, sig)
        threading.Thread(target=self._wait, name="child-wait", daemon=True).start()
        self.attached = True

    def forward(self, sig: int) -> None:
        """Send `sig` to the child while it runs; a stop signal also starts the SIGKILL timer."""
        self.send_signal(sig)
        if sig in FORWARDED and self._kill_timer is None and self.proc is not None and self.proc.poll() is None:
            self._kill_timer = threading.Timer(self._kill_after, self._kill)
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the child if it still runs (it may exit meanwhile: never an error)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):  # gone between the check and the signal
                self.proc.send_signal(sig)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            log.warning("child still running %.0f s after the stop signal (--command-kill-after); "
                        "sending SIGKILL", self._kill_after, extra={"fields": {"pid": self.proc.pid}})
            if self._on_kill is not None:
                self._on_kill()
            self.send_signal(signal.SIGKILL)

    def _wait(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        code = exit_code(rc)
        for src, f in zip(self.pipes, self._files, strict=True):
            if src.done.wait(self._drain_timeout):
                f.close()  # read to its end; one still open is left to its reader
            else:
                log.warning("child exited but its %s is still open (a grandchild?); not waiting for it",
                            src.name)
        log.info("child exited", extra={"fields": {"pid": self.proc.pid, "code": code}})
        if self._on_exit is not None:
            self._on_exit(code)
