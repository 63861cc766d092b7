"""The file follower in-process, on real files: what it reads, counts, saves, logs, and when.

Each test drives the real `FileTail` in front of a real pipeline thread. Most tests run the
follower's passes themselves (`tail._scan()` is the full pass its thread makes) on a clock the test
moves, so partial-line, drain and rescan times are exact and nothing is slept on; the threaded tests
wait on the follower's own state (lines handed over, offsets applied), each wait bounded. Every
expectation is counted from what the test wrote, never read back from the follower's own output.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_exporter.framing import TooLong
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.sources import file_tail
from llm_exporter.sources.file_tail import FileTail, _Inotify
from llm_exporter.worker import Worker

SRC = "llm_exporter.source"


def line(i: int) -> bytes:
    """One app-JSON request line (a `record` for the pipeline), newline included."""
    return orjson.dumps({"request_id": f"r{i}", "model": "m", "status": "success", "duration_ms": 5 + i,
                         "output_tokens": i % 7 + 1}) + b"\n"


def lines(*ks: int) -> list[bytes]:
    """What the parser must be handed for those lines: each without its newline."""
    return [line(k)[:-1] for k in ks]


def body(*ks: int) -> bytes:
    return b"".join(line(k) for k in ks)


def sid(path: Path) -> str:
    """The follower's stream id of the file now at `path` (its identity, not its name)."""
    st = os.stat(path)
    return f"file:{st.st_dev}:{st.st_ino}"


def key(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


class Clock:
    """The follower's `time.monotonic`, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t


class Feed(Worker):
    """A real worker (pipeline thread) that also keeps what each file's stream was handed, in order."""

    def __init__(self, metrics: LLMMetrics) -> None:
        super().__init__(Pipeline(metrics), max_chunks=64)
        self.got: dict[str | None, list[bytes]] = {}
        self.order: list[str | None] = []  # the stream of each batch that carried lines
        self.sources: set[str] = set()
        self.batches = 0
        self.on_put: Callable[[], None] | None = None

    def put(self, source: str, lines: list[bytes], timeout: float | None = None,
            commit: Callable[[], None] | None = None, stream: str | None = None) -> None:
        self.sources.add(source)
        self.batches += 1
        if lines:
            self.got.setdefault(stream, []).extend(lines)
            self.order.append(stream)
        super().put(source, lines, timeout=timeout, commit=commit, stream=stream)
        if self.on_put is not None:
            self.on_put()

    def settle(self) -> None:
        """Return once every batch handed so far is parsed, counted and committed."""
        self.call(lambda: None, timeout=20)


class Parts:
    """A metrics registry, a started `Feed`, and the followers made from them (closed at the end)."""

    def __init__(self) -> None:
        self.metrics = LLMMetrics()
        self.feed = Feed(self.metrics)
        self.feed.start()
        self.tails: list[FileTail] = []

    def stepped(self, globs: list[str | Path], **kw: Any) -> FileTail:
        """A follower whose passes the test runs itself (no thread; `start()` would start one)."""
        kw.setdefault("use_inotify", False)
        tail = FileTail([str(g) for g in globs], self.feed, self.metrics.source, **kw)
        tail._count = self.metrics.source("file")
        self.tails.append(tail)
        return tail

    def threaded(self, globs: list[str | Path], **kw: Any) -> FileTail:
        tail = FileTail([str(g) for g in globs], self.feed, self.metrics.source, **kw)
        self.tails.append(tail)
        return tail

    def snapshot(self, tail: FileTail) -> dict[str, Any]:
        self.feed.settle()
        with self.metrics.lock:
            return tail.snapshot()

    def count(self, outcome: str) -> int:
        return self.metrics.internal.lines.get(("file", outcome), 0)

    def nbytes(self) -> int:
        return self.metrics.internal.bytes.get("file", 0)

    def shut(self, tail: FileTail) -> None:
        """What stopping does to a follower (its thread closes its files), for one run without one."""
        if tail._thread.is_alive():
            tail.stop()
        elif tail._thread.ident is None:  # never started: close what its thread would have
            for s in tail._streams.values():
                os.close(s.fd)
            if tail._inotify is not None:
                tail._inotify.close()
        os.close(tail._wake_r)
        os.close(tail._wake_w)
        self.tails.remove(tail)

    def close(self) -> None:
        for tail in list(self.tails):
            self.shut(tail)
        self.feed.stop(timeout=20)


@pytest.fixture
def parts() -> Iterator[Parts]:
    p = Parts()
    yield p
    p.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(1000.0)
    monkeypatch.setattr(file_tail, "time", c)  # the follower's clock only
    return c


def full_pass(tail: FileTail) -> None:
    """What the follower's thread does on a full pass: scan, read, then hand out stale partial lines."""
    tail._scan()
    tail._flush_partials()


def source_logs(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SRC and r.levelno >= level]


def open_fds() -> set[int]:
    """This process's open descriptors (not counting the one that lists them)."""
    out = set()
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            os.fstat(fd)
        except OSError:
            continue
        out.add(fd)
    return out


def open_on(directory: Path) -> list[str]:
    """Paths under `directory` this process holds a descriptor on (a deleted one ends in ' (deleted)')."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            out.append(target)
    return sorted(out)


def wait_until(cond: Callable[[], bool], what: str) -> None:
    """Wait on the follower's own state (bounded, so a broken follower fails instead of hanging)."""
    deadline = time.monotonic() + 20
    while not cond():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.005)


