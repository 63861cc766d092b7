"""File tail on real files: rotation (rename, copytruncate), new files, partial lines, restarts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.sources.file_tail import FileTail
from llm_exporter.worker import Worker
from tests.helpers import Exporter, total


def line(i: int) -> bytes:
    return orjson.dumps({"request_id": f"r{i}", "model": "m", "status": "success",
                         "duration_ms": 5 + i % 300, "output_tokens": tokens(i)}) + b"\n"


def tokens(i: int) -> int:
    return i % 17 + 1


def file_lines(e: Exporter) -> float:
    return total(e.samples(), "llm_exporter_lines_total", source="file")


def wait_file_lines(e: Exporter, n: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while (got := file_lines(e)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def applied_offsets(state: Path) -> list[tuple[str, int]]:
    """The exporter's own record of the files it follows, (path opened, offset counted), from its
    checkpoint; a file renamed away keeps the path it was opened under until it is closed."""
    try:
        files = orjson.loads((state / "state.json").read_bytes())["sections"]["files"]
    except FileNotFoundError:
        return []
    return sorted((v["path"], v["offset"]) for v in files.values())


def settle(e: Exporter, n: int, state: Path, files: list[Path],
           timeout: float = 90) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Wait until the exporter follows exactly `files`, each counted to its end, in its own checkpoint
    (taken under the metrics lock, so those offsets are exactly the lines counted): every file rotated
    away has been read to its end, closed and forgotten. Then n lines must be counted, no more."""
    want = sorted((str(f), f.stat().st_size) for f in files)
    deadline = time.monotonic() + timeout
    while (got := applied_offsets(state)) != want:
        assert time.monotonic() < deadline, f"followed {got}, want {want}"
        time.sleep(0.1)
    s = e.samples()
    assert total(s, "llm_exporter_lines_total", source="file") == n
    return s


