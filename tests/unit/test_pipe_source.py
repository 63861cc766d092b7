"""The stdin / child-pipe reader in process: real os.pipe() descriptors, the real worker and pipeline.

What it promises: every byte passes through unchanged and in order, whatever the parser does; each
line is counted once (parsed, `too_long`, or `dropped` when the parser is behind on a pipe); the
partial last line is handed on at end of stream; a regular file waits for the parser instead of
dropping. Truths come from the input itself (newline counts, and the per-line outcomes of
tests/fixtures/samples/ollama.log worked out by hand in test_formats_golden.py), never from our output.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import signal
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.logs import STDERR
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.sources.pipe import CHUNK, PIPE_BUFFER, PipeSource, enlarge_pipe, write_all
from llm_exporter.worker import Worker
from tests.helpers import SAMPLES, parse_metrics, total
from tests.helpers import logged as log_records

#: 12 lines, newline-terminated: line 1 (`routes.go:572: Listening`) is `ignored`, the 11 others are
#: records; 8 GIN access lines (2, 3, 6-11) and one slog `level=ERROR` line (12)
OLLAMA = (SAMPLES / "ollama.log").read_bytes()
OLLAMA_LINES = OLLAMA.split(b"\n")[:-1]
IGNORED = OLLAMA_LINES[0]
LAST = OLLAMA_LINES[-1]  # the `level=ERROR` line
MAX_LINE = 4096
#: still fits the enlarged pipe buffer, so the first read takes it all and frames it in 64 KiB pieces
COPIES = 100
#: never reached when the code is right: it only turns a hang into a failure
GUARD = 60.0


async def until(cond: Callable[[], bool], what: str) -> None:
    """Wait for the exporter's own state to say `cond`."""
    deadline = time.monotonic() + GUARD
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


class Drain:
    """Reads a pipe to its end on a daemon thread (never one that could hold the test run at exit);
    `got` grows as the bytes come, for a test to watch."""

    def __init__(self, fd: int) -> None:
        self.got = bytearray()
        self._fd = fd
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := os.read(self._fd, 1 << 16):
            self.got += chunk

    async def result(self) -> bytes:
        """Everything, once the writer end is closed."""
        await until(lambda: not self._thread.is_alive(), "the end of the passthrough")
        return bytes(self.got)


class Fds:
    """The descriptors a test opened: those still open at its end are closed, so that a failing
    test ends (its readers see EOF) instead of hanging."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.open |= {r, w}
        return r, w

    def close(self, fd: int) -> None:
        self.open.remove(fd)
        os.close(fd)

    def prefilled(self, data: bytes) -> int:
        """A pipe holding `data` with its writer closed: the reader's first read takes everything."""
        r, w = self.pipe()
        assert enlarge_pipe(r) and len(data) <= PIPE_BUFFER
        write_all(w, data)
        self.close(w)
        return r


@pytest.fixture
def fds() -> Iterator[Fds]:
    f = Fds()
    yield f
    for fd in f.open:
        os.close(fd)




def outcomes(m: LLMMetrics, source: str) -> dict[str, int]:
    return {o: n for (s, o), n in m.internal.lines.items() if s == source and n}