# -- where reading starts -----------------------------------------------------------------------

BIG = 1 << 20


@pytest.mark.parametrize(("content", "start_at"), [
    (b"", 0),
    (b"\n", 1),
    (b"a\nb\n", 4),
    (b"a\nb\nc", 4),  # the last newline, not the first
    (b"abc", 0),  # no newline at all: the whole partial line is the start of the next one
    (b"\nabc", 1),  # a newline as the very first byte
    (b"x" * 10 + b"\n" + b"y" * 70_000, 11),  # the newline lies in an earlier 64 KiB block
    (b"y" * 600_000 + b"\n" + b"z" * 10, 600_001),
    (b"a\n" + b"y" * (BIG + 100), 0),  # no newline in the last 1 MiB: from the start
], ids=["empty", "newline", "two-lines", "partial", "no-newline", "leading-newline", "earlier-block",
        "big-file", "beyond-1MiB"])
def test_file_start_end_begins_after_the_last_complete_line(
        tmp_path: Path, parts: Parts, content: bytes, start_at: int) -> None:
    """--file-start end (the default) skips what a file held at start-up, up to its last newline:
    the partial line after it is the start of the first line read."""
    log = tmp_path / "app.log"
    log.write_bytes(content)
    tail = parts.stepped([log], max_line=4 * BIG)
    full_pass(tail)
    append(log, b"tail\n")
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got.get(sid(log), []) == (content[start_at:] + b"tail\n").split(b"\n")[:-1]
    assert parts.nbytes() == len(content) - start_at + 5
    assert parts.snapshot(tail) == {key(log): {"path": str(log), "offset": len(content) + 5,
                                               "fp": (content + b"tail\n")[:64].hex()}}


@pytest.mark.parametrize("start", [None, "end", "beginning"])
def test_file_start_applies_only_to_files_there_at_start_up(
        tmp_path: Path, parts: Parts, start: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """A file present at start-up begins at --file-start; one created later is read from its start."""
    caplog.set_level(logging.INFO, logger=SRC)
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_bytes(body(0, 1, 2))
    tail = parts.stepped([tmp_path / "*.log"], **({} if start is None else {"start": start}))
    full_pass(tail)
    new.write_bytes(body(10, 11))
    append(old, body(3))
    full_pass(tail)
    parts.feed.settle()
    skipped = start != "beginning"
    assert parts.feed.got[sid(old)] == lines(3) if skipped else lines(0, 1, 2, 3)
    assert parts.feed.got[sid(new)] == lines(10, 11)
    assert parts.count("record") == (3 if skipped else 6)
    assert parts.nbytes() == len(body(3, 10, 11)) + (0 if skipped else len(body(0, 1, 2)))
    follows = [(r.getMessage(), r.fields) for r in caplog.records  # type: ignore[attr-defined]
               if r.name == SRC and r.getMessage().startswith("following")]
    assert follows == [(f"following {old}", {"path": str(old), "offset": len(body(0, 1, 2)) if skipped else 0}),
                       (f"following {new}", {"path": str(new), "offset": 0})]


# -- appends, partial lines, long lines ---------------------------------------------------------

def test_appends_are_read_and_a_partial_line_waits_for_its_newline_or_five_quiet_seconds(
        tmp_path: Path, parts: Parts, clock: Clock) -> None:
    """Complete lines go out as they are read; a partial last line is held (its bytes not counted
    yet) until its newline comes, or until the file has not grown for 5 s; a pass that reads
    nothing hands nothing to the parser."""
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    tail = parts.stepped([log], start="beginning")
    full_pass(tail)
    assert parts.snapshot(tail) == {}  # nothing read, nothing applied
    s = sid(log)

    append(log, line(0) + line(1)[:10])
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[s] == lines(0)
    assert parts.nbytes() == len(line(0))
    assert parts.snapshot(tail)[key(log)]["offset"] == len(line(0))

    batches = parts.feed.batches
    append(log, line(1)[10:20])  # the partial line grows, still no newline: nothing to hand on
    full_pass(tail)
    assert parts.feed.batches == batches
    append(log, line(1)[20:] + line(2)[:-1])  # line 2 without its newline
    clock.t += 3
    full_pass(tail)
    batches = parts.feed.batches
    clock.t += 4.999  # 4.999 s since the file last grew
    full_pass(tail)
    assert parts.feed.batches == batches  # nothing new, nothing handed on
    parts.feed.settle()
    assert parts.feed.got[s] == lines(0, 1)
    assert parts.snapshot(tail)[key(log)]["offset"] == len(body(0, 1))

    clock.t += 0.001  # 5 s exactly
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[s] == lines(0, 1, 2)
    assert parts.nbytes() == len(body(0, 1, 2)) - 1
    assert parts.snapshot(tail)[key(log)]["offset"] == len(body(0, 1, 2)) - 1

    append(log, b"\n" + line(3))  # the newline that came too late ends an empty line
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[s] == [*lines(0, 1, 2), b"", *lines(3)]
    assert parts.count("record") == 4
    assert parts.nbytes() == log.stat().st_size
    assert parts.feed.sources == {"file"}
    assert {src for src, _ in parts.metrics.internal.lines} == {"file"}


def test_lines_over_max_line_bytes_are_counted_too_long_and_shown_with_their_file(
        tmp_path: Path, parts: Parts, clock: Clock) -> None:
    """A line over --max-line-bytes counts once as too_long (its reject names the file and line); its
    bytes count as they are read, even before its end is seen, and it waits for its end however long
    the file is quiet (at the end of a rotated file, closing ends it)."""
    log = tmp_path / "app.log"
    log.write_bytes(line(0) + b"x" * 300 + b"\n" + line(1))
    tail = parts.stepped([log], start="beginning", max_line=200)
    full_pass(tail)
    parts.feed.settle()
    got = parts.feed.got[sid(log)]
    assert got == [lines(0)[0], b"x" * 200, lines(1)[0]] and type(got[1]) is TooLong
    assert (parts.count("too_long"), parts.count("record")) == (1, 2)
    rejects = [(r.source, r.lineno, r.outcome) for r in parts.feed.pipeline.rejects]
    assert rejects == [(str(log), 2, "too_long")]

    append(log, b"y" * 250)  # over the limit, no newline yet: skipped, but its bytes are read
    full_pass(tail)
    parts.feed.settle()
    assert parts.nbytes() == log.stat().st_size
    assert parts.count("too_long") == 1
    clock.t += 5
    full_pass(tail)
    parts.feed.settle()
    assert parts.count("too_long") == 1
    append(log, b"y" * 10 + b"\n" + line(2))
    full_pass(tail)
    parts.feed.settle()
    assert parts.count("too_long") == 2
    assert parts.feed.got[sid(log)][3:] == [b"y" * 200, *lines(2)]
    assert [(r.source, r.lineno, r.outcome) for r in parts.feed.pipeline.rejects][1:] == [(str(log), 4, "too_long")]
    assert parts.nbytes() == log.stat().st_size
    assert parts.snapshot(tail)[key(log)]["offset"] == log.stat().st_size


def test_a_stop_during_a_long_read_ends_it_after_the_chunk_being_handed_on(tmp_path: Path, parts: Parts) -> None:
    """stop() does not wait for a large backlog to be read: reading ends after the current 64 KiB."""
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(line(k) for k in range(3000)))  # about 250 KiB
    tail = parts.stepped([log], start="beginning")
    parts.feed.on_put = tail._stop.set
    tail._scan()
    parts.feed.settle()
    first = log.read_bytes()[:65536]
    assert parts.feed.got[sid(log)] == first.split(b"\n")[:-1]
    assert tail._streams[(log.stat().st_dev, log.stat().st_ino)].offset == 65536


