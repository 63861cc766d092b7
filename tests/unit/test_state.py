"""The --state-dir store: atomic sections, checkpoints paired under one lock, commit markers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from llm_exporter.pipeline import Pipeline
from llm_exporter.state import StateStore
from llm_exporter.worker import Worker

LINE = b'{"request_id":"r","model":"m","status":"success","duration_ms":10}'


def test_saved_sections_load_back(tmp_path: Path) -> None:
    """What save() wrote, load() returns; no temporary file is left behind."""
    store = StateStore(tmp_path / "s")
    store.prepare()
    store.save({"files": {"a": {"offset": 12}}, "metrics": {"x": 1}})
    assert StateStore(tmp_path / "s").load() == {"files": {"a": {"offset": 12}}, "metrics": {"x": 1}}
    assert os.listdir(tmp_path / "s") == ["state.json"]


def test_missing_or_corrupt_state_is_no_state(tmp_path: Path) -> None:
    """A missing file and a torn file both load as {} (never a crash)."""
    store = StateStore(tmp_path)
    assert store.load() == {}
    (tmp_path / "state.json").write_bytes(b'{"version": 1, "sect')
    assert store.load() == {}


def test_checkpoint_takes_every_section_under_the_lock(tmp_path: Path) -> None:
    """Each owner's snapshot runs while the given lock is held."""
    lock = threading.Lock()
    seen = []
    store = StateStore(tmp_path)
    store.register("files", lambda: seen.append(lock.locked()) or {"f": 1})
    store.register("metrics", lambda: seen.append(lock.locked()) or {"m": 2})
    store.checkpoint(lock)
    assert seen == [True, True]
    assert store.load() == {"files": {"f": 1}, "metrics": {"m": 2}}


def test_commit_runs_after_its_lines_are_counted_under_the_metrics_lock(pipeline: Pipeline) -> None:
    """A batch's commit sees its own lines already counted, and runs holding the metrics lock."""
    seen: list[tuple[int, bool]] = []
    m = pipeline.metrics
    worker = Worker(pipeline, max_chunks=4)
    worker.start()

    def commit() -> None:
        seen.append((sum(n for (src, _o), n in m.internal.lines.items() if src == "file"), m.lock.locked()))

    worker.put("file", [LINE, LINE, b"junk"], commit=commit, stream="a")
    worker.put("file", [], commit=commit, stream="a")
    worker.stop()
    assert seen == [(3, True), (3, True)]
