"""Why-no-metric advice a server's log gave (`hint` records): kept once per advice, logged once.

No metric family: the advice is shown by `replay`'s summary and the page (`llm_exporter.hints`
holds the words). The caller holds the apply lock (see `llm_exporter.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from llm_exporter.hints import HINTS
from llm_exporter.hints import text as hint_text

log = logging.getLogger("llm_exporter.hints")


class HintsSeen:
    """The advice seen so far: `llm_exporter.hints` key -> provider."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def appliers(self) -> dict[str, Callable[[Any, float | None], None]]:
        return {"hint": self.apply}

    def apply(self, rec: Any, now: float | None = None) -> None:
        key = rec["hint"]
        if key not in self.seen and key in HINTS:
            self.seen[key] = rec.get("provider") or ""
            log.warning(hint_text(key), extra={"fields": {"hint": key, "provider": self.seen[key]}})