# -- rotation -----------------------------------------------------------------------------------

def test_rename_rotation_finishes_the_old_file_first_and_closes_it_five_quiet_seconds_later(
        tmp_path: Path, parts: Parts, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A file renamed out of the glob is read to its end before its successor, keeps the path it was
    opened under in the checkpoint, gets its last partial line handed out, and is closed (its parse
    state and offset dropped) once it has not grown for 5 s. A rename within the glob only renames."""
    caplog.set_level(logging.INFO, logger=SRC)
    log = tmp_path / "app.log"
    log.write_bytes(body(0, 1, 2))
    tail = parts.stepped([log, tmp_path / "app.log.keep*"], start="beginning", partial_after=3600,
                         max_line=200)
    full_pass(tail)
    first, first_key = sid(log), key(log)

    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", body(3, 4) + line(5)[:-1])  # the writer has not reopened yet
    log.write_bytes(body(10, 11))
    full_pass(tail)
    parts.feed.settle()
    second = sid(log)
    assert parts.feed.got[first] == lines(0, 1, 2, 3, 4)
    assert parts.feed.got[second] == lines(10, 11)
    assert parts.feed.order == [first, first, second]  # the old file's rest before the new file
    assert parts.snapshot(tail)[first_key] == {"path": str(log), "offset": len(body(0, 1, 2, 3, 4)),
                                               "fp": body(0, 1, 2)[:64].hex()}

    clock.t += 4.999
    full_pass(tail)
    assert str(tmp_path / "app.log.1") in open_on(tmp_path)  # quiet for 4.999 s: still open
    clock.t += 0.001
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[first] == lines(0, 1, 2, 3, 4, 5)  # its partial last line handed out
    assert open_on(tmp_path) == [str(log)]
    assert first_key not in parts.snapshot(tail)
    assert first not in parts.feed.pipeline.stream_names
    assert set(parts.feed.pipeline._sources) == {second}
    assert parts.feed.sources == {"file"}
    assert f"finished {log} (rotated away)" in source_logs(caplog)

    # a rename that stays inside the globs: same file, new name, nothing read twice
    append(log, line(12))
    os.rename(log, tmp_path / "app.log.keep")
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[second] == lines(10, 11, 12)
    assert parts.feed.pipeline.stream_names[second] == str(tmp_path / "app.log.keep")
    assert parts.snapshot(tail)[key(tmp_path / "app.log.keep")]["path"] == str(tmp_path / "app.log.keep")

    # a rotated file whose last line is over the limit: that line counts too_long when it is closed
    log.write_bytes(body(20))
    full_pass(tail)
    third = sid(log)
    append(log, b"z" * 300)
    os.rename(log, tmp_path / "app.log.2")
    full_pass(tail)
    clock.t += 5
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[third] == [*lines(20), b"z" * 200]
    assert parts.count("too_long") == 1
    assert parts.count("record") == 10
    assert parts.nbytes() == (len(body(0, 1, 2, 3, 4, 5)) - 1 + len(body(10, 11, 12, 20)) + 300)


def test_deleted_files_are_finished_and_closed_so_their_space_is_freed(
        tmp_path: Path, parts: Parts, clock: Clock) -> None:
    """A followed file that is deleted (even one never written to) is finished after 5 quiet seconds:
    no descriptor keeps its blocks allocated, no offset of it is saved."""
    full, empty = tmp_path / "a.log", tmp_path / "b.log"
    full.write_bytes(body(0, 1))
    empty.write_bytes(b"")
    tail = parts.stepped([tmp_path / "*.log"], start="beginning")
    full_pass(tail)
    assert list(parts.snapshot(tail)) == [key(full)]
    full.unlink()
    empty.unlink()
    full_pass(tail)
    assert open_on(tmp_path) == sorted([f"{full} (deleted)", f"{empty} (deleted)"])
    clock.t += 5
    full_pass(tail)
    parts.feed.settle()
    assert open_on(tmp_path) == []
    assert parts.snapshot(tail) == {}
    assert parts.feed.pipeline._sources == {}
    assert parts.feed.sources == {"file"}
    assert parts.count("record") == 2


def test_copytruncate_and_rewrites_are_read_again_from_the_start(
        tmp_path: Path, parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    """A file that shrank, or whose first bytes changed, is read again from byte 0 in the same pass;
    a partial line held from before is dropped, and the checkpoint says offset 0 at once."""
    caplog.set_level(logging.INFO, logger=SRC)
    log = tmp_path / "app.log"
    log.write_bytes(body(0, 1, 2) + b'{"held')
    tail = parts.stepped([log], start="beginning")
    full_pass(tail)
    s, k = sid(log), key(log)
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    full_pass(tail)
    assert parts.snapshot(tail) == {k: {"path": str(log), "offset": 0, "fp": ""}}
    append(log, body(3))
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[s] == lines(0, 1, 2, 3)

    # rewritten in place, longer than what was read: the fingerprint says start over
    with open(log, "r+b") as f:
        f.write(body(40, 41, 42))
    tail._read_all()  # the pass an inotify "modified" event brings: it reads the new content too
    parts.feed.settle()
    assert parts.feed.got[s] == lines(0, 1, 2, 3, 40, 41, 42)
    assert (parts.count("record"), parts.count("too_long")) == (7, 0)
    assert parts.nbytes() == len(body(0, 1, 2, 3, 40, 41, 42))
    assert parts.snapshot(tail)[k] == {"path": str(log), "offset": len(body(40, 41, 42)),
                                       "fp": body(40, 41, 42)[:64].hex()}
    assert [m for m in source_logs(caplog) if "from the start" in m] == [
        f"{log} shrank: reading it again from the start",
        f"{log} was rewritten: reading it again from the start"]

    # truncated before a line of it was read (--file-start end skipped what it held)
    quiet = tmp_path / "quiet.log"
    quiet.write_bytes(body(50))
    other = parts.stepped([quiet])
    full_pass(other)
    os.truncate(quiet, 0)
    full_pass(other)
    assert parts.snapshot(other) == {key(quiet): {"path": str(quiet), "offset": 0, "fp": ""}}
    assert parts.feed.sources == {"file"}
    assert {src for src, _ in parts.metrics.internal.lines} == {"file"}
    assert set(parts.feed.pipeline._sources) == {s, sid(quiet)}


def test_a_young_file_is_checked_by_the_bytes_it_had(tmp_path: Path, parts: Parts) -> None:
    """A file shorter than the fingerprint grows without being taken for a rewritten one."""
    log = tmp_path / "app.log"
    log.write_bytes(b"a\n")
    tail = parts.stepped([log], start="beginning")
    full_pass(tail)
    append(log, body(0, 1))
    full_pass(tail)
    append(log, body(2))
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[sid(log)] == [b"a", *lines(0, 1, 2)]
    assert parts.nbytes() == log.stat().st_size


# -- restart from a checkpoint ------------------------------------------------------------------

def test_a_restart_resumes_every_file_where_its_counted_lines_ended(
        tmp_path: Path, parts: Parts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Offsets saved by one run are applied by the next: an unchanged file adds nothing, a grown one
    only its new lines, a replaced one is read from its start, one rotated away while we were down is
    finished first (before its successor) and closed; broken or stale entries are skipped."""
    caplog.set_level(logging.INFO, logger=SRC)
    monkeypatch.chdir(tmp_path)  # relative globs: their directory is "."
    for k in range(6):  # other files in the directory, created first
        Path(f"decoy{k}.txt").write_bytes(b"x\n")
    Path("app.log").write_bytes(body(0, 1) + line(2)[:20])
    Path("keep.log").write_bytes(body(5))
    Path("grow.log").write_bytes(body(6))
    Path("swap.log").write_bytes(body(7))
    Path("gone.log").write_bytes(body(8))
    (tmp_path / "sub").mkdir()
    Path("sub/lost.log").write_bytes(body(9))
    (tmp_path / "sub2").mkdir()
    Path("sub2/b.log").write_bytes(body(15))
    first = parts.stepped(["*.log", "sub/*.log", "sub2/*.log"], start="beginning")
    full_pass(first)
    saved = parts.snapshot(first)
    assert sorted(v["path"] for v in saved.values()) == ["app.log", "gone.log", "grow.log", "keep.log",
                                                        "sub/lost.log", "sub2/b.log", "swap.log"]
    rotated_key, rotated = key(Path("app.log")), sid(Path("app.log"))
    rotated2_key, rotated2 = key(Path("sub2/b.log")), sid(Path("sub2/b.log"))
    parts.shut(first)

    os.rename("sub2/b.log", "sub2/b.log.1")  # rotated while we were down, not in the working directory
    append(Path("sub2/b.log.1"), body(16))
    os.rename("app.log", "app.log.1")  # rotated while we were down
    append(Path("app.log.1"), line(2)[20:] + body(3))
    Path("app.log").write_bytes(body(20, 21))
    append(Path("grow.log"), body(30))
    with open("swap.log", "r+b") as f:  # same inode, new content, longer than the saved offset
        f.write(body(70, 71))
    os.unlink("gone.log")
    shutil.rmtree("sub")
    rotated_last = {k: saved[k] for k in (rotated2_key, rotated_key)}
    saved = {"not:a:key": {"path": "x", "offset": 0, "fp": ""}, "1:2": {"path": "x", "offset": "9", "fp": ""},
             "3:4": {"path": "x", "offset": 0, "fp": "zz"}, "5:6": ["not", "an", "entry"],
             "7:8": {"offset": 0, "fp": ""}, "9:10": {"path": "old/gone.log", "offset": 0, "fp": ""},
             **{k: v for k, v in sorted(saved.items(), key=lambda kv: str(kv[1]["path"])) if k not in rotated_last},
             **rotated_last}
    caplog.clear()
    second = parts.stepped(["*.log", "sub/*.log", "sub2/*.log"], saved=saved, drain_after=0)
    before = {k: list(v) for k, v in parts.feed.got.items()}
    full_pass(second)
    parts.feed.settle()
    new = {k: v[len(before.get(k, [])):] for k, v in parts.feed.got.items() if v != before.get(k)}
    assert new == {rotated: lines(2, 3), rotated2: lines(16), sid(Path("app.log")): lines(20, 21),
                   sid(Path("grow.log")): lines(30), sid(Path("swap.log")): lines(70, 71)}
    assert parts.feed.order[-5:-2] == [rotated2, rotated, sid(Path("app.log"))]
    after = parts.snapshot(second)
    assert rotated_key not in after and rotated2_key not in after  # finished (quiet for 0 s), forgotten
    assert open_on(tmp_path) == sorted(str(tmp_path / n) for n in ("app.log", "grow.log", "keep.log", "swap.log"))
    assert parts.count("record") == 16
    logs = source_logs(caplog)
    assert "state file: 5 of its 13 file entries are malformed and ignored (those files are read as new)" in logs
    assert "swap.log was replaced since the last run: reading it from the start" in logs
    assert [m for m in logs if m.startswith("following")] == [
        "following sub2/b.log.1", "following ./app.log.1", "following app.log", "following grow.log",
        "following keep.log", "following swap.log"]


def test_a_files_section_that_is_not_a_mapping_restores_nothing(
        tmp_path: Path, parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged state file's files section is said once and ignored: --file-start applies. A state
    that knows no file (all of them finished) says nothing, and a file it does not know, present at
    start-up, is read from its start: it appeared while we were down."""
    log = tmp_path / "app.log"
    log.write_bytes(body(0))
    tail = parts.stepped([log], saved=["not", "a", "mapping"])
    full_pass(tail)
    append(log, body(1))
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[sid(log)] == lines(1)
    assert source_logs(caplog, logging.WARNING) == [
        "state file: its files section is not a mapping; no file offset is restored"]
    parts.shut(tail)
    caplog.clear()
    other = tmp_path / "other.log"
    other.write_bytes(body(5))
    tail = parts.stepped([other], saved={})
    full_pass(tail)
    parts.feed.settle()
    assert parts.feed.got[sid(other)] == lines(5)
    assert source_logs(caplog, logging.WARNING) == []


# -- globs --------------------------------------------------------------------------------------

def glob_gauge(tail: FileTail) -> list[tuple[dict[str, str], float]]:
    (fam,) = list(tail.collect())
    assert (fam.name, fam.type, fam.documentation) == (
        "llm_exporter_file_glob_files", "gauge",
        "Files each --file glob matched at the last scan (0: nothing is read from it).")
    return [(s.labels, s.value) for s in fam.samples]


def test_each_glob_reports_how_many_regular_files_it_matches(
        tmp_path: Path, parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    """llm_exporter_file_glob_files counts the regular files each glob matched at the last scan; a
    glob that matches nothing is said (once, when it starts or stops matching), and so is its return;
    a FIFO, socket or device is skipped with one warning, a directory or dangling link silently."""
    caplog.set_level(logging.INFO, logger=SRC)
    d, e = tmp_path / "d", tmp_path / "e"
    d.mkdir()
    e.mkdir()
    os.symlink(tmp_path / "nowhere", d / "a-dangling")
    (d / "b-dir").mkdir()
    os.mkfifo(d / "c-fifo")
    (d / "d.log").write_bytes(body(0))
    g1, g2 = str(d / "*"), str(e / "*.log")
    tail = parts.stepped([g1, g2], start="beginning")
    assert glob_gauge(tail) == []  # not scanned yet
    full_pass(tail)
    full_pass(tail)
    assert glob_gauge(tail) == [({"glob": g1}, 1.0), ({"glob": g2}, 0.0)]
    (e / "x.log").write_bytes(body(1))
    (e / "y.log").write_bytes(body(2))
    full_pass(tail)
    full_pass(tail)
    assert glob_gauge(tail) == [({"glob": g1}, 1.0), ({"glob": g2}, 2.0)]
    (e / "x.log").unlink()
    (e / "y.log").unlink()
    full_pass(tail)
    full_pass(tail)
    assert glob_gauge(tail) == [({"glob": g1}, 1.0), ({"glob": g2}, 0.0)]
    parts.feed.settle()
    assert parts.feed.got[sid(d / "d.log")] == lines(0)
    said = [(r.levelname, r.getMessage(), getattr(r, "fields", None)) for r in caplog.records
            if r.name == SRC and not r.getMessage().startswith("following")]
    assert said == [
        ("WARNING", f"{d / 'c-fifo'} matches --file but is not a regular file (a FIFO, socket or device): "
                    "skipped", None),
        ("WARNING", f"--file {g2} matches no file yet: nothing is read from it until one appears "
                    "(llm_exporter_file_glob_files shows 0 meanwhile)", {"glob": g2}),
        ("INFO", f"--file {g2} matches 2 file(s) now", {"glob": g2}),
        ("WARNING", f"--file {g2} matches no file any more: nothing is read from it until one appears "
                    "(llm_exporter_file_glob_files shows 0 meanwhile)", {"glob": g2}),
    ]


def test_a_file_that_cannot_be_opened_or_changed_under_the_scan_is_skipped_and_said_once(
        tmp_path: Path, parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    """Between the scan's stat and the open a file may vanish or be replaced (even by a FIFO, whose
    open must not block): it is skipped until the next scan, its failure said once per episode;
    what is opened is opened non-blocking and is not inherited by child processes."""
    caplog.set_level(logging.INFO, logger=SRC)
    log, fifo = tmp_path / "app.log", tmp_path / "pipe.log"
    tail = parts.stepped([tmp_path / "*.log"])
    assert tail._open(str(log), (1, 2)) is None
    assert tail._open(str(log), (1, 2)) is None
    assert source_logs(caplog, logging.WARNING) == [f"cannot open {log}: No such file or directory"]
    log.write_bytes(body(0))
    st = log.stat()
    assert tail._open(str(log), (st.st_dev, st.st_ino + 1)) is None  # replaced since the stat
    os.mkfifo(fifo)
    fst = fifo.stat()
    assert tail._open(str(fifo), (fst.st_dev, fst.st_ino)) is None
    assert tail._streams == {} and open_on(tmp_path) == []
    s = tail._open(str(log), (st.st_dev, st.st_ino))
    assert s is not None and open_on(tmp_path) == [str(log)]
    assert os.get_blocking(s.fd) is False and fcntl.fcntl(s.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    log.unlink()
    assert tail._open(str(log), (1, 2)) is None  # failing again after a success: said again
    assert source_logs(caplog, logging.WARNING) == [f"cannot open {log}: No such file or directory"] * 2


# -- when the thread wakes ----------------------------------------------------------------------

def test_the_follower_sleeps_until_the_next_rescan_partial_flush_or_drain(tmp_path: Path, parts: Parts,
                                                                         clock: Clock) -> None:
    """With inotify it sleeps until the next 1 s rescan, or until a held partial line or a rotated
    file is due (5 s after its last growth, at least 50 ms); polling, it sleeps 0.25 s."""
    polled = parts.stepped([tmp_path / "*.log"])
    assert polled._next_timeout(clock.t) == 0.25
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    tail = parts.stepped([tmp_path / "*.log"], use_inotify=True, start="beginning")
    assert tail._inotify is not None
    full_pass(tail)
    assert tail._next_timeout(clock.t - 0.25) == 0.75
    assert tail._next_timeout(clock.t - 3) == 0.0
    slow = parts.stepped([tmp_path / "*.log"], use_inotify=True, rescan=10, drain_after=7, start="beginning")
    full_pass(slow)
    assert slow._next_timeout(clock.t) == 10.0
    append(log, b"partial")
    clock.t = 1001.0
    full_pass(slow)
    assert slow._next_timeout(1001.0) == 5.0  # partial_after 5 s from now
    clock.t = 1005.96875
    assert slow._next_timeout(1001.0) == 0.05  # due in 31 ms: not less than 50 ms
    clock.t = 1006.0
    full_pass(slow)  # flushed: nothing is due any more
    assert slow._next_timeout(1006.0) == 10.0
    other = tmp_path / "b.log"
    other.write_bytes(body(0))
    rotated = parts.stepped([other], use_inotify=True, rescan=10, partial_after=8, drain_after=3,
                            start="beginning")
    full_pass(rotated)
    os.rename(other, tmp_path / "b.old")
    clock.t = 1007.0
    full_pass(rotated)
    assert rotated._next_timeout(1007.0) == 2.0  # drain_after 3 s from the last growth


def test_inotify_wakes_the_follower_for_appends_new_files_and_renames(
        tmp_path: Path, parts: Parts, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """With the clock standing still (no rescan ever due), inotify alone brings appends, new files in
    the globs' directories (a relative glob's is the working directory) and rename rotation; a new
    directory under a wildcard waits for the rescan; stop() ends the thread and closes everything."""
    logs = tmp_path / "logs"
    cwd, d1, d2 = tmp_path / "cwd", logs / "d1", logs / "d2"
    for d in (cwd, logs, d1, d2):
        d.mkdir()
    monkeypatch.chdir(cwd)
    (d1 / "app.log").write_bytes(body(0))
    fds_before = open_fds()
    tail = parts.threaded(["top.log", logs / "*" / "app.log"], start="beginning", rescan=3600)
    assert tail.attached is False
    tail.start()
    feed = parts.feed
    got = feed.got

    def has(path: Path, want: list[bytes]) -> Callable[[], bool]:
        s = sid(path)
        return lambda: got.get(s) == want

    wait_until(has(d1 / "app.log", lines(0)), "the file there at start")
    wait_until(lambda: tail.attached, "attached after its first pass")
    (thread,) = [t for t in threading.enumerate() if t.name == "source-file"]
    assert thread.daemon
    assert tail._inotify is not None
    assert os.get_blocking(tail._inotify.fd) is False
    assert fcntl.fcntl(tail._inotify.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    append(d1 / "app.log", body(1))
    wait_until(has(d1 / "app.log", lines(0, 1)), "an append")
    (d2 / "app.log").write_bytes(body(2))
    wait_until(has(d2 / "app.log", lines(2)), "a new file in a watched directory")
    Path("top.log").write_bytes(body(3))
    wait_until(has(cwd / "top.log", lines(3)), "a new file matching a relative glob")
    old = sid(d1 / "app.log")
    os.rename(d1 / "app.log", d1 / "app.log.1")
    (d1 / "app.log").write_bytes(body(4))
    wait_until(has(d1 / "app.log", lines(4)), "the file that replaced a renamed one")
    (logs / "d3").mkdir()
    (logs / "d3" / "app.log").write_bytes(body(5))  # under the wildcard, in a directory not watched
    append(d2 / "app.log", body(6))
    wait_until(has(d2 / "app.log", lines(2, 6)), "an append after the new directory")
    feed.settle()
    assert got[old] == lines(0, 1)
    assert sid(logs / "d3" / "app.log") not in got  # found by the next rescan, not before
    assert tail.glob_files == {"top.log": 1, str(logs / "*" / "app.log"): 2}
    assert parts.nbytes() == len(body(0, 1, 2, 3, 4, 6))
    tail.stop()
    assert not thread.is_alive()
    assert open_on(tmp_path) == []
    assert open_fds() - fds_before == {tail._wake_r, tail._wake_w}
    assert source_logs(caplog, logging.ERROR) == []
    assert parts.count("record") == 6


def test_a_new_directory_under_a_wildcard_is_found_by_the_rescan_each_second(
        tmp_path: Path, parts: Parts, clock: Clock) -> None:
    """Without any inotify event for it, a new directory matching a wildcard is found by the full
    rescan, which comes once a second (on the follower's clock) and not before."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "app.log").write_bytes(body(0))
    tail = parts.threaded([tmp_path / "*" / "app.log"], start="beginning")
    tail.start()
    got = parts.feed.got
    first = sid(tmp_path / "d1" / "app.log")
    wait_until(lambda: got.get(first) == lines(0), "the file there at start")
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "app.log").write_bytes(body(1))
    clock.t += 0.5
    append(tmp_path / "d1" / "app.log", body(2))
    wait_until(lambda: got.get(first) == lines(0, 2), "an append half a second on")
    assert sid(tmp_path / "d2" / "app.log") not in got
    clock.t += 0.5  # 1 s since the last rescan
    append(tmp_path / "d1" / "app.log", body(3))
    wait_until(lambda: got.get(sid(tmp_path / "d2" / "app.log")) == lines(1), "the rescan's find")
    tail.stop()


