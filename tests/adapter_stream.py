"""Lines read as one stream on the pipeline's own per-line path (collector wrapper peeled, adapters
tried in `--format` order, records checked), for tests that compare every record a line gives."""

from __future__ import annotations

from typing import Any

from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline


class Stream:
    """One stream: `line(text)` gives what that line became, `end()` what was still held at EOF."""

    def __init__(self, fmt: str = "auto") -> None:
        self.pipeline = Pipeline(LLMMetrics(), fmt)
        self.state = self.pipeline._state("test")

    @property
    def shared(self) -> dict[str, Any]:
        """What the stream's adapters share (`server`, `front_door`, `engine_counted`)."""
        return self.state.chain[0].shared

    def line(self, text: str) -> tuple[str, Any]:
        """(`record`, [records]) or (`ignored` | `unparsed` | `invalid`, reason)."""
        outcome, result = self.pipeline._one(self.state, text.encode())
        if outcome == "record":
            return outcome, result if type(result) is list else [result]
        return outcome, result

    def records(self, text: str) -> list[dict[str, Any]]:
        """The records of one line known to an adapter (none for an ignored one); a line left unknown
        or found invalid fails the test."""
        outcome, result = self.line(text)
        assert outcome in ("record", "ignored"), (text, outcome, result)
        return result if outcome == "record" else []

    def end(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for a in self.state.chain:
            out += a.flush()
        return out


def read(lines: list[str], fmt: str = "auto") -> list[dict[str, Any]]:
    """Every record of `lines` as one stream, EOF included, in order."""
    s = Stream(fmt)
    out: list[dict[str, Any]] = []
    for text in lines:
        out += s.records(text)
    return out + s.end()


def requests(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["kind"] == "request"]
