"""The synchronous middle: line -> envelope -> adapter -> record -> metrics.

Every line handed to `Pipeline.process` lands in exactly one outcome of
`llm_exporter_lines_total`: `record` (it produced at least one record, or belongs to a
multi-line record), `ignored` (recognised, nothing to count, or blank), `unparsed` (no adapter
knows it: plain text, or JSON of no known shape), `invalid` (a known shape with bad values).
`too_long` and `dropped` are decided before a line gets here (framing and back-pressure); a
too-long line's `TooLong` marker still comes through, uncounted here, so that it gets its line
number and is kept as a reject. Line numbers count per stream (each followed file on its own).
Nothing in here raises on input: an adapter bug is counted as `invalid` with reason
`adapter_error` and logged once.

Server incidents are counted once per incident: after a `server_error` record a stream is marked
down, and further incident records (the same death's traceback, the launcher's exit lines, each
request's echo of it) are dropped until the stream shows life again (a successful request, a stats
or token record).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from llm_exporter import adapters
from llm_exporter.adapters.base import IGNORED, Adapter, Invalid, json_object
from llm_exporter.envelopes import Envelope
from llm_exporter.file_labels import path_labels
from llm_exporter.framing import TooLong
from llm_exporter.hints import text as hint_text
from llm_exporter.metrics import LLMMetrics
from llm_exporter.records import problem
from llm_exporter.startup import StartupScanner, scan_line

log = logging.getLogger("llm_exporter.pipeline")

BOM = b"\xef\xbb\xbf"
#: how many rejected lines are kept for `replay`'s summary and the debug endpoint
REJECT_KEEP = 50


class Reject:
    """One rejected line, kept for diagnostics (never a label). `source` names where it was read:
    the source label, or for a followed file its path."""

    __slots__ = ("line", "lineno", "outcome", "reason", "source")

    def __init__(self, source: str, lineno: int, outcome: str, reason: str, line: bytes) -> None:
        self.source, self.lineno, self.outcome, self.reason = source, lineno, outcome, reason
        self.line = line[:200]


class _SourceState:
    __slots__ = ("chain", "down", "envelope", "labels", "lineno", "startup", "where")

    def __init__(self, chain: list[Adapter], where: str, fmt: str = "auto") -> None:
        self.envelope = Envelope()
        self.chain = chain
        self.lineno = 0
        self.startup = StartupScanner(fmt)
        self.where = where
        self.labels: dict[str, str] = {}  # --file-labels: the workload its file's path names
        self.down = False  # an incident was counted and the server has shown no life since


_LIFE = frozenset({"stats", "tokens"})


def _incidents_once(st: _SourceState, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records` without the incident records of an incident already counted (see the module doc)."""
    out = records
    for i, r in enumerate(records):
        kind = r["kind"]
        if kind == "server_error":
            if st.down:
                if out is records:
                    out = records[:i]
                continue
            st.down = True
        elif st.down and (kind in _LIFE or (kind == "request" and r["outcome"] == "success")):
            st.down = False
        if out is not records:
            out.append(r)
    return out


