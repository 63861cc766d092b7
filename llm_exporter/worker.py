"""The pipeline thread: one bounded queue between the sources and the parser.

Sources that must never block (stdin, a child's pipes) use `offer()`: when the queue is full the
lines are counted as `dropped` and the source goes on (their bytes already went to the
passthrough). Sources that can wait (files, HTTP push) use `put()`. Parsing runs on this one
thread so metric updates need no per-line locking, and an idle queue flushes the adapters'
multi-line records after `flush_after` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from llm_exporter.framing import TooLong
from llm_exporter.pipeline import Pipeline

log = logging.getLogger("llm_exporter.worker")


@dataclass(slots=True, frozen=True)
class Batch:
    """Lines of one source to parse; `commit` runs under the apply lock once they are counted."""

    source: str
    lines: list[bytes]
    commit: Callable[[], None] | None = None
    stream: str | None = None


@dataclass(slots=True, frozen=True)
class Flush:
    """End of one stream: hand out its multi-line records (`forget`: drop its parse state too)."""

    source: str
    stream: str | None = None
    forget: bool = False


@dataclass(slots=True, frozen=True)
class Call:
    """Run `fn` on the pipeline thread between two batches; its result or error goes to `done`."""

    fn: Callable[[], None]
    done: Future[None]


@dataclass(slots=True, frozen=True)
class Stop:
    """Finish: flush every stream and end the thread."""


Message = Batch | Flush | Call | Stop


class Worker:
    """Owns the queue and the pipeline thread."""

    def __init__(self, pipeline: Pipeline, max_chunks: int = 128, flush_after: float = 2.0) -> None:
        self.pipeline = pipeline
        self._q: queue.Queue[Message] = queue.Queue(max_chunks)
        self._flush_after = flush_after
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, source: str, lines: list[bytes]) -> bool:
        """Queue without waiting; on a full queue count the lines as dropped and return False."""
        if not lines:
            return True
        try:
            self._q.put_nowait(Batch(source, lines))
            return True
        except queue.Full:  # a too-long line's marker was counted too_long already
            dropped = sum(1 for line in lines if type(line) is not TooLong)
            self.pipeline.metrics.internal.count_line(source, "dropped", dropped)
            return False

    def put(self, source: str, lines: list[bytes], timeout: float | None = None,
            commit: Callable[[], None] | None = None, stream: str | None = None) -> None:
        """Queue, waiting for room (back-pressure for sources that can wait).

        `commit` runs on the pipeline thread under the apply lock right after these lines are
        counted (a file source records its applied offset there). `stream` keys the per-stream
        parse state (multi-line records, CRI partials) when one label covers many streams.
        """
        if lines or commit is not None:
            self._q.put(Batch(source, lines, commit, stream), timeout=timeout)

    def flush_source(self, source: str, stream: str | None = None, forget: bool = False) -> None:
        """Queue an end-of-stream flush of one stream's multi-line records (`forget`: drop its state)."""
        self._q.put(Flush(source, stream, forget))

    def call(self, fn: Callable[[], None], timeout: float | None = None) -> None:
        """Run `fn` on the pipeline thread between two batches and wait for it (a config swap
        must not race the thread that owns the parse state); directly when that thread is not
        running yet."""
        if not self._thread.is_alive() or threading.current_thread() is self._thread:
            fn()
            return
        done: Future[None] = Future()
        self._q.put(Call(fn, done))
        done.result(timeout)

    def stop(self, timeout: float = 120.0) -> None:
        """Finish everything queued, flush every adapter, end the thread.

        The queue holds at most `max_chunks` chunks of up to 64 KiB (about a second of parsing),
        so the timeout only guards against a pipeline that hangs; if it ever expires, what was
        left unparsed is logged rather than silently lost.
        """
        if self._thread.is_alive():
            self._q.put(Stop())
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("pipeline did not finish in %.0f s; %d queued chunks left unparsed", timeout,
                          self._q.qsize())

    def _run(self) -> None:
        p = self.pipeline
        idle_flushed = True
        while True:
            try:
                msg = self._q.get(timeout=self._flush_after)
            except queue.Empty:
                if not idle_flushed:
                    p.flush()
                    idle_flushed = True
                continue
            match msg:
                case Batch(source, lines, commit, stream):
                    p.process(source, lines, commit=commit, stream=stream)
                    idle_flushed = False
                case Flush(source, stream, forget):
                    p.flush(stream or source, forget=forget)
                case Call(fn, done):
                    try:
                        fn()
                        done.set_result(None)
                    except BaseException as e:  # handed to the caller, who reports it
                        done.set_exception(e)
                case Stop():
                    p.flush()
                    return
