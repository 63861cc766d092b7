"""What the server reports about itself: engine stats gauges (`stats` records), access-log HTTP
counters (`http` records) and its own log lines by level (`log` records).

The caller holds the apply lock (see `llm_exporter.metrics`). A new family fed by another record
kind is a group like this one: `appliers()` names the record kinds it takes, `families()` yields
its output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_exporter.labels import LabelLimiter, LabelLimits

STATS_LABELS = ("gen_ai_provider_name", "gen_ai_request_model", "engine")
#: stats record field -> (gauge name, help, unit)
GAUGES: dict[str, tuple[str, str, str]] = {
    "running": ("llm_requests_running", "Requests being processed (server stats).", ""),
    "waiting": ("llm_requests_waiting", "Requests waiting in the queue (server stats).", ""),
    "swapped": ("llm_requests_swapped", "Requests swapped out to CPU (server stats).", ""),
    "kv_cache_usage": ("llm_kv_cache_usage_ratio", "KV cache usage, 0 to 1.", "ratio"),
    "prefix_cache_hit": ("llm_prefix_cache_hit_ratio", "Prefix cache hit rate, 0 to 1.", "ratio"),
    "prompt_tps": ("llm_prompt_throughput_tokens_per_second",
                   "Prompt (prefill) throughput averaged over the server's interval.", ""),
    "generation_tps": ("llm_generation_throughput_tokens_per_second",
                       "Generation throughput averaged over the server's interval.", ""),
    # set on every stats record: the gauges above keep their value after the server stops logging
    # (or the engine goes away), this says how old they are
    "last_seen": ("llm_server_stats_last_seen_timestamp_seconds",
                  "When the server last logged a stats line for this engine (Unix time); "
                  "the stats gauges are that old.", ""),
}
#: the gauges read from a stats record's own fields
RECORD_FIELDS = tuple(f for f in GAUGES if f != "last_seen")


class EngineMetrics:
    """Server stats gauges, HTTP request counters and log-level counters."""

    def __init__(self, limits: LabelLimits, model_limiter: LabelLimiter,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.stats: dict[tuple[str, str, str], dict[str, float]] = {}
        self.http: dict[tuple[str, str, str, str], int] = {}
        self.logs: dict[tuple[str, str], int] = {}
        self._lim_model = model_limiter
        self._lim_path = limits("llm_http_requests_total", "path")
        self._lim_engine = limits("llm_requests_running", "engine")

    def appliers(self) -> dict[str, Callable[[Any, float | None], None]]:
        """Record kind -> the method that applies such a record."""
        return {"stats": self.apply_stats, "http": self.apply_http, "log": self.apply_log}

    def apply_stats(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], self._lim_model(rec.get("model") or ""), self._lim_engine(rec.get("engine") or ""))
        g = self.stats.setdefault(key, {})
        for f in RECORD_FIELDS:
            v = rec.get(f)
            if v is not None:
                g[f] = v
        g["last_seen"] = self._clock() if now is None else now

    def apply_http(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], rec["method"], self._lim_path(rec["path"]), rec["code"])
        self.http[key] = self.http.get(key, 0) + 1

    def apply_log(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], rec["level"])
        self.logs[key] = self.logs.get(key, 0) + 1

    def families(self) -> Iterator[Metric]:
        gauges = {f: GaugeMetricFamily(name, help_, labels=STATS_LABELS, unit=unit)
                  for f, (name, help_, unit) in GAUGES.items()}
        for key, g in self.stats.items():
            for f, v in g.items():
                gauges[f].add_metric(list(key), v)
        yield from gauges.values()

        http = CounterMetricFamily("llm_http_requests", "HTTP requests seen in access logs.",
                                   labels=("gen_ai_provider_name", "method", "path", "code"))
        for hk, n in self.http.items():
            http.add_metric(list(hk), n)
        yield http
        logs = CounterMetricFamily("llm_log_messages", "The server's own log records by level.",
                                   labels=("gen_ai_provider_name", "level"))
        for lk, n in self.logs.items():
            logs.add_metric(list(lk), n)
        yield logs