def test_without_inotify_every_poll_is_a_full_scan(tmp_path: Path, parts: Parts, clock: Clock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Polling (use_inotify=False, or no inotify on this system) reads appends and finds new files and
    new directories on each poll, even with the clock standing still."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "app.log").write_bytes(body(0))
    tail = parts.threaded([tmp_path / "*" / "app.log"], start="beginning", use_inotify=False, poll=0.01)
    assert tail._inotify is None
    tail.start()
    got = parts.feed.got
    first = sid(tmp_path / "d1" / "app.log")
    wait_until(lambda: got.get(first) == lines(0), "the file there at start")
    append(tmp_path / "d1" / "app.log", body(1))
    wait_until(lambda: got.get(first) == lines(0, 1), "an append")
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "app.log").write_bytes(body(2))
    wait_until(lambda: got.get(sid(tmp_path / "d2" / "app.log")) == lines(2), "a new directory's file")
    thread = tail._thread
    tail.stop()
    assert not thread.is_alive()
    assert open_on(tmp_path) == []
    assert source_logs(caplog, logging.ERROR) == []


def test_a_failed_pass_is_retried_as_a_full_scan_and_a_bug_is_logged_not_fatal(
        tmp_path: Path, parts: Parts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An OSError in a pass (a file gone mid-scan, EIO) is logged and the next pass is a full scan, even
    right after boot (a monotonic clock near 0); any other error ends the follower with its traceback
    logged and its files closed."""
    c = Clock(0.0)
    monkeypatch.setattr(file_tail, "time", c)
    log = tmp_path / "app.log"
    log.write_bytes(body(0))
    real_scan = FileTail._scan
    calls: list[int] = []

    def flaky_scan(self: FileTail) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        if len(calls) == 3:
            raise RuntimeError("a bug")
        real_scan(self)

    monkeypatch.setattr(FileTail, "_scan", flaky_scan)
    tail = parts.threaded([log], start="beginning", rescan=3600)
    tail.start()
    wait_until(lambda: parts.feed.got.get(sid(log)) == lines(0), "the retried scan")
    assert source_logs(caplog, logging.WARNING) == ["file source: [Errno 5] Input/output error; retrying"]
    assert open_on(tmp_path) == [str(log)]
    (tmp_path / "new.log").write_bytes(b"")  # a directory change: the next (third) pass is a full scan
    tail._thread.join(20)
    assert not tail._thread.is_alive()
    (stopped,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (stopped.name, stopped.getMessage()) == (SRC, "file source stopped")
    assert stopped.exc_info is not None and str(stopped.exc_info[1]) == "a bug"
    assert open_on(tmp_path) == []
    assert len(calls) == 3


def test_stop_returns_even_when_the_follower_is_stuck_behind_a_full_queue(tmp_path: Path) -> None:
    """A stop gives the follower 5 s to end; one blocked handing lines to a parser that takes none
    does not hold the daemon's shutdown (it ends once the queue moves)."""
    metrics = LLMMetrics()
    worker = Worker(Pipeline(metrics), max_chunks=1)  # not started yet: nothing takes from the queue
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(line(k) for k in range(3000)))  # more than one 64 KiB chunk
    tail = FileTail([str(log)], worker, metrics.source, start="beginning", use_inotify=False)
    tail.start()
    wait_until(lambda: worker._q.full(), "the queue full")
    tail.stop()
    assert tail._thread.is_alive()  # still blocked: stop() returned without it
    worker.start()
    tail._thread.join(20)
    assert not tail._thread.is_alive()
    worker.stop(timeout=20)
    os.close(tail._wake_r)
    os.close(tail._wake_w)


