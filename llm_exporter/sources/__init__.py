"""Sources, named after their transport: stdin (`pipe`), files, a child process, HTTP push.

`build_sources()` makes every source the settings ask for; each frames and counts its bytes
through `base.LineFeed` and hands lines to the `Worker`. The daemon serves their `routes()`,
then `start()`s them, hands them signals and `stop()`s them (`base.Source`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_exporter.sources.base import Source

if TYPE_CHECKING:  # the sources themselves load with build_sources: `replay` needs only LineFeed
    from prometheus_client import CollectorRegistry

    from llm_exporter.limits import Refusals
    from llm_exporter.metrics.internal import Counters
    from llm_exporter.settings import Settings
    from llm_exporter.state import StateStore
    from llm_exporter.worker import Worker

log = logging.getLogger("llm_exporter")

__all__ = ["Source", "build_sources"]


def build_sources(s: Settings, worker: Worker, counters: Counters, *, registry: CollectorRegistry,
                  refusals: Refusals, state: StateStore | None, saved: dict[str, Any],
                  on_end: Callable[[int | None], None]) -> list[Source]:
    """Every source `s` asks for, not started yet: /ingest, stdin, files, a wrapped command.

    `on_end(code)` is called, from any thread, when a source ends the run: stdin at its end when
    it is the only source (None), or the wrapped command's exit (its code).
    """
    from llm_exporter.sources.command import CommandSource
    from llm_exporter.sources.file_tail import FileTail
    from llm_exporter.sources.http_push import Ingest
    from llm_exporter.sources.pipe import PipeSource

    out: list[Source] = []
    if s.http_ingest:
        out.append(Ingest(worker, counters, s.http_ingest_token, s.http_ingest_max_bytes,
                          read_timeout=s.web_read_timeout, refusals=refusals,
                          max_line=s.max_line_bytes, concurrency=s.http_ingest_concurrency))
    if s.read_stdin:
        only = not (s.file or s.http_ingest or s.command)

        def stdin_ended() -> None:
            log.info("stdin reached its end (the program writing into it exited or closed it), and it is "
                     "the only source: stopping")
            on_end(None)

        out.append(PipeSource("stdin", sys.stdin.fileno(), sys.stdout.fileno() if s.passthrough else None,
                              worker, counters, s.max_line_bytes, on_eof=stdin_ended if only else None))
    if s.file:
        tail = FileTail(s.file, worker, counters, start=s.file_start, max_line=s.max_line_bytes,
                        saved=saved.get("files"))
        registry.register(tail)  # llm_exporter_file_glob_files
        if state is not None:
            state.register("files", tail.snapshot)
        out.append(tail)
    if s.command:
        out.append(CommandSource(s.command, worker, counters, passthrough=s.passthrough,
                                 max_line=s.max_line_bytes, on_exit=on_end, kill_after=s.command_kill_after,
                                 on_kill=lambda: refusals.count("child_kill")))
    return out