class Pipeline:
    """Turns lines into metric updates; one instance per process, shared by every source."""

    def __init__(self, metrics: LLMMetrics, fmt: str = "auto", config: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.fmt = fmt
        self._config: Any = None
        self.config = config
        self.clock = clock
        self.rejects: deque[Reject] = deque(maxlen=REJECT_KEEP)
        self._sources: dict[str, _SourceState] = {}
        self._adapter_errors_logged: set[str] = set()
        #: what a stream is called in rejects (a followed file's path), when not its source label
        self.stream_names: dict[str, str] = {}
        #: --file-labels: request records of a followed file get the workload its path names
        self.file_labels = False

    @property
    def config(self) -> Any:
        """The `--config` in force; setting it also sets the metrics' extra labels and custom metrics
        (the caller holds the metrics lock, or nothing runs yet)."""
        return self._config

    @config.setter
    def config(self, config: Any) -> None:
        self._config = config
        self.metrics.configure(config)

    def reconfigure(self, config: Any) -> None:
        """Swap in a new `--config`: multi-line records in progress are finished with the old one,
        then every stream gets fresh adapters built with the new one."""
        self.flush()
        with self.metrics.lock:
            self.config = config
            for st in self._sources.values():
                st.chain = adapters.build_chain(self.fmt, config)
                _link(st)

    def _state(self, source: str, stream: str | None = None) -> _SourceState:
        key = stream or source
        st = self._sources.get(key)
        if st is None:
            self.metrics.source(source)  # its line series start at 0
            st = self._sources[key] = _SourceState(adapters.build_chain(self.fmt, self.config), source, self.fmt)
            _link(st)
        if stream is not None:
            st.where = self.stream_names.get(stream, source)
            if self.file_labels:
                st.labels = path_labels(st.where)
        return st

    def process(self, source: str, lines: Iterable[bytes], commit: Callable[[], None] | None = None,
                stream: str | None = None) -> None:
        """Process complete lines (no trailing newline) from one source; takes the metrics lock.

        `stream` keys the parse state when one `source` label covers several streams (files);
        `commit` runs under the lock once the lines are counted (a checkpoint sees both or neither).
        """
        st = self._state(source, stream)
        m = self.metrics
        apply = m.apply
        count_line = m.internal.count_line
        counts = {"record": 0, "ignored": 0, "unparsed": 0, "invalid": 0}
        now = self.clock()
        where = st.where
        with m.lock:
            for line in lines:
                st.lineno += 1
                if type(line) is TooLong:  # counted by its source; numbered and kept here
                    self.rejects.append(Reject(where, st.lineno, "too_long", "line_too_long", line))
                    continue
                outcome, result = self._one(st, line)
                if outcome == "record" and st.labels:
                    _add_labels(result, st.labels)
                if outcome == "record":
                    if type(result) is list:
                        ok = self._safe_apply(_incidents_once(st, result), now)
                    elif st.down or result["kind"] == "server_error":
                        ok = self._safe_apply(_incidents_once(st, [result]), now)
                    else:
                        try:
                            apply(result, now)
                            ok = True
                        except Exception:  # a malformed record must not end the pipeline thread
                            self._log_adapter_error(None)
                            ok = False
                    if not ok:
                        outcome, result = "invalid", "adapter_error"
                        self.rejects.append(Reject(where, st.lineno, outcome, result, line))
                elif outcome != "ignored":
                    self.rejects.append(Reject(where, st.lineno, outcome, result, line))
                counts[outcome] += 1
            for k, n in counts.items():
                if n:
                    count_line(source, k, n)
            if commit is not None:
                commit()

    def hints(self) -> list[str]:
        """Why some metrics are missing, in words (`llm_exporter.hints`), each once."""
        with self.metrics.lock:
            keys = list(self.metrics.hints.seen)
        return [hint_text(k) for k in keys]

    def flush(self, source: str | None = None, forget: bool = False) -> None:
        """Hand out what multi-line records still hold (EOF or idle timeout); `forget` drops the state.

        Fragments an envelope still holds are parsed now; their physical lines were counted
        (`ignored`) when they arrived, so only their records are applied here.
        """
        names = [source] if source is not None else list(self._sources)
        now = self.clock()
        with self.metrics.lock:
            for name in names:
                st = self._sources.pop(name, None) if forget else self._sources.get(name)
                if forget:
                    self.stream_names.pop(name, None)
                if st is None:
                    continue
                for held in st.envelope.flush():
                    outcome, result = self._one(st, held)
                    if outcome == "record" and st.labels:
                        _add_labels(result, st.labels)
                    if outcome == "record":
                        self._safe_apply(_incidents_once(st, result if type(result) is list else [result]), now)
                for a in st.chain:
                    try:  # checked like a line's records: whole, or not at all when a value is bad
                        outcome, held_records = _checked(("record", a.flush()))
                    except Exception:  # an adapter bug must not stop the daemon
                        self._log_adapter_error(a)
                        continue
                    if outcome == "record":
                        self._safe_apply(_incidents_once(st, held_records), now)

    def _safe_apply(self, records: list[dict[str, Any]], now: float) -> bool:
        """Apply records; False (logged once) when one cannot be applied."""
        try:
            for r in records:
                self.metrics.apply(r, now)
        except Exception:  # a malformed record must not end the pipeline thread
            self._log_adapter_error(None)
            return False
        return True

    def _one(self, st: _SourceState, raw: bytes) -> tuple[str, Any]:
        peeled = st.envelope.peel(raw)
        if peeled is None:
            return "ignored", None  # a fragment held until its line is complete
        line = peeled.strip()
        if line[:3] == BOM:  # a UTF-8 byte order mark (a file saved by an editor, a first line)
            line = line[3:].lstrip()
        if not line:
            return "ignored", None
        outcome, result = self._adapt(st, line)
        if outcome != "invalid":  # start-up figures ride on log lines the adapters count as they wish
            return scan_line(st.startup, line, outcome, result, self.clock)
        return outcome, result

    def _adapt(self, st: _SourceState, line: bytes) -> tuple[str, Any]:
        a: Adapter | None = None
        try:
            if line[:1] == b"{":
                # decoded once here, for every JSON adapter; a line that is not one JSON object
                # goes only to adapters that read raw bytes (app-json lets pydantic judge it)
                obj = json_object(line)
                for a in st.chain:
                    if obj is None and a.wants_obj:
                        continue
                    res = a.parse_json(line, obj)
                    if res is not None:
                        return _checked(_classify(res))
                if obj is not None:
                    return "unparsed", "json_unknown_shape"
                # not JSON after all: the text adapters may still know it
            text = line.decode("utf-8", "replace")
            for a in st.chain:
                res = a.parse_text(text)
                if res is not None:
                    return _checked(_classify(res))
            return "unparsed", "no_adapter"
        except Invalid as e:
            return "invalid", e.reason
        except Exception:
            self._log_adapter_error(a)
            return "invalid", "adapter_error"

    def _log_adapter_error(self, a: Adapter | None) -> None:
        """Log an adapter's failure (None: its record failed to apply) once per adapter."""
        name = a.name if a is not None else "(record)"
        if name not in self._adapter_errors_logged:
            self._adapter_errors_logged.add(name)
            log.exception("adapter %s failed on a line; counted as invalid/adapter_error", name)


def _add_labels(result: Any, labels: dict[str, str]) -> None:
    """Put a stream's workload labels (`--file-labels`) on its request records."""
    for r in result if type(result) is list else (result,):
        if r["kind"] == "request":  # records: checked dicts with a kind (`_checked`)
            ex = r.get("extra_labels")
            r["extra_labels"] = {**ex, **labels} if ex else labels


def _link(st: _SourceState) -> None:
    """Adapters that read the time peeled off a line (the `--config` rules' pairing) see the
    stream's envelope."""
    for a in st.chain:
        if hasattr(a, "envelope"):
            a.envelope = st.envelope


def _checked(res: tuple[str, Any]) -> tuple[str, Any]:
    """A line's records, all of them applicable, or `invalid` with the first problem: a line is
    applied whole or not at all (label values are made safe on the way). What is no record at all
    (no dict, or no kind) is an adapter's bug: TypeError."""
    outcome, recs = res
    if outcome == "record":
        for r in recs if type(recs) is list else (recs,):
            if type(r) is not dict or "kind" not in r:
                raise TypeError(f"an adapter handed out {type(r).__name__}, not a record")
            why = problem(r)
            if why is not None:
                return "invalid", why
    return res


def _classify(res: Any) -> tuple[str, Any]:
    if res is IGNORED or res == IGNORED:
        return "ignored", None
    return "record", res