def test_rename_and_copytruncate_rotation_count_every_line_exactly_once(tmp_path: Path) -> None:
    """100k lines, 100 rotations (alternating rename and copytruncate), each line counted once."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.touch()
    n_rot, per = 100, 1000
    with Exporter("--no-stdin", "--file", str(log), "--file-start", "beginning", "--state-dir", str(state),
                  stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        i = 0
        for r in range(n_rot):
            block = b"".join(line(k) for k in range(i, i + per))
            cut = len(block) // 3  # two writes, the first ending mid-line
            os.write(fd, block[:cut])
            os.write(fd, block[cut:])
            i += per
            if r % 2 == 0:  # rename, a few more lines into the old file, then the new file
                os.rename(log, tmp_path / f"app.log.{r}")
                os.write(fd, b"".join(line(k) for k in range(i, i + 10)))
                i += 10
                os.close(fd)
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            else:  # copytruncate: safe only once the reader has caught up (logrotate's caveat)
                assert wait_file_lines(e, i) == i
                shutil.copyfile(log, tmp_path / f"app.log.{r}")
                os.truncate(log, 0)
        os.close(fd)
        s = settle(e, i, state, [log])  # the 50 renamed files closed after their drain time
        assert total(s, "llm_exporter_lines_total", source="file", outcome="record") == i
        assert total(s, "llm_requests_total") == i
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(tokens(k) for k in range(i))
        assert total(s, "llm_exporter_bytes_total", source="file") == sum(len(line(k)) for k in range(i))


def test_a_new_file_matching_the_glob_is_followed_from_its_start(tmp_path: Path) -> None:
    """A file created after start-up is read from byte 0; --file-start end skips old content."""
    (tmp_path / "old.log").write_bytes(b"".join(line(k) for k in range(500)))
    state = tmp_path / "state"
    with Exporter("--no-stdin", "--file", str(tmp_path / "*.log"), "--state-dir", str(state),
                  stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        with open(tmp_path / "old.log", "ab") as f:
            f.write(b"".join(line(k) for k in range(500, 520)))
        sub = tmp_path / "new.log"
        sub.write_bytes(b"".join(line(k) for k in range(1000, 1300)))
        s = settle(e, 320, state, [tmp_path / "old.log", sub])
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(tokens(k) for k in [*range(500, 520), *range(1000, 1300)])


def stop_gracefully(e: Exporter) -> None:
    e.proc.send_signal(signal.SIGTERM)
    assert e.proc.wait(20) == 0


def test_restart_with_state_dir_continues_exactly_mid_file(tmp_path: Path) -> None:
    """Stop mid-file (last line incomplete), append while down, restart: each line counted once."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_bytes(b"".join(line(k) for k in range(5000)) + line(5000)[:20])
    args = ("--no-stdin", "--file", str(log), "--file-start", "beginning", "--state-dir", str(state))
    with Exporter(*args, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        assert wait_file_lines(e, 5000) == 5000
        stop_gracefully(e)
    with open(log, "ab") as f:
        f.write(line(5000)[20:] + b"".join(line(k) for k in range(5001, 8000)))
    with Exporter(*args, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        s = settle(e, 8000, state, [log])  # run 1's 5000 lines restored from the checkpoint, 3000 new ones
        assert total(s, "llm_requests_total") == 8000
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(tokens(k) for k in range(8000))
        stop_gracefully(e)
    files = orjson.loads((state / "state.json").read_bytes())["sections"]["files"]
    assert [v["offset"] for v in files.values()] == [log.stat().st_size]


def test_a_file_replaced_while_down_is_read_from_its_start(tmp_path: Path) -> None:
    """Same path, new content (maybe even the same inode): the fingerprint says read it all."""
    log, state = tmp_path / "app.log", tmp_path / "state"
    log.write_bytes(b"".join(line(k) for k in range(2000)))
    args = ("--no-stdin", "--file", str(log), "--file-start", "beginning", "--state-dir", str(state))
    with Exporter(*args, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        assert wait_file_lines(e, 2000) == 2000
        stop_gracefully(e)
    with open(log, "r+b") as f:  # same inode, rewritten content, longer than the saved offset
        f.write(b"".join(line(k) for k in range(10_000, 12_500)))
    with Exporter(*args, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        s = settle(e, 4500, state, [log])  # run 1's 2000 lines restored, then the rewritten file's 2500 from its start
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(tokens(k) for k in range(10_000, 12_500)) + sum(tokens(k) for k in range(2000))


@pytest.fixture
def tail_parts() -> Iterator[tuple[LLMMetrics, Worker]]:
    metrics = LLMMetrics()
    worker = Worker(Pipeline(metrics), max_chunks=8)
    worker.start()
    yield metrics, worker
    worker.stop()


def wait_for(cond: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def read_offset(tail: FileTail) -> int:
    return sum(st.offset for st in list(tail._streams.values()))


@pytest.mark.parametrize("use_inotify", [True, False])
def test_a_partial_last_line_waits_for_its_newline(
        tmp_path: Path, tail_parts: tuple[LLMMetrics, Worker], use_inotify: bool) -> None:
    """Bytes without a newline are read but held; once the newline comes they are one line."""
    metrics, worker = tail_parts
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    tail = FileTail([str(log)], worker, metrics.source, start="beginning", partial_after=3600, rescan=0.2,
                    poll=0.05, use_inotify=use_inotify)
    tail.start()
    try:
        first = line(1)
        with open(log, "ab", buffering=0) as f:
            f.write(first[:10])
            wait_for(lambda: read_offset(tail) == 10)
            f.write(first[10:] + line(2)[:15])
            wait_for(lambda: read_offset(tail) == len(first) + 15)
            f.write(line(2)[15:])
            wait_for(lambda: metrics.internal.lines.get(("file", "record"), 0) >= 2)
        assert metrics.internal.lines[("file", "record")] == 2
        assert sum(n for (src, _o), n in metrics.internal.lines.items() if src == "file") == 2
        assert tail.attached
    finally:
        tail.stop()


def test_a_partial_last_line_goes_out_after_the_flush_timeout(
        tmp_path: Path, tail_parts: tuple[LLMMetrics, Worker]) -> None:
    """A last line whose newline never comes is handed out once the file stops growing."""
    metrics, worker = tail_parts
    log = tmp_path / "a.log"
    log.write_bytes(line(1) + line(2)[:-1])
    tail = FileTail([str(log)], worker, metrics.source, start="beginning", partial_after=0.2, rescan=0.2)
    tail.start()
    try:
        wait_for(lambda: metrics.internal.lines.get(("file", "record"), 0) >= 2)
        assert metrics.internal.lines[("file", "record")] == 2
    finally:
        tail.stop()


def test_offsets_snapshot_counts_only_applied_lines(tmp_path: Path, tail_parts: tuple[LLMMetrics, Worker]) -> None:
    """The saved offset is the end of the last counted line, never past it."""
    metrics, worker = tail_parts
    log = tmp_path / "a.log"
    body = b"".join(line(k) for k in range(3000))
    log.write_bytes(body + b'{"partial')
    tail = FileTail([str(log)], worker, metrics.source, start="beginning", rescan=0.2)
    tail.start()
    try:
        wait_for(lambda: metrics.internal.lines.get(("file", "record"), 0) >= 3000)
        with metrics.lock:
            snap = tail.snapshot()
            counted = metrics.internal.lines[("file", "record")]
        assert counted == 3000
        assert [v["offset"] for v in snap.values()] == [len(body)]
    finally:
        tail.stop()


def test_an_os_error_mid_pass_is_retried_not_fatal(tmp_path: Path, tail_parts: tuple[LLMMetrics, Worker],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that fails once (a file gone mid-scan, EIO) is retried; the source keeps following."""
    metrics, worker = tail_parts
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(line(k) for k in range(100)))
    tail = FileTail([str(log)], worker, metrics.source, start="beginning", rescan=0.2)
    real_scan = FileTail._scan
    failures = []

    def flaky_scan(self: FileTail) -> None:
        if not failures:
            failures.append(1)
            raise OSError(5, "Input/output error")
        real_scan(self)

    monkeypatch.setattr(FileTail, "_scan", flaky_scan)
    tail.start()
    try:
        wait_for(lambda: metrics.internal.lines.get(("file", "record"), 0) >= 100)
        with log.open("ab") as fh:
            fh.write(b"".join(line(k) for k in range(100, 150)))
        wait_for(lambda: metrics.internal.lines.get(("file", "record"), 0) >= 150)
        assert failures == [1] and metrics.internal.lines[("file", "record")] == 150
    finally:
        tail.stop()
