"""A FIFO (or any non-regular file) matching a --file glob must not stop the other files: real
exporter, real files and a real FIFO in a temporary directory, bounded in time."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import Exporter, total

LINE = b'{"request_id":"r%d","model":"m","status":"success","duration_ms":5}\n'


def test_a_fifo_matching_the_glob_is_skipped_and_the_other_files_are_followed(tmp_path: Path) -> None:
    """`a.log` is a FIFO nobody writes to (its blocking open stopped all tailing on main, with
    /readyz still 200); `b.log` is a real log: its 50 lines are all counted and the FIFO is named
    once in the log."""
    os.mkfifo(tmp_path / "a.log")
    (tmp_path / "b.log").write_bytes(b"".join(LINE % i for i in range(20)))
    with Exporter("--file", str(tmp_path / "*.log"), "--file-start", "beginning", "--gpu", "off",
                  "--no-stdin") as e:
        e.wait_ready()
        with open(tmp_path / "b.log", "ab") as f:
            f.write(b"".join(LINE % i for i in range(20, 50)))
        samples = e.wait_lines(50, timeout=30)
        assert total(samples, "llm_exporter_lines_total", source="file") == 50
        assert total(samples, "llm_requests_total") == 50
        assert e.stop() == 0
        err = e.stderr_text()
    said = [ln for ln in err.splitlines() if "not a regular file" in ln]
    assert len(said) == 1 and "a.log" in said[0], err
