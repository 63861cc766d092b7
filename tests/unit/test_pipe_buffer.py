"""The stdin reader's pipe buffer: enlarged so that lingering between reads never makes a writer wait."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from llm_exporter.sources.pipe import PIPE_BUFFER, enlarge_pipe


def test_a_pipe_is_enlarged_to_hold_what_is_written_while_the_reader_lingers() -> None:
    """After enlarge_pipe, a writer can put PIPE_BUFFER bytes in without a reader and without blocking."""
    r, w = os.pipe()
    try:
        assert enlarge_pipe(r)
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) >= PIPE_BUFFER
        os.set_blocking(w, False)
        written = 0
        block = b"x" * 65536
        while written < PIPE_BUFFER:
            written += os.write(w, block)  # raises BlockingIOError if the buffer were smaller
        assert written == PIPE_BUFFER
    finally:
        os.close(r)
        os.close(w)


def test_a_regular_file_is_left_alone(tmp_path: Path) -> None:
    """A file on stdin is no pipe: nothing to enlarge, so the reader never lingers on it."""
    f = tmp_path / "app.log"
    f.write_bytes(b"{}\n")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert not enlarge_pipe(fd)
    finally:
        os.close(fd)
