"""Which sources the settings make, and that each gets the settings meant for it.

Each source is built by `build_sources` from real settings, then run for real: stdin on a pipe the
test writes, /ingest on aiohttp's test server, a followed file, a child Python. The expected
counts are the inputs written here, counted by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from llm_exporter.limits import Refusals
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import StartupError
from llm_exporter.settings import Settings
from llm_exporter.sources import Source, build_sources
from llm_exporter.sources.command import CommandSource
from llm_exporter.sources.file_tail import FileTail
from llm_exporter.sources.http_push import Ingest
from llm_exporter.sources.pipe import PipeSource
from llm_exporter.state import StateStore
from llm_exporter.worker import Worker

#: a guard against a hang only; nothing is timed
GUARD = 30


class Built:
    """build_sources on real settings, a real worker and pipeline; `ends` records `on_end` calls."""

    def __init__(self, state: StateStore | None = None, saved: dict[str, Any] | None = None, max_chunks: int = 64,
                 start: bool = True, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.metrics = LLMMetrics()
        self.worker = Worker(Pipeline(self.metrics), max_chunks=max_chunks)
        if start:
            self.worker.start()
        self.registry = CollectorRegistry(auto_describe=False)
        self.refusals = Refusals()
        self.ends: list[int | None] = []
        self.ended = threading.Event()

        def on_end(code: int | None) -> None:
            self.ends.append(code)
            self.ended.set()

        self.sources: list[Source] = build_sources(
            self.settings, self.worker, self.metrics.source, registry=self.registry, refusals=self.refusals,
            state=state, saved=saved if saved is not None else {}, on_end=on_end)

    def kinds(self) -> list[type]:
        return [type(s) for s in self.sources]

    def lines(self, source: str) -> dict[str, int]:
        return {o: n for (s, o), n in self.metrics.internal.lines.items() if s == source and n}

    def finish(self, *started: Source) -> None:
        for s in started:
            s.stop()
        self.worker.stop()


class Pipe:
    """Our stdin and stdout in a test: a pipe the test writes, and a file."""

    def __init__(self, tmp_path: Path) -> None:
        r, self.fd = os.pipe()
        self.out = tmp_path / "stdout"
        self.stdin = os.fdopen(r, "rb")
        self.stdout = open(self.out, "wb")  # noqa: SIM115 - closed by `release`
        self.open = True

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """In the test itself: pytest sets its own sys.stdout again once the fixtures are set up."""
        monkeypatch.setattr(sys, "stdin", self.stdin)
        monkeypatch.setattr(sys, "stdout", self.stdout)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        if self.open:
            os.close(self.fd)
            self.open = False

    def release(self) -> None:
        self.close()
        self.stdin.close()
        self.stdout.close()


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Pipe]:
    pipe = Pipe(tmp_path)
    try:
        yield pipe
    finally:
        monkeypatch.undo()
        pipe.release()


STDIN = b'{"request_id":"a","model":"m","status":"success","duration_ms":5}\nplain text\n' + b"x" * 81 + b"\n"


@pytest.mark.parametrize("passthrough", [True, False])
def test_stdin_alone_is_read_passed_through_and_ends_the_run_at_its_end(
        stdin_pipe: Pipe, passthrough: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No other source: stdin is read (its bytes copied to stdout unless --no-passthrough, lines over
    --max-line-bytes too_long) and its end stops the run (`on_end(None)`)."""
    caplog.set_level(logging.INFO, logger="llm_exporter")
    w = stdin_pipe
    w.install(monkeypatch)
    b = Built(passthrough=passthrough, max_line_bytes=80)  # the request is 66 bytes
    assert b.kinds() == [PipeSource] and [s.name for s in b.sources] == ["stdin"]
    b.sources[0].start(None)
    w.write(STDIN)
    w.close()
    assert b.ended.wait(GUARD)
    b.finish(*b.sources)
    assert b.ends == [None]
    assert w.out.read_bytes() == (STDIN if passthrough else b"")
    assert sum(b.lines("stdin").values()) == 3 and b.lines("stdin")["too_long"] == 1
    assert b.lines("stdin")["record"] == 1
    assert "stdin reached its end (the program writing into it exited or closed it), and it is the only " \
           "source: stopping" in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(("others", "kinds"), [
    ({"http_ingest": True}, [Ingest, PipeSource]),
    ({"file": ["/nonexistent/*.log"]}, [PipeSource, FileTail]),
    ({"command": [sys.executable, "-c", "pass"]}, [PipeSource, CommandSource]),
])
def test_stdin_beside_another_source_does_not_end_the_run(stdin_pipe: Pipe, others: dict[str, Any], kinds: list[type],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--stdin with another source: its end is only its end; the other source decides."""
    w = stdin_pipe
    w.install(monkeypatch)
    b = Built(stdin=True, **others)
    assert b.kinds() == kinds
    stdin = next(s for s in b.sources if isinstance(s, PipeSource))
    stdin.start(None)
    w.write(b"one line\n")
    w.close()
    assert stdin.done.wait(GUARD)
    b.finish(stdin)
    assert b.ends == []
    assert sum(b.lines("stdin").values()) == 1


@pytest.mark.parametrize(("settings", "kinds"), [
    ({"http_ingest": True}, [Ingest]),
    ({"file": ["/nonexistent/*.log"]}, [FileTail]),
    ({"command": ["true"]}, [CommandSource]),
    ({"http_ingest": True, "file": ["/nonexistent/*.log"], "command": ["true"]}, [Ingest, FileTail, CommandSource]),
    ({"stdin": False}, []),
])
def test_another_source_replaces_stdin(settings: dict[str, Any], kinds: list[type]) -> None:
    b = Built(**settings)
    b.finish()
    assert b.kinds() == kinds


async def test_ingest_gets_its_token_limits_and_timeout() -> None:
    """--http-ingest-token, --http-ingest-max-bytes, --max-line-bytes, --web-read-timeout reach /ingest,
    and a body not received in time is a refusal counted where the daemon counts them."""
    b = Built(http_ingest=True, http_ingest_token="tok", http_ingest_max_bytes=100, max_line_bytes=20,
              web_read_timeout=0.2, http_ingest_concurrency=1)
    (ingest,) = b.sources
    assert ingest.name == "http"
    app = web.Application()
    app.add_routes(ingest.routes())
    never = threading.Event()

    async def stalls() -> Any:
        yield b"{}\n"
        await asyncio_wait(never)

    try:
        async with TestClient(TestServer(app)) as client:
            auth = {"Authorization": "Bearer tok"}
            assert (await client.post("/ingest", data=b"{}\n")).status == 401
            r = await client.post("/ingest", data=b"{}\n" * 34, headers=auth)  # 102 bytes
            assert (r.status, await r.text()) == (413, "body of 102 bytes is over the limit of 100\n")
            r = await client.post("/ingest", data=b'{"k":"' + b"a" * 20 + b'"}\n{"k":1}\n', headers=auth)
            assert r.status == 204
            r = await client.post("/ingest", data=stalls(), headers=auth)
            never.set()
            assert (r.status, await r.text()) == (408, "body not received within 0.2 s (--web-read-timeout)\n")
    finally:
        b.finish(ingest)
    assert b.refusals.counts["body_timeout"] == 1
    assert b.lines("http")["too_long"] == 1 and sum(b.lines("http").values()) == 2


async def test_ingest_takes_as_many_pushes_at_once_as_its_concurrency() -> None:
    """--http-ingest-concurrency 5: five pushes are read and judged while the queue is full (their
    bytes counted, their lines waiting for room); once there is room, all five are queued."""
    b = Built(http_ingest=True, http_ingest_concurrency=5, max_chunks=1, start=False)
    (ingest,) = b.sources
    b.worker.put("other", [b"fills the queue"])
    app = web.Application()
    app.add_routes(ingest.routes())
    body = b'{"request_id":"r","model":"m","status":"success","duration_ms":5}\n'
    try:
        async with TestClient(TestServer(app)) as client:
            pushes = [asyncio.ensure_future(client.post("/ingest", data=body)) for _ in range(5)]
            await asyncio.get_running_loop().run_in_executor(
                None, wait_for, lambda: b.metrics.internal.bytes["http"] == 5 * len(body))
            b.worker.start()
            assert [(await p).status for p in pushes] == [204] * 5
    finally:
        b.finish(ingest)
    assert b.lines("http") == {"record": 5}


async def asyncio_wait(event: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait, GUARD)


def test_files_are_followed_from_the_start_asked_and_resumed_from_the_saved_state(tmp_path: Path) -> None:
    """--file GLOB --file-start beginning: what the file holds is read (too-long lines held to
    --max-line-bytes), the glob's file count is served, and the offsets are saved in the `files`
    section; a second run given that section reads only what was added since."""
    log = tmp_path / "app.log"
    first = b"a line\n" + b"y" * 50 + b"\nanother\n"
    log.write_bytes(first)
    store = StateStore(tmp_path / "state")
    store.prepare()
    b = Built(state=store, file=[str(tmp_path / "*.log")], file_start="beginning", max_line_bytes=40)
    assert b.kinds() == [FileTail]
    b.sources[0].start(None)
    wait_for(lambda: sum(b.lines("file").values()) == 3)
    b.sources[0].stop()
    b.worker.stop()
    assert b.lines("file")["too_long"] == 1
    glob = {s.labels["glob"]: s.value for m in b.registry.collect() for s in m.samples
            if m.name == "llm_exporter_file_glob_files"}
    assert glob == {str(tmp_path / "*.log"): 1}
    store.checkpoint()
    saved = store.load()
    assert [v["offset"] for v in saved["files"].values()] == [len(first)]

    with log.open("ab") as f:
        f.write(b"added later\n")
    again = Built(state=None, saved=saved, file=[str(tmp_path / "*.log")], file_start="beginning")
    again.sources[0].start(None)
    wait_for(lambda: sum(again.lines("file").values()) >= 1)
    again.finish(*again.sources)
    assert sum(again.lines("file").values()) == 1  # only the added line: the saved offset was used

    fresh = Built(file=[str(tmp_path / "*.log")])  # --file-start end (the default), no saved state
    fresh.sources[0].start(None)
    wait_for(lambda: glob_files(fresh) == 1)  # the first scan is done: the file is known, at its end
    with log.open("ab") as f:
        f.write(b"one more\n")
    wait_for(lambda: sum(fresh.lines("file").values()) >= 1)
    fresh.finish(*fresh.sources)
    assert sum(fresh.lines("file").values()) == 1


def glob_files(b: Built) -> float | None:
    for m in b.registry.collect():
        for s in m.samples:
            if m.name == "llm_exporter_file_glob_files":
                return s.value
    return None


def wait_for(cond: Any) -> None:
    """Wait on the exporter's own counts (polled; nothing is asserted on time)."""
    deadline = time.monotonic() + GUARD
    while not cond():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def test_the_command_gets_its_passthrough_max_line_and_grace_time(capfd: pytest.CaptureFixture[str]) -> None:
    """-- COMMAND: its output passed through, lines over --max-line-bytes too_long; a child still
    running --command-kill-after after the stop signal is killed, counted as a `child_kill`
    refusal, and its exit code (128+9) ends the run."""
    out = "ready\n" + "z" * 60 + "\n"
    script = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              f"sys.stdout.write({out!r}); sys.stdout.flush()\ntime.sleep(60)")
    b = Built(command=[sys.executable, "-c", script], max_line_bytes=40, command_kill_after=0.3)
    (cmd,) = b.sources
    assert isinstance(cmd, CommandSource)
    cmd.start(None)
    try:
        wait_for(lambda: b.metrics.internal.bytes.get("stdout", 0) == len(out))
        cmd.forward(signal.SIGTERM)
        assert b.ended.wait(GUARD)
    finally:
        b.finish(cmd)
    assert b.ends == [128 + signal.SIGKILL]
    assert b.refusals.counts["child_kill"] == 1
    assert b.lines("stdout")["too_long"] == 1 and sum(b.lines("stdout").values()) == 2
    assert capfd.readouterr().out == out


def test_the_command_without_passthrough_writes_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    b = Built(command=[sys.executable, "-c", "print('hello')"], passthrough=False)
    (cmd,) = b.sources
    cmd.start(None)
    try:
        assert b.ended.wait(GUARD)
    finally:
        b.finish(cmd)
    assert b.ends == [0] and b.refusals.counts["child_kill"] == 0
    assert sum(b.lines("stdout").values()) == 1
    assert capfd.readouterr().out == ""


def test_an_unknown_command_is_a_start_up_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    b = Built(command=[missing, "serve"])
    try:
        with pytest.raises(StartupError) as e:
            b.sources[0].start(None)
    finally:
        b.finish()
    assert str(e.value) == f"cannot run {missing!r}: No such file or directory"
    assert b.ends == []
