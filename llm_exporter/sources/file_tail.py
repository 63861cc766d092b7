"""Follow files like `tail -F`: every file matching the globs, across rotation, resumable.

Model. A file is identified by (st_dev, st_ino) plus a fingerprint (its first `FP_LEN` bytes), never
by its path. Each scan:

1. globs the patterns and stats every match, giving identity -> path;
2. a followed file whose identity no longer matches any glob was rotated away (renamed out of the
   globs, or deleted): it is still read to its end, and closed once it has not grown for
   `drain_after` seconds (a writer may append to the old file until it reopens its log);
3. files are read in the order they were first seen, so an old file is finished before the file
   that replaced it (rename-and-create rotation);
4. a file smaller than the read offset, or whose first bytes changed under us, was truncated
   (copytruncate): reading restarts at 0. The fingerprint is checked after each read, so bytes
   read from a file rewritten meanwhile are never handed on;
5. a new identity is followed from its start; files present at start-up begin at `--file-start`
   (`end`: after the last complete line) unless `--state-dir` knows them.

A partial last line waits for its newline, or `partial_after` seconds without growth, then goes
out as it is. Lines go to the parser with back-pressure (`Worker.put`); each batch carries a
commit marker run under the metrics lock once its lines are counted, so the offsets saved in a
checkpoint are exactly those of lines already counted (a restart neither loses nor double-counts).

Wake-ups: inotify on the globs' directories (via ctypes) wakes a scan when a file there changes;
a full rescan runs every `rescan` seconds as a safety net (new directories under a wildcard,
file systems without inotify). Without inotify, everything is polled every `poll` seconds.
Copytruncate loses what was written after the reader's position and before the truncation; that
is logrotate's own caveat, and one more reason to prefer rename rotation.
"""

from __future__ import annotations

import asyncio
import ctypes
import glob
import logging
import math
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from llm_exporter.metrics.internal import Counters, SourceCounter
from llm_exporter.sources.base import LineFeed
from llm_exporter.worker import Worker

log = logging.getLogger("llm_exporter.source")

CHUNK = 1 << 16
FP_LEN = 64
SOURCE = "file"

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW = 0x400, 0x800, 0x4000
_DIR_CHANGES = (_IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF
                | _IN_MOVE_SELF | _IN_Q_OVERFLOW | _IN_ATTRIB)
_WATCH_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _DIR_CHANGES
_EVENT = struct.Struct("iIII")


class _Inotify:
    """The few inotify calls we need, through libc; `None` from `open()` means: poll instead."""

    def __init__(self, fd: int, libc: Any) -> None:
        self.fd = fd
        self._libc = libc
        self._watched: set[str] = set()

    @classmethod
    def open(cls) -> _Inotify | None:
        try:
            libc = ctypes.CDLL(None)
            fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        except (OSError, AttributeError):
            return None
        return cls(fd, libc) if fd >= 0 else None

    def watch(self, directory: str) -> None:
        if directory in self._watched:
            return
        if self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _WATCH_MASK) >= 0:
            self._watched.add(directory)

    def forget_missing(self) -> None:
        self._watched = {d for d in self._watched if os.path.isdir(d)}

    def drain(self) -> int:
        """Read every pending event; return the union of their masks."""
        masks = 0
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return masks
            except OSError:  # (EINTR is retried by os.read itself)
                return masks | _IN_Q_OVERFLOW
            i = 0
            while i + _EVENT.size <= len(buf):
                _wd, mask, _cookie, size = _EVENT.unpack_from(buf, i)
                masks |= mask
                i += _EVENT.size + size

    def close(self) -> None:
        os.close(self.fd)


class _Stream:
    """One followed file (one identity)."""

    __slots__ = (
        "dev",
        "fd",
        "feed",
        "fp",
        "grew",
        "ino",
        "key",
        "offset",
        "path",
        "rotated",
        "sent",
        "sid",
    )

    def __init__(self, path: str, fd: int, st: os.stat_result, feed: LineFeed, fp: bytes, offset: int) -> None:
        self.path = path
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.key = f"{st.st_dev}:{st.st_ino}"
        self.sid = f"file:{self.key}"
        self.offset = offset  # read so far
        self.sent = offset  # end of the last complete line handed to the parser
        self.fp = fp  # the file's first bytes (up to FP_LEN) as last read
        self.feed = feed  # frames; counts once the lines are applied (see `_commit_fn`)
        self.grew = time.monotonic()
        self.rotated = False


