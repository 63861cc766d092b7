"""Durable state under `--state-dir`: one JSON file of sections, each owned by one part of the daemon.

Sections are keyed by owner (`"files"`: read offsets of followed files; `"metrics"`: metric state).
A checkpoint asks every registered owner for its section while holding one lock (the metrics lock),
so the sections written together describe the same instant: the file offsets saved are exactly the
lines already counted in the metric state saved beside them. The file is replaced atomically
(temporary file, fsync, rename, fsync of the directory): a crash leaves the old state or the new
one, never a mix. A missing or unreadable state file means "no state" (logged), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from llm_exporter.problems import StartupError

log = logging.getLogger("llm_exporter.state")

FILENAME = "state.json"
VERSION = 1
#: seconds between checkpoints while running (one more is taken at a graceful stop)
CHECKPOINT_EVERY = 5.0


class StateStore:
    """Load and save the sections of `DIR/state.json`."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.path = self.dir / FILENAME
        self._owners: dict[str, Callable[[], Any]] = {}
        self._save_lock = threading.Lock()

    def prepare(self) -> None:
        """Create the directory; a directory we cannot write is a start-up error (OSError)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        probe = self.dir / f".probe.{os.getpid()}"
        probe.touch()
        probe.unlink()

    def load(self) -> dict[str, Any]:
        """Every section saved last time; {} when there is none or it cannot be read."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as e:
            log.warning("state file %s unreadable, starting without state: %s", self.path, e)
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION:
            log.warning("state file %s has an unknown layout, starting without state", self.path)
            return {}
        sections = data.get("sections")
        return sections if isinstance(sections, dict) else {}

    def save(self, sections: dict[str, Any]) -> None:
        """Replace the state file with `sections`, atomically and durably."""
        body = orjson.dumps({"version": VERSION, "sections": sections})
        with self._save_lock:
            tmp = self.dir / f".{FILENAME}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def register(self, owner: str, snapshot: Callable[[], Any]) -> None:
        """`snapshot()` returns the owner's JSON-able section; called under the checkpoint lock."""
        self._owners[owner] = snapshot

    def checkpoint(self, lock: Any = None) -> None:
        """Take every owner's snapshot under `lock` (one instant), then write them together."""
        ctx = lock if lock is not None else contextlib.nullcontext()
        with ctx:
            sections = {owner: snap() for owner, snap in self._owners.items()}
        self.save(sections)


def open_state(directory: Path | None) -> tuple[StateStore | None, dict[str, Any]]:
    """The store of `--state-dir` and what it holds; an unusable directory is a start-up error."""
    if directory is None:
        return None, {}
    store = StateStore(directory)
    try:
        store.prepare()
    except OSError as e:
        # mkdir on a path whose last part (or a parent) is a file says "File exists" / "Not a directory"
        # os.path, not Path: Path.exists() raises on a name too long instead of saying "no"
        bad = next((p for p in (directory, *directory.parents) if os.path.exists(p) and not os.path.isdir(p)),
                   None)
        why = f"{bad} is a file, not a directory" if bad is not None else (e.strerror or str(e))
        raise StartupError(f"--state-dir {directory}: {why}") from None
    return store, store.load()


async def checkpoint_every(store: StateStore | None, lock: Any, interval: float = CHECKPOINT_EVERY) -> None:
    """Checkpoint every `interval` seconds, off the event loop (a failed write is logged, not fatal)."""
    if store is None:
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            await loop.run_in_executor(None, store.checkpoint, lock)
        except OSError as e:
            log.warning("state checkpoint failed: %s", e)
        except Exception:  # never end the checkpoint loop unseen
            log.exception("state checkpoint failed")
