"""The pipeline thread: one bounded queue between the sources and the parser.

Sources that must never block (stdin, a child's pipes) use `offer()`: when the queue is full the
lines are counted as `dropped` and the source goes on (their bytes already went to the
passthrough). Sources that can wait (files, HTTP push) use `put()`. Parsing runs on this one
thread so metric updates need no per-line locking, and an idle queue flushes the adapters'
multi-line records after `flush_after` seconds.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from exporter.pipeline import Pipeline

_STOP = object()


class Worker:
    def __init__(self, pipeline: Pipeline, max_chunks: int = 128, flush_after: float = 2.0) -> None:
        self.pipeline = pipeline
        self._q: queue.Queue[Any] = queue.Queue(max_chunks)
        self._flush_after = flush_after
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, source: str, lines: list[bytes]) -> bool:
        """Queue without waiting; on a full queue count the lines as dropped and return False."""
        if not lines:
            return True
        try:
            self._q.put_nowait((source, lines))
            return True
        except queue.Full:
            self.pipeline.metrics.count_line(source, "dropped", len(lines))
            return False

    def put(self, source: str, lines: list[bytes], timeout: float | None = None) -> None:
        """Queue, waiting for room (back-pressure for sources that can wait)."""
        if lines:
            self._q.put((source, lines), timeout=timeout)

    def flush_source(self, source: str) -> None:
        """Queue an end-of-stream flush of one source's multi-line records."""
        self._q.put((source, None))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish everything queued, flush every adapter, end the thread."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        p = self.pipeline
        idle_flushed = True
        while True:
            try:
                item = self._q.get(timeout=self._flush_after)
            except queue.Empty:
                if not idle_flushed:
                    p.flush()
                    idle_flushed = True
                continue
            if item is _STOP:
                p.flush()
                return
            source, lines = item
            if lines is None:
                p.flush(source)
            else:
                p.process(source, lines)
                idle_flushed = False