class _Saved(NamedTuple):
    """One file of the last checkpoint: where it was, how far it was counted, its first bytes."""

    dev: int
    ino: int
    path: str
    offset: int
    fp: bytes


def _saved_entries(files: Any) -> dict[str, _Saved] | None:
    """The usable entries of the last checkpoint's `files` section (None: nothing saved).

    What `snapshot()` did not write (a damaged or hand-edited state file) is dropped with one
    warning: such a file is then read like one never seen.
    """
    if files is None:
        return None
    if not isinstance(files, dict):
        log.warning("state file: its files section is not a mapping; no file offset is restored")
        return None
    out: dict[str, _Saved] = {}
    for key, entry in files.items():
        try:
            dev, ino = (int(x) for x in key.split(":"))
            path, offset, fp = entry["path"], entry["offset"], bytes.fromhex(entry["fp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(path, str) and type(offset) is int and offset >= 0:
            out[key] = _Saved(dev, ino, path, offset, fp)
    if len(out) < len(files):
        log.warning("state file: %d of its %d file entries are malformed and ignored (those files are read "
                    "as new)", len(files) - len(out), len(files))
    return out


def _dir_patterns(pattern: str) -> list[str]:
    d = os.path.dirname(pattern) or "."
    return glob.glob(d) if glob.has_magic(d) else [d]


def _last_line_end(fd: int, size: int) -> int:
    """Offset just after the last newline before `size` (0 when there is none in the last 1 MiB)."""
    pos = size
    while pos > 0 and size - pos < (1 << 20):
        start = max(0, pos - CHUNK)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


class FileTail:
    """Follows every file matching `globs` on its own thread; source label `file`."""

    name = SOURCE

    def __init__(self, globs: list[str], worker: Worker, counters: Counters, *, start: str = "end",
                 max_line: int = 1 << 20, saved: dict[str, Any] | None = None, rescan: float = 1.0,
                 poll: float = 0.25, partial_after: float = 5.0, drain_after: float = 5.0,
                 use_inotify: bool = True) -> None:
        self.globs = list(globs)
        self._worker = worker
        self._counters = counters
        self._count: SourceCounter | None = None
        self._start = start
        self._max_line = max_line
        self._saved = _saved_entries(saved)  # the last checkpoint's files (None: nothing saved)
        self._rescan, self._poll = rescan, poll
        self._partial_after, self._drain_after = partial_after, drain_after
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._applied: dict[str, dict[str, Any]] = {}  # written by the pipeline thread, under the lock
        self._first_scan = True
        self._not_regular: set[str] = set()  # paths said once to be skipped (not a regular file)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._inotify = _Inotify.open() if use_inotify else None
        self._thread = threading.Thread(target=self._run, name="source-file", daemon=True)
        self.attached = False
        #: files matching each glob at the last full scan (None: not scanned yet)
        self.glob_files: dict[str, int | None] = dict.fromkeys(self.globs)

    # -- lifecycle ---------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return []

    def send_signal(self, sig: int) -> None:
        """Nothing to hand a signal to."""

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._count = self._counters(SOURCE)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading (lines not yet complete stay unread, so a restart reads them)."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout)

    def snapshot(self) -> dict[str, Any]:
        """The `files` state section; call under the metrics lock (see `StateStore.checkpoint`)."""
        return {k: dict(v) for k, v in self._applied.items()}

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        ino = self._inotify
        last_full = -math.inf  # the first pass is a full scan
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                full = ino is None or now - last_full >= self._rescan
                if ino is not None:
                    masks = ino.drain()
                    full = full or bool(masks & _DIR_CHANGES)
                try:
                    if full:
                        last_full = now
                        self._scan()
                    else:
                        self._read_all()
                    self._flush_partials()
                except OSError as e:  # a file vanished or failed mid-read: the next pass retries
                    log.warning("file source: %s; retrying", e)
                    last_full = -math.inf  # rescan next time
                self.attached = True
                self._wait(ino, self._next_timeout(last_full))
        except Exception:  # a bug here must not take the daemon down silently
            log.exception("file source stopped")
        finally:
            for s in self._streams.values():
                os.close(s.fd)
            if ino is not None:
                ino.close()

    def _next_timeout(self, last_full: float) -> float:
        if self._inotify is None:
            return self._poll
        t = max(0.0, last_full + self._rescan - time.monotonic())
        for s in self._streams.values():
            if s.feed.pending or s.rotated:
                t = min(t, max(0.05, s.grew + min(self._partial_after, self._drain_after) - time.monotonic()))
        return t

    def _wait(self, ino: _Inotify | None, timeout: float) -> None:
        fds = [self._wake_r] + ([ino.fd] if ino is not None else [])
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 64)

    # -- scanning ----------------------------------------------------------------------------

    def _scan(self) -> None:
        matches: dict[tuple[int, int], str] = {}
        for pattern in self.globs:
            if self._inotify is not None:
                for d in _dir_patterns(pattern):
                    self._inotify.watch(d)
            n = 0
            for path in sorted(glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    matches.setdefault((st.st_dev, st.st_ino), path)
                    n += 1
                elif not stat.S_ISDIR(st.st_mode) and path not in self._not_regular:
                    # a FIFO's open would block until a writer comes, a device never ends: neither
                    # is a log file (said once per path)
                    self._not_regular.add(path)
                    log.warning("%s matches --file but is not a regular file (a FIFO, socket or device): "
                                "skipped", path)
            self._count_glob(pattern, n)
        for ident, s in self._streams.items():
            found = matches.get(ident)
            s.rotated = found is None
            if found is not None and found != s.path:
                s.path = found
                self._name(s)
        self._read_all()  # old files first: finish what was rotated before reading its successor
        if self._first_scan:
            self._resume_rotated(matches)
        for ident, path in matches.items():
            if ident not in self._streams:
                self._open(path, ident)
        self._first_scan = False
        self._read_all()
        self._close_drained()
        if self._inotify is not None:
            self._inotify.forget_missing()

    def _open(self, path: str, ident: tuple[int, int]) -> _Stream | None:
        # never blocks: a FIFO swapped in after the scan's stat is refused below (and, like every
        # descriptor os.open makes, it is not inherited by a child process)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            if path not in self._not_regular:
                self._not_regular.add(path)
                log.warning("cannot open %s: %s", path, e.strerror)
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != ident or not stat.S_ISREG(st.st_mode):  # replaced since: next scan
            os.close(fd)
            return None
        self._not_regular.discard(path)
        fp = os.pread(fd, FP_LEN, 0)
        offset = 0
        saved = (self._saved or {}).get(f"{st.st_dev}:{st.st_ino}")
        if saved is not None:
            if fp[: len(saved.fp)] == saved.fp and st.st_size >= saved.offset:
                offset = saved.offset
            else:
                log.info("%s was replaced since the last run: reading it from the start", path)
        elif self._first_scan and self._saved is None and self._start == "end":
            offset = _last_line_end(fd, st.st_size)
        s = _Stream(path, fd, st, self._new_feed(), fp, offset)
        self._streams[ident] = s
        self._name(s)
        log.info("following %s", path, extra={"fields": {"path": path, "offset": offset}})
        return s

    def _count_glob(self, pattern: str, n: int) -> None:
        """Keep the gauge; say when a glob matches nothing (at start, or once it stops matching)
        and when it matches again."""
        before = self.glob_files.get(pattern)
        self.glob_files[pattern] = n
        if n == 0 and before != 0:
            log.warning("--file %s matches no file%s: nothing is read from it until one appears "
                        "(llm_exporter_file_glob_files shows 0 meanwhile)", pattern,
                        " yet" if before is None else " any more", extra={"fields": {"glob": pattern}})
        elif n and before == 0:
            log.info("--file %s matches %d file(s) now", pattern, n, extra={"fields": {"glob": pattern}})

    def collect(self) -> Iterator[Metric]:
        """`llm_exporter_file_glob_files{glob}`: files each `--file` glob matched at the last scan."""
        g = GaugeMetricFamily("llm_exporter_file_glob_files",
                              "Files each --file glob matched at the last scan (0: nothing is read from it).",
                              labels=("glob",))
        for pattern, n in list(self.glob_files.items()):
            if n is not None:
                g.add_metric([pattern], n)
        yield g

    def _name(self, s: _Stream) -> None:
        """Rejects from this file show its path (a dict item set is atomic: the parser reads it)."""
        self._worker.pipeline.stream_names[s.sid] = s.path

    def _resume_rotated(self, matches: dict[tuple[int, int], str]) -> None:
        """Files from the last run that were rotated out of the globs while we were down: finish them
        (opened before the files that replaced them, so they are read first)."""
        for saved in (self._saved or {}).values():
            ident = (saved.dev, saved.ino)
            if ident in matches or ident in self._streams:  # (a first scan retried after an error)
                continue
            try:
                with os.scandir(os.path.dirname(saved.path) or ".") as it:
                    found = next((e.path for e in it if e.inode() == saved.ino and e.is_file()), None)
            except OSError:
                continue
            if found is not None and os.stat(found).st_dev == saved.dev:
                s = self._open(found, ident)
                if s is not None:
                    s.rotated = True

    def _read_all(self) -> None:
        for s in self._streams.values():  # in the order they were opened
            if self._stop.is_set():
                return
            self._read(s)

    def _read(self, s: _Stream) -> None:
        try:
            size = os.fstat(s.fd).st_size
        except OSError:
            return
        if size < s.offset:
            self._truncated(s, "shrank")
        while s.offset < size and not self._stop.is_set():
            chunk = os.pread(s.fd, min(CHUNK, size - s.offset), s.offset)
            if not chunk:  # shrank since the fstat: the next pass sees it
                return
            head = os.pread(s.fd, FP_LEN, 0)  # a short fingerprint (a young file) grows as the file does
            if head[: len(s.fp)] != s.fp:
                self._truncated(s, "was rewritten")
                size = os.fstat(s.fd).st_size
                continue
            s.fp = head
            s.offset += len(chunk)
            s.grew = time.monotonic()
            lines, too_long = s.feed.frame(chunk)
            self._send(s, lines, too_long, s.offset - s.feed.pending)

    def _new_feed(self) -> LineFeed:
        assert self._count is not None  # set by start()
        return LineFeed(self._count, self._max_line)

    def _truncated(self, s: _Stream, how: str) -> None:
        log.info("%s %s: reading it again from the start", s.path, how)
        s.feed = self._new_feed()
        s.offset = s.sent = 0
        s.fp = os.pread(s.fd, FP_LEN, 0)
        self._worker.put(SOURCE, [], commit=self._commit_fn(s, 0), stream=s.sid)

    def _send(self, s: _Stream, lines: list[bytes], too_long: int, end: int) -> None:
        if end == s.sent and not lines and not too_long:
            return
        nbytes = end - s.sent
        s.sent = end
        self._worker.put(SOURCE, lines, commit=self._commit_fn(s, end, nbytes, too_long), stream=s.sid)

    def _commit_fn(self, s: _Stream, end: int, nbytes: int = 0, too_long: int = 0) -> Callable[[], None]:
        applied, feed = self._applied, s.feed
        key, path, fp = s.key, s.path, s.fp.hex()

        def commit() -> None:  # pipeline thread, apply lock held
            applied[key] = {"path": path, "offset": end, "fp": fp}
            feed.count(nbytes, too_long)

        return commit

    def _forget_fn(self, key: str) -> Callable[[], None]:
        applied = self._applied

        def forget() -> None:  # pipeline thread, metrics lock held: the file is done, drop its offset
            applied.pop(key, None)

        return forget

    def _flush_partials(self) -> None:
        now = time.monotonic()
        for s in list(self._streams.values()):
            if s.feed.pending and now - s.grew >= self._partial_after:
                lines, too_long = s.feed.end()
                self._send(s, lines, too_long, s.offset)

    def _close_drained(self) -> None:
        now = time.monotonic()
        for ident, s in list(self._streams.items()):
            if s.rotated and now - s.grew >= self._drain_after:
                self._read(s)
                lines, too_long = s.feed.end()
                self._send(s, lines, too_long, s.offset)
                os.close(s.fd)
                del self._streams[ident]
                self._worker.put(SOURCE, [], commit=self._forget_fn(s.key), stream=s.sid)
                self._worker.flush_source(SOURCE, stream=s.sid, forget=True)
                log.info("finished %s (rotated away)", s.path)