# -- inotify itself -----------------------------------------------------------------------------

def test_inotify_reports_the_union_of_pending_events(tmp_path: Path) -> None:
    """drain() reads every pending event and returns their masks together; nothing pending gives 0;
    a broken descriptor asks for a full rescan; a directory removed and made again is watched again."""
    ino = _Inotify.open()
    assert ino is not None
    try:
        d = tmp_path / "d"
        d.mkdir()
        (d / "a.log").write_bytes(b"x")
        ino.watch(str(d))
        ino.watch(str(d))
        assert ino.drain() == 0
        os.rename(d / "a.log", d / "b-with-a-longer-name.log")
        os.unlink(d / "b-with-a-longer-name.log")
        assert ino.drain() == file_tail._IN_MOVED_FROM | file_tail._IN_MOVED_TO | file_tail._IN_DELETE
        assert ino.drain() == 0
        os.mkfifo(d / "f")
        os.unlink(d / "f")
        assert ino.drain() == file_tail._IN_CREATE | file_tail._IN_DELETE
        (tmp_path / "empty").mkdir()
        ino.watch(str(tmp_path / "empty"))
        (tmp_path / "empty").rmdir()  # events without a name: the directory's own end, then its watch's
        assert ino.drain() == file_tail._IN_DELETE_SELF | 0x8000  # (IN_IGNORED)
        ino.watch(str(tmp_path / "missing"))  # not there: not watched, tried again next time
        (tmp_path / "missing").mkdir()
        ino.watch(str(tmp_path / "missing"))
        (tmp_path / "missing" / "x").write_bytes(b"")
        assert ino.drain() & file_tail._IN_CREATE
        shutil.rmtree(d)
        ino.drain()
        ino.forget_missing()
        d.mkdir()
        ino.watch(str(d))
        (d / "again").write_bytes(b"")
        assert ino.drain() & file_tail._IN_CREATE
    finally:
        ino.close()
    with pytest.raises(OSError):
        os.fstat(ino.fd)
    assert ino.drain() == file_tail._IN_Q_OVERFLOW  # (its descriptor is closed now)


@pytest.mark.parametrize(("fd", "usable"), [(-1, False), (0, True), (7, True)])
def test_without_inotify_the_follower_polls(monkeypatch: pytest.MonkeyPatch, fd: int, usable: bool) -> None:
    """When the kernel refuses an inotify instance (-1: its limit reached), the follower polls; any
    descriptor it hands back, even 0 (stdin closed), is used."""

    class Libc:
        def inotify_init1(self, flags: int) -> int:
            assert flags == os.O_NONBLOCK | os.O_CLOEXEC
            return fd

    monkeypatch.setattr(ctypes, "CDLL", lambda name, **kw: Libc())
    ino = _Inotify.open()
    assert (ino is not None) == usable
    assert ino is None or ino.fd == fd

