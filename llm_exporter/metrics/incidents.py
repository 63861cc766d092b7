"""What a server says about itself beyond one request: its incidents (`server_error` records:
engine death, a crashed runner or shard, OOM while loading) and the prompt tokens it processed
(`tokens` records per batch, and the `prompt_tokens`/`cached_tokens` of `request` records).

`llm_server_errors_total{gen_ai_provider_name,error_type}` counts incidents, one per incident (the
pipeline drops the echoes of one already counted); they are never failed requests.
`llm_prompt_tokens_total` / `llm_prompt_cached_tokens_total{gen_ai_provider_name,
gen_ai_request_model,engine}` count prompt tokens, cached part included, and the cached part. The
caller holds the apply lock (see `llm_exporter.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from llm_exporter.labels import LabelLimiter, LabelLimits
from llm_exporter.metrics.engine import STATS_LABELS


class IncidentMetrics:
    """Server incidents and prompt-token counters."""

    def __init__(self, limits: LabelLimits, model_limiter: LabelLimiter) -> None:
        self.server_errors: dict[tuple[str, str], int] = {}
        self.prompt_tokens: dict[tuple[str, str, str], list[int]] = {}  # -> [prompt, cached]
        self._lim_model = model_limiter
        self._lim_engine = limits("llm_requests_running", "engine")
        self._lim_err = limits("llm_server_errors_total", "error_type")

    def appliers(self) -> dict[str, Callable[[Any, float | None], None]]:
        """Record kind -> the method that applies such a record."""
        return {"server_error": self.apply_server_error, "tokens": self.apply_tokens}

    def apply_server_error(self, rec: Any, now: float | None = None) -> None:
        key = (rec["provider"], self._lim_err(rec.get("error_type") or "_OTHER"))
        self.server_errors[key] = self.server_errors.get(key, 0) + 1

    def apply_tokens(self, rec: Any, now: float | None = None) -> None:
        self.add_prompt(rec["provider"], rec.get("model") or "", rec.get("engine") or "", rec["prompt_tokens"],
                        rec.get("cached_tokens"))

    def add_prompt(self, provider: str, model: str, engine: str, prompt: int, cached: int | None) -> None:
        """Count one prompt's (or one batch's) tokens."""
        c = self.prompt_tokens.get((provider, model, engine))  # admitted before: no limiter call
        if c is None:
            key = (provider, self._lim_model(model), self._lim_engine(engine))
            c = self.prompt_tokens.get(key)
            if c is None:
                c = self.prompt_tokens[key] = [0, 0]
        c[0] += prompt
        if cached:
            c[1] += cached

    def families(self) -> Iterator[Metric]:
        srv = CounterMetricFamily("llm_server_errors",
                                  "Server incidents (engine death, a crashed runner or shard), never a request.",
                                  labels=("gen_ai_provider_name", "error_type"))
        for sk, n in self.server_errors.items():
            srv.add_metric(list(sk), n)
        yield srv
        ptok = CounterMetricFamily("llm_prompt_tokens", "Prompt tokens the server processed, cached part included.",
                                   labels=STATS_LABELS)
        ctok = CounterMetricFamily("llm_prompt_cached_tokens", "Prompt tokens served from the prefix cache.",
                                   labels=STATS_LABELS)
        for tk, (p, c) in self.prompt_tokens.items():
            ptok.add_metric(list(tk), p)
            ctok.add_metric(list(tk), c)
        yield ptok
        yield ctok
