"""A byte pipe read on its own thread: stdin, or one of a child's stdout/stderr.

Each chunk is first written to the passthrough fd (every byte, in order, unchanged), then framed
and offered to the parser; the parser never holds up the passthrough, and lines it cannot
take in time are counted as `dropped`. Works for pipes, ttys and regular files alike (a thread
doing blocking reads, since epoll cannot watch regular files). A regular file (`llm-exporter <
app.log`) has no writer that could stall, so there the reader waits for the parser instead of
dropping. A pipe's buffer is enlarged to 1 MiB and, after a read that emptied it, the reader waits
50 ms before the next one: a trickle of lines is then read and parsed in a few batches a second
(passthrough output lags by at most that), and a writer would need over 20 MB/s to ever wait.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Callable

from aiohttp import web

from llm_exporter.logs import STDERR
from llm_exporter.metrics.internal import Counters
from llm_exporter.sources.base import LineFeed
from llm_exporter.worker import Worker

log = logging.getLogger("llm_exporter.source")
CHUNK = 1 << 16
#: After a read that emptied a pipe, wait this long before reading again: a steady trickle of
#: lines then costs ~20 wake-ups a second instead of one per line (measured: each wake-up of the
#: reader and the parser costs far more than the lines it carries). Only done once the pipe's
#: buffer is `PIPE_BUFFER`, so a writer would have to log over 20 MB/s to ever wait on us.
LINGER = 0.05
PIPE_BUFFER = 1 << 20
#: one read, and so one wait for the GIL while the parser runs, takes up to this much
READ = PIPE_BUFFER


def enlarge_pipe(fd: int, size: int = PIPE_BUFFER) -> bool:
    """Grow a pipe's kernel buffer to `size`; False for a non-pipe or when the kernel refuses."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size) >= size
    except (OSError, AttributeError):
        return False


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class PipeSource:
    """Reads `fd_in` to EOF on a thread; passthrough to `fd_out` (None: no passthrough)."""

    def __init__(self, name: str, fd_in: int, fd_out: int | None, worker: Worker, counters: Counters,
                 max_line: int = 1 << 20, on_eof: Callable[[], None] | None = None) -> None:
        self.name = name
        self._fd_in = fd_in
        self._fd_out = fd_out
        self._worker = worker
        self._feed = LineFeed(counters(name), max_line)  # its series exist (at 0) from now on
        self._on_eof = on_eof
        self._thread = threading.Thread(target=self._run, name=f"source-{name}", daemon=True)
        self.attached = False
        self.done = threading.Event()
        self._parse_lock = threading.Lock()  # held while a chunk is counted and queued
        self._parsing = True

    def stop(self) -> None:
        """Graceful stop: from now on bytes are still passed through but no longer counted or parsed,
        so the lines already queued are exactly the lines counted."""
        with self._parse_lock:
            self._parsing = False

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._thread.start()
        self.attached = True

    def routes(self) -> list[web.RouteDef]:
        return []

    def send_signal(self, sig: int) -> None:
        """Nothing to hand a signal to."""

    def _run(self) -> None:
        name, worker, feed = self.name, self._worker, self._feed
        try:
            regular = stat.S_ISREG(os.fstat(self._fd_in).st_mode)
        except OSError:  # not open: the first read fails as well and ends the source
            regular = False
        submit = worker.put if regular else worker.offer
        linger = LINGER if enlarge_pipe(self._fd_in) else 0.0
        try:
            while True:
                try:
                    chunk = os.read(self._fd_in, READ)  # EINTR is retried by Python itself (PEP 475)
                except OSError as e:
                    log.error("reading %s failed: %s", name, e)
                    break
                if not chunk:
                    break
                if self._fd_out is not None:
                    self._passthrough(chunk)
                with self._parse_lock:
                    if not self._parsing:
                        continue
                    for off in range(0, len(chunk), CHUNK):
                        submit(name, feed.feed(chunk[off : off + CHUNK]))
                if linger and len(chunk) < CHUNK:
                    time.sleep(linger)
            with self._parse_lock:
                if self._parsing:
                    lines = feed.finish()
                    if lines:
                        worker.put(name, lines)  # the last line: worth waiting for
                    worker.flush_source(name)
        finally:
            self.done.set()
            if self._on_eof is not None:
                self._on_eof()

    def _passthrough(self, chunk: bytes) -> None:
        assert self._fd_out is not None
        try:
            if self._fd_out == STDERR.fd:  # shared with our own log lines: whole lines only
                STDERR.passthrough(chunk)
            else:
                write_all(self._fd_out, chunk)
        except OSError as e:  # EPIPE: whoever read our output went away; keep parsing
            log.warning("passthrough to fd %d stopped: %s", self._fd_out, e.strerror)
            self._fd_out = None
