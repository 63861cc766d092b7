"""The `--state-dir` store at its edges: the directory as a person gives it (nested, existing, a
file, a name too long), a state file that is not ours, a private file mode, and the periodic
checkpoint loop (it holds the metrics lock, survives a failed write and logs it)."""

from __future__ import annotations

import asyncio
import logging
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llm_exporter.problems import StartupError
from llm_exporter.state import StateStore, checkpoint_every, open_state
from tests.helpers import logged


def test_no_state_dir_is_no_store() -> None:
    assert open_state(None) == (None, {})


def test_a_nested_state_dir_is_created_and_read_back(tmp_path: Path) -> None:
    """`--state-dir a/b/c` that does not exist yet is made; opened again it gives what was saved."""
    d = tmp_path / "a" / "b" / "c"
    store, saved = open_state(d)
    assert store is not None and saved == {}
    store.register("files", lambda: {"x": {"offset": 7}})
    store.checkpoint()  # no lock given: still one snapshot, then the write
    again, saved = open_state(d)
    assert again is not None and again.dir == d
    assert saved == {"files": {"x": {"offset": 7}}}
    assert sorted(p.name for p in d.iterdir()) == ["state.json"]


def test_the_state_file_is_private(tmp_path: Path) -> None:
    """It holds model and tenant names: readable by its owner only (0600)."""
    store = StateStore(tmp_path)
    store.save({"metrics": {}})
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600


def test_a_state_dir_that_is_a_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for given in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(StartupError) as e:
            open_state(given)
        assert str(e.value) == f"--state-dir {given}: {tmp_path / 'f'} is a file, not a directory"


def test_a_state_dir_name_too_long_is_a_clear_startup_error(tmp_path: Path) -> None:
    """The system's own reason, in one line (it used to escape as a raw OSError traceback)."""
    d = tmp_path / ("a" * 300) / "s"
    with pytest.raises(StartupError) as e:
        open_state(d)
    assert str(e.value) == f"--state-dir {d}: File name too long"


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"version": 2, "sections": {"files": {}}}', b'"text"'])
def test_a_state_file_of_another_layout_is_no_state(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "state.json").write_bytes(body)
    with logged("llm_exporter.state") as said:
        assert StateStore(tmp_path).load() == {}
    assert [r.getMessage() for r in said] == [
        f"state file {tmp_path / 'state.json'} has an unknown layout, starting without state"]


def test_sections_that_are_not_a_mapping_are_no_state(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(b'{"version": 1, "sections": [1]}')
    assert StateStore(tmp_path).load() == {}


def test_an_unreadable_state_file_says_where_and_why(tmp_path: Path) -> None:
    """`state.json` made a directory by mistake: no state, and the line names the file and the reason."""
    p = tmp_path / "state.json"
    p.mkdir()
    with logged("llm_exporter.state") as said:
        assert StateStore(tmp_path).load() == {}
    assert [r.getMessage() for r in said] == [
        f"state file {p} unreadable, starting without state: [Errno 21] Is a directory: '{p}'"]


async def _first(*aws: asyncio.Future[object]) -> None:
    await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)


class _Signal(logging.Handler):
    """Sets an event when the store logs (a failed checkpoint), so a test waits on it, not on time."""

    def __init__(self, ev: asyncio.Event) -> None:
        super().__init__(logging.WARNING)
        self.ev = ev
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.ev.set()


@contextmanager
def _signal(ev: asyncio.Event) -> Iterator[_Signal]:
    lg = logging.getLogger("llm_exporter.state")
    h, level = _Signal(ev), lg.level
    lg.addHandler(h)
    lg.setLevel(logging.WARNING)
    try:
        yield h
    finally:
        lg.removeHandler(h)
        lg.setLevel(level)


def test_no_store_means_no_checkpoint_loop() -> None:
    async def run() -> None:
        logged = asyncio.Event()
        with _signal(logged):
            task = asyncio.ensure_future(checkpoint_every(None, threading.Lock(), interval=0))
            await _first(task, asyncio.ensure_future(logged.wait()))
            assert task.done() and task.result() is None and not logged.is_set()

    asyncio.run(run())


def test_the_loop_checkpoints_under_the_lock_and_goes_on_after_failures(tmp_path: Path) -> None:
    """First write: the disk is full (OSError, logged as a warning); second: a bug in an owner
    (logged with its traceback); third: written, with the snapshot taken under the metrics lock.
    The loop is still running after all three."""
    lock = threading.Lock()
    outcomes: list[BaseException | None] = [OSError(28, "No space left on device"), RuntimeError("bug"), None]
    under_lock: list[bool] = []

    def snap() -> dict[str, int]:
        under_lock.append(lock.locked())
        e = outcomes.pop(0)
        if e is not None:
            raise e
        return {"n": 3}

    store = StateStore(tmp_path)
    store.register("metrics", snap)

    async def run() -> None:
        written, logged = asyncio.Event(), asyncio.Event()
        store.save = lambda sections, _save=store.save: (_save(sections), written.set())  # type: ignore[method-assign]
        with _signal(logged) as h:
            task = asyncio.ensure_future(checkpoint_every(store, lock, interval=0))
            for _ in range(2):
                await _first(task, asyncio.ensure_future(logged.wait()))
                assert not task.done()
                logged.clear()
            await _first(task, asyncio.ensure_future(written.wait()), asyncio.ensure_future(logged.wait()))
            assert written.is_set() and not task.done()
            task.cancel()
        assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in h.records] == [
            ("WARNING", "state checkpoint failed: [Errno 28] No space left on device", False),
            ("ERROR", "state checkpoint failed", True),
        ]

    asyncio.run(run())
    assert under_lock == [True, True, True]
    assert StateStore(tmp_path).load() == {"metrics": {"n": 3}}
