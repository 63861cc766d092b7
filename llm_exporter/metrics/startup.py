"""The start-up families: the last start's phase durations, how many starts were seen, and the
capacity the server ended up with (`startup` records, see `llm_exporter.startup`).

A start begins with the server's banner line, or with the first start-up line seen after the
previous start finished (its ready line), or with the very first start-up line read. Figures of
one start: a phase printed several times (one line per tensor-parallel rank) keeps the largest;
memory is summed over the devices and ranks that printed it. A new start drops the previous
start's figures, so every series describes the same start.

The caller holds the apply lock (see `llm_exporter.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_exporter.startup import MEMORY_USES, PHASES


class _Start:
    __slots__ = ("concurrency", "kv_tokens", "memory", "phases", "ready")

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.memory: dict[str, float] = {}
        self.kv_tokens: float | None = None
        self.concurrency: float | None = None
        self.ready = False

    def empty(self) -> bool:
        return not (self.phases or self.memory or self.ready) and self.kv_tokens is None and \
            self.concurrency is None


class StartupMetrics:
    """Start-up phase gauges, start counter and capacity gauges, per provider."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.current: dict[str, _Start] = {}

    def appliers(self) -> dict[str, Callable[[Any, float | None], None]]:
        return {"startup": self.apply}

    def apply(self, rec: Any, now: float | None = None) -> None:
        provider = rec["provider"]
        st = self.current.get(provider)
        phases = rec.get("phases") or {}
        carries = bool(phases) or any(rec.get(k) is not None for k in ("kv_cache_tokens", "max_concurrency",
                                                                     "memory_bytes"))
        if st is None or (rec.get("start") and not st.empty()) or (st.ready and carries):
            st = self.current[provider] = _Start()
            self.starts[provider] = self.starts.get(provider, 0) + 1
        for phase, seconds in phases.items():
            if phase in PHASES and seconds >= 0:
                st.phases[phase] = max(seconds, st.phases.get(phase, 0.0))
        v = rec.get("kv_cache_tokens")
        if v is not None:
            st.kv_tokens = float(v)
        v = rec.get("max_concurrency")
        if v is not None:
            st.concurrency = float(v)
        use = rec.get("memory_use")
        if use in MEMORY_USES and rec.get("memory_bytes") is not None:
            st.memory[use] = st.memory.get(use, 0.0) + float(rec["memory_bytes"])
        if rec.get("ready"):
            st.ready = True

    def snapshot(self) -> dict[str, Any]:
        """Starts seen and the last start's figures (for the `--state-dir` checkpoint)."""
        return {p: {"starts": n, "phases": dict(st.phases), "memory": dict(st.memory), "kv": st.kv_tokens,
                    "concurrency": st.concurrency, "ready": st.ready}
                for p, n in self.starts.items() if (st := self.current.get(p)) is not None}

    def restore(self, data: Any) -> None:
        """Take a snapshot back (raises on a damaged one; the caller keeps the metrics unchanged)."""
        for provider, d in (data or {}).items():
            st = _Start()
            st.phases = {str(k): float(v) for k, v in d["phases"].items() if k in PHASES}
            st.memory = {str(k): float(v) for k, v in d["memory"].items() if k in MEMORY_USES}
            st.kv_tokens = None if d["kv"] is None else float(d["kv"])
            st.concurrency = None if d["concurrency"] is None else float(d["concurrency"])
            st.ready = bool(d["ready"])
            self.starts[str(provider)] = int(d["starts"])
            self.current[str(provider)] = st

    def families(self) -> Iterator[Metric]:
        dur = GaugeMetricFamily("llm_server_startup_duration_seconds",
                                "How long each start-up phase of the server's last start took, as it printed it.",
                                labels=("gen_ai_provider_name", "phase"))
        starts = CounterMetricFamily("llm_server_starts", "Server starts seen in its logs.",
                                     labels=("gen_ai_provider_name",))
        kv = GaugeMetricFamily("llm_server_kv_cache_tokens", "Tokens the KV cache holds (last start).",
                               labels=("gen_ai_provider_name",))
        conc = GaugeMetricFamily("llm_server_max_concurrency",
                                 "Requests the server can run at once (last start; vLLM: full-length requests).",
                                 labels=("gen_ai_provider_name",))
        mem = GaugeMetricFamily("llm_server_memory_bytes",
                                "Memory the server allocated at its last start, by use, over all its devices.",
                                labels=("gen_ai_provider_name", "use"))
        for provider, n in sorted(self.starts.items()):
            starts.add_metric([provider], n)
            st = self.current[provider]
            for phase in PHASES:
                if phase in st.phases:
                    dur.add_metric([provider, phase], st.phases[phase])
            if st.kv_tokens is not None:
                kv.add_metric([provider], st.kv_tokens)
            if st.concurrency is not None:
                conc.add_metric([provider], st.concurrency)
            for use in MEMORY_USES:
                if use in st.memory:
                    mem.add_metric([provider, use], st.memory[use])
        yield from (dur, starts, kv, conc, mem)
