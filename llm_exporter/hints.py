"""Why a metric is missing: fixed advice an adapter raises when a server's log cannot give it.

An adapter hands out a `hint` record naming one key of `HINTS` (never free text); the metrics keep
the keys seen, the exporter logs each one once, `replay` prints them after its summary and the
page's data (`/api/dashboard`) lists them. The texts name the server flag that adds the missing
lines and what that flag costs.
"""

from __future__ import annotations

from typing import Final

#: key -> the advice, one sentence or two
HINTS: Final[dict[str, str]] = {
    "vllm_access_log_only": (
        "vLLM writes no per-request lines at its default settings: requests are counted from its "
        "access lines (outcome by HTTP status), without latency, finish reasons or tokens. Start vLLM "
        "with --enable-log-requests --enable-log-outputs to add per-request latency and finish reasons; "
        "this writes each request's sampling parameters and generated text (and, in versions before "
        "0.10, the prompt) to vLLM's log."
    ),
    "vllm_stats_only": (
        "vLLM's stats lines show traffic, but its log has neither access lines nor request lines, so no "
        "request can be counted. Keep vLLM's access log on (no --disable-uvicorn-access-log) to count "
        "requests by outcome, or add --enable-log-requests --enable-log-outputs for per-request latency "
        "and finish reasons (this writes request parameters and generated text to vLLM's log)."
    ),
}


def text(key: str) -> str:
    """The advice for `key` (the key itself when unknown)."""
    return HINTS.get(key, key)