def exposition(m: LLMMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return parse_metrics(generate_latest(reg).decode())


def ollama_outcomes(lines: list[bytes]) -> dict[str, int]:
    """Outcomes of whole sample lines, by the hand-made truth of ollama.log."""
    ignored = sum(1 for line in lines if line == IGNORED)
    return {k: v for k, v in {"record": len(lines) - ignored, "ignored": ignored}.items() if v}


async def test_stdin_passes_every_byte_through_and_counts_each_line_once(fds: Fds) -> None:
    """100 copies of a real Ollama log, a line over --max-line-bytes and a last line without its
    newline: the passthrough is the input byte for byte; every line is counted once, the long one as
    `too_long`, the last one handed on at end of stream; the metrics are the sample's, times 100."""
    long_line = b"x" * (MAX_LINE + 904)
    data = OLLAMA * COPIES + long_line + b"\n" + LAST
    assert len(data) > 2 * CHUNK  # framed in three pieces
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    r_out, w_out = fds.pipe()
    ended: list[str] = []
    src = PipeSource("stdin", fds.prefilled(data), w_out, worker, m.source, MAX_LINE,
                     on_eof=lambda: ended.append(threading.current_thread().name))
    assert src.attached is False and src.name == "stdin"
    passthrough = Drain(r_out)
    src.start(asyncio.get_running_loop())
    assert src.attached is True
    await until(src.done.is_set, "stdin's end")
    fds.close(w_out)
    worker.stop()
    assert await passthrough.result() == data
    assert ended == ["source-stdin"]  # once, from the reader, after the last line was handed on
    assert m.internal.bytes["stdin"] == len(data)
    assert outcomes(m, "stdin") == {"record": 11 * COPIES + 1, "ignored": COPIES, "too_long": 1}
    s = exposition(m)
    assert total(s, "llm_http_requests_total", gen_ai_provider_name="ollama") == 8 * COPIES
    assert total(s, "llm_log_messages_total", gen_ai_provider_name="ollama", level="ERROR") == COPIES + 1


async def test_a_pipe_never_waits_for_a_parser_that_is_behind(fds: Fds) -> None:
    """With the parser's queue full, a pipe's lines are counted `dropped`, never waited for: the
    reader goes on and the passthrough still gets every byte. The first 64 KiB piece is queued,
    the lines the two later pieces complete are dropped."""
    data = OLLAMA * COPIES
    m = LLMMetrics()
    worker = Worker(Pipeline(m), max_chunks=1)  # not started yet: nothing leaves the queue
    r_out, w_out = fds.pipe()
    src = PipeSource("stdout", fds.prefilled(data), w_out, worker, m.source, MAX_LINE)
    passthrough = Drain(r_out)
    src.start()
    await until(lambda: m.internal.lines[("stdout", "dropped")] > 0, "lines dropped")
    worker.start()
    await until(src.done.is_set, "the pipe's end")
    fds.close(w_out)
    worker.stop()
    assert await passthrough.result() == data
    queued = data[:CHUNK].split(b"\n")[:-1]  # the lines that end in the first piece
    assert outcomes(m, "stdout") == {**ollama_outcomes(queued), "dropped": data.count(b"\n") - len(queued)}


async def test_a_regular_file_on_stdin_waits_for_the_parser_and_loses_nothing(tmp_path: Path, fds: Fds) -> None:
    """`llm-exporter < app.log`: no writer can stall, so the reader waits for a full queue instead of
    dropping; every line is parsed once the parser runs."""
    data = OLLAMA * COPIES
    log_file = tmp_path / "app.log"
    log_file.write_bytes(data)
    m = LLMMetrics()
    worker = Worker(Pipeline(m), max_chunks=1)
    fd = os.open(log_file, os.O_RDONLY)
    try:
        src = PipeSource("stdin", fd, None, worker, m.source, MAX_LINE)
        src.start()
        # the second piece is framed; on a pipe its lines would be dropped now, a file waits for room
        await until(lambda: m.internal.bytes["stdin"] >= 2 * CHUNK, "two pieces read")
        worker.start()
        await until(src.done.is_set, "the file's end")
        worker.stop()
    finally:
        os.close(fd)
    assert outcomes(m, "stdin") == {"record": 11 * COPIES, "ignored": COPIES}
    assert m.internal.bytes["stdin"] == len(data)


async def test_after_stop_bytes_still_pass_through_but_are_not_counted(fds: Fds) -> None:
    """A graceful stop: what was read before is counted, what comes after only passes through (the
    watched server must not block on a full pipe), and its partial last line is not counted either."""
    before = b"".join(line + b"\n" for line in OLLAMA_LINES[1:6])
    after, more = OLLAMA, b"no newline at the end"
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    r_in, w_in = fds.pipe()
    r_out, w_out = fds.pipe()
    src = PipeSource("stdin", r_in, w_out, worker, m.source, MAX_LINE)
    passthrough = Drain(r_out)
    src.start()
    reader = [t for t in threading.enumerate() if t.name == "source-stdin"]
    assert len(reader) == 1 and reader[0].daemon  # a blocked read never holds the process at exit
    write_all(w_in, before)
    await until(lambda: m.internal.bytes["stdin"] == len(before), "the first lines read")
    src.stop()
    write_all(w_in, after)
    await until(lambda: len(passthrough.got) == len(before + after), "a read after the stop passed through")
    write_all(w_in, more)  # and the next read too
    fds.close(w_in)
    await until(src.done.is_set, "stdin's end")
    fds.close(w_out)
    worker.stop()
    assert await passthrough.result() == before + after + more
    assert m.internal.bytes["stdin"] == len(before)
    assert outcomes(m, "stdin") == {"record": 5}


async def test_a_reader_of_our_output_going_away_stops_the_passthrough_not_the_counting(fds: Fds) -> None:
    """EPIPE on the passthrough: one warning naming the fd, then the lines are still read and counted."""
    first, second = OLLAMA[: len(OLLAMA) // 2 + 1], OLLAMA[len(OLLAMA) // 2 + 1 :]
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    r_in, w_in = fds.pipe()
    r_out, w_out = fds.pipe()
    fds.close(r_out)  # whoever read our stdout is gone
    src = PipeSource("stdin", r_in, w_out, worker, m.source, MAX_LINE)
    with log_records("llm_exporter.source", logging.NOTSET) as logged:
        src.start()
        write_all(w_in, first)
        await until(lambda: m.internal.bytes["stdin"] == len(first), "the first half read")
        write_all(w_in, second)
        fds.close(w_in)
        await until(src.done.is_set, "stdin's end")
    worker.stop()
    fds.close(w_out)
    assert [(r.levelname, r.getMessage()) for r in logged] == [
        ("WARNING", f"passthrough to fd {w_out} stopped: Broken pipe")]
    assert m.internal.bytes["stdin"] == len(OLLAMA)
    assert outcomes(m, "stdin") == {"record": 11, "ignored": 1}


async def test_a_childs_stderr_shares_fd_2_with_our_log_lines_whole_lines_only(
        capfdbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch, fds: Fds) -> None:
    """Passthrough to fd 2 goes through the stderr gate: a log line of ours written while the child is
    in the middle of a line waits for the child's newline, so neither line is broken."""
    monkeypatch.setattr(STDERR, "HOLD", 3600.0)  # however slow the machine, the log line waits
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    r_in, w_in = fds.pipe()
    src = PipeSource("stderr", r_in, STDERR.fd, worker, m.source, MAX_LINE)
    src.start()
    write_all(w_in, b"child begins a line ")
    await until(lambda: m.internal.bytes["stderr"] == 20, "the child's first bytes passed through")
    STDERR.line(b'{"msg": "ours"}\n')
    write_all(w_in, b"and ends it\n")
    fds.close(w_in)
    await until(src.done.is_set, "the child's stderr end")
    worker.stop()
    assert capfdbinary.readouterr().err == b'child begins a line and ends it\n{"msg": "ours"}\n'


@pytest.mark.parametrize("kind", ["directory", "closed fd"])
async def test_stdin_that_cannot_be_read_ends_the_source_with_one_error_line(tmp_path: Path, kind: str) -> None:
    """stdin a directory, or not open at all: one error line naming the source and the reason, the
    source ends (the daemon is told, instead of waiting for ever), nothing is counted."""
    fd = os.open(tmp_path, os.O_RDONLY)
    if kind == "closed fd":
        os.close(fd)
    reason = "[Errno 21] Is a directory" if kind == "directory" else "[Errno 9] Bad file descriptor"
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    ended: list[bool] = []
    src = PipeSource("stdin", fd, None, worker, m.source, MAX_LINE, on_eof=lambda: ended.append(True))
    with log_records("llm_exporter.source", logging.NOTSET) as logged:
        src.start()
        await until(src.done.is_set, "the source's end")
    worker.stop()
    if kind == "directory":
        os.close(fd)
    assert ended == [True]
    assert [(r.levelname, r.getMessage()) for r in logged] == [("ERROR", f"reading stdin failed: {reason}")]
    assert m.internal.bytes["stdin"] == 0 and outcomes(m, "stdin") == {}


async def test_a_read_error_after_a_partial_line_still_hands_that_line_on() -> None:
    """stdin a TCP connection (socket activation) reset by its peer in the middle of a line: the
    bytes already read are not lost, the partial line is counted like at a clean end."""
    first = OLLAMA_LINES[1] + b"\n" + LAST  # a GIN line, then the ERROR line without its newline
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    src = PipeSource("stdin", conn.fileno(), None, worker, m.source, MAX_LINE)
    with log_records("llm_exporter.source", logging.NOTSET) as logged:
        src.start()
        peer.sendall(first)
        await until(lambda: m.internal.bytes["stdin"] == len(first), "the bytes read")
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset, not an end
        await until(src.done.is_set, "the source's end")
    worker.stop()
    conn.close()
    assert [r.getMessage() for r in logged] == ["reading stdin failed: [Errno 104] Connection reset by peer"]
    assert outcomes(m, "stdin") == {"record": 2}
    s = exposition(m)
    assert total(s, "llm_log_messages_total", gen_ai_provider_name="ollama", level="ERROR") == 1


async def test_one_pipes_end_does_not_cut_another_pipes_multi_line_record(fds: Fds) -> None:
    """A wrapped child's stdout ends while its stderr is in the middle of a llama.cpp timing block
    (tests/fixtures/samples/llamacpp.log lines 1-4, one request of 484 output tokens): the block is
    still one request, not cut in two by the flush at stdout's end."""
    block = (SAMPLES / "llamacpp.log").read_bytes().split(b"\n")[:4]
    m = LLMMetrics()
    worker = Worker(Pipeline(m))
    worker.start()
    (err_r, err_w), (out_r, out_w) = fds.pipe(), fds.pipe()
    err = PipeSource("stderr", err_r, None, worker, m.source, MAX_LINE)
    out = PipeSource("stdout", out_r, None, worker, m.source, MAX_LINE)
    err.start()
    out.start()
    write_all(err_w, b"".join(line + b"\n" for line in block[:3]))
    await until(lambda: sum(outcomes(m, "stderr").values()) == 3, "three lines of the block parsed")
    write_all(out_w, OLLAMA_LINES[1] + b"\n")
    fds.close(out_w)
    await until(out.done.is_set, "stdout's end")
    write_all(err_w, block[3] + b"\n")
    fds.close(err_w)
    await until(err.done.is_set, "stderr's end")
    worker.stop()
    s = exposition(m)
    assert total(s, "llm_requests_total", gen_ai_provider_name="llamacpp") == 1
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_provider_name="llamacpp",
                 gen_ai_token_type="output") == 484
    assert total(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_provider_name="llamacpp") == \
        pytest.approx(22.57528)
    assert outcomes(m, "stdout") == {"record": 1}


def _queued_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def test_a_passthrough_write_cut_short_by_a_signal_still_delivers_every_byte(fds: Fds) -> None:
    """A blocking write interrupted by a signal after part of it went out returns a short count:
    the rest is written too, in order."""
    data = bytes(range(256)) * 1024  # 256 KiB: four times what the pipe holds
    r, w = fds.pipe()
    size = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        writer = threading.Thread(target=write_all, args=(w, data))
        writer.start()
        deadline = time.monotonic() + GUARD
        while _queued_bytes(r) < size:  # the writer filled the pipe and waits in write()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert writer.ident is not None
        signal.pthread_kill(writer.ident, signal.SIGUSR1)
        drain = Drain(r)
        writer.join(GUARD)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        fds.close(w)
    assert asyncio.run(drain.result()) == data


def test_enlarge_pipe_is_false_for_a_descriptor_that_is_not_open() -> None:
    """No buffer to grow (and so no lingering between reads) when the fd cannot even be looked at."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert enlarge_pipe(r) is False
