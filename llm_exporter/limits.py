"""What the exporter's safety limits refused, counted (`llm_exporter_limit_refusals_total`), and
log lines that a flood cannot multiply (one line per kind of failure per interval).

Every limit with a flag (connections, timeouts, queued password checks, config size, ...) counts
what it refused here under `limit="<name>"`, so an alert can tell a limit biting from an attack.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

#: every limit that can refuse something; all are exposed from the start (at 0)
LIMITS = (
    "connections",      # --web-max-connections: the least recently active connection was closed
    "header_timeout",   # --web-idle-timeout: no complete request head in time
    "body_timeout",     # --web-read-timeout: a request body that did not arrive in time
    "auth_queue",       # --web-auth-queue: too many password checks waiting
    "config",           # --config-max-bytes / --config-max-metrics
    "child_kill",       # --command-kill-after: the child ignored SIGTERM and was killed
)


class Refusals:
    """Counts per limit; a prometheus-client collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(LIMITS, 0)

    def count(self, limit: str, n: int = 1) -> None:
        with self._lock:
            self.counts[limit] = self.counts.get(limit, 0) + n

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily("llm_exporter_limit_refusals", "What a safety limit refused, by limit "
                                "(see --help: each limit is a flag).", labels=["limit"])
        with self._lock:
            for k, v in sorted(self.counts.items()):
                c.add_metric([k], v)
        yield c


class RateLimitedLog:
    """Log one line per `key` at most every `every` seconds, saying how many were held back."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self._log = logger
        self._every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, msg: str, *args: object, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._every:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            msg += f" ({held} more like it in the last {self._every:.0f} s not logged)"
        self._log.log(level, msg, *args)
