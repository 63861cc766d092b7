"""The `metrics` section of the `--state-dir` checkpoint: the metric state as JSON, and back.

`snapshot()` is called under the metrics lock by `StateStore.checkpoint`, together with the file
sources' offsets, so a restart resumes counters and histograms exactly at the lines those offsets
say were applied. Saved: request series (outcome counts, error types, finish reasons, every
histogram's buckets and sum), the per-tenant request, token and cost counters, server stats
gauges, HTTP, log-level, server-incident and prompt-token counters, the servers' starts and last
start-up figures, the SLO counts (restored only for objectives defined as they were), the lines
and bytes self counters, and the label limiters' admitted values and overflow counts (so `_OTHER`
folding goes on as before). Not saved: exemplars (they point at recent lines) and the 15-minute
window of the page. A histogram saved with other bucket bounds than the ones in use (this
build's, or the `--config` file's `buckets:` and SLO thresholds) is dropped with one log line
rather than misread. Request series saved before the `llm_adapter` label come back with no
adapter.

Every value round-trips: JSON has no infinity or NaN (orjson would write `null`), so a
non-finite float is saved as the string `"+Inf"`, `"-Inf"` or `"NaN"` and read back as such. Each
part (every request series, the stats, HTTP, log counters, ...) is restored on its own: a damaged
part is dropped with one log line naming it, the rest comes back.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.hist import Hist
from llm_exporter.metrics.requests import COUNTS, HISTS, RequestSeries

log = logging.getLogger("llm_exporter.state")

LAYOUT = 1


_NON_FINITE = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}


def _num(x: float) -> float | str:
    """A float as JSON can hold it: itself, or "+Inf" / "-Inf" / "NaN"."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf")


def _unnum(v: Any) -> float:
    """Back from `_num` (ValueError for anything else, `null` included)."""
    if type(v) is str and v in _NON_FINITE:
        return _NON_FINITE[v]
    if type(v) not in (int, float):
        raise ValueError(f"not a number: {v!r}")
    return float(v)


def _hist(h: Hist) -> dict[str, Any]:
    return {"b": list(h.bounds), "c": list(h.counts), "s": _num(h.sum)}


def _unhist(d: Any, bounds: tuple[float, ...], exemplars: bool) -> Hist | None:
    if not isinstance(d, dict) or [float(b) for b in d.get("b", [])] != [float(b) for b in bounds] \
            or len(d.get("c", [])) != len(bounds) + 1:
        return None
    h = Hist(bounds, exemplars=exemplars)
    h.counts = [int(c) for c in d["c"]]
    h.sum = _unnum(d["s"])
    return h


def snapshot(m: LLMMetrics) -> dict[str, Any]:
    """The metric state as JSON-able data; call under `m.lock`."""
    reqs = []
    for key, s in m.requests.series.items():
        r: dict[str, Any] = {"k": list(key), "n": list(s.requests),
                             "d": {et: _hist(h) for et, h in s.duration.items()}}
        for name, saved_as in COUNTS.items():
            r[saved_as] = dict(getattr(s, name))
        for name in HISTS:
            h = getattr(s, name)
            if h is not None:
                r[name] = _hist(h)
        reqs.append(r)
    e, i = m.engine, m.internal
    return {
        "layout": LAYOUT,
        "extra_labels": list(m.requests.extra_labels),  # what the request keys' last parts are
        "requests": reqs,
        "stats": [[list(k), {f: _num(x) for f, x in v.items()}] for k, v in e.stats.items()],
        "http": [[list(k), n] for k, n in e.http.items()],
        "logs": [[list(k), n] for k, n in e.logs.items()],
        "server_errors": [[list(k), n] for k, n in m.incidents.server_errors.items()],
        "prompt_tokens": [[list(k), list(v)] for k, v in m.incidents.prompt_tokens.items()],
        "lines": [[list(k), n] for k, n in i.lines.items()],
        "bytes": dict(i.bytes),
        "limiters": [[list(k), lim.admitted(), lim.overflow] for k, lim in m.limits.items()],
        "startup": m.startup.snapshot(),
        "slo": m.slo.snapshot(),
        "tenants": [[list(k), list(v)] for k, v in m.accounting.series.items()],
    }


def restore(m: LLMMetrics, data: Any) -> bool:
    """Load a snapshot into fresh metrics (before any line is read); False when there is none or
    it is not usable (then the metrics start from zero, with one log line)."""
    if not data:
        return False
    if not isinstance(data, dict) or data.get("layout") != LAYOUT:
        log.warning("saved metric state has an unknown layout; counters start from zero")
        return False
    dropped = 0  # histograms saved with other bucket bounds
    relabelled = 0  # request series saved with another number of extra labels
    damaged: list[str] = []
    t = LLMMetrics(label_limit=m.label_limit)  # filled first, then taken over under the lock

    def part(name: str, fn: Callable[[], None]) -> None:
        """Restore one part; a damaged one is left out (named in the log), the others come back."""
        try:
            fn()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            damaged.append(f"{name} ({type(e).__name__}: {e})")

    limiters: list[tuple[tuple[str, str], list[str], int]] = []

    def load_limiters() -> None:
        limiters.extend([((str(metric), str(label)), [str(v) for v in seen], int(overflow))
                         for (metric, label), seen, overflow in data.get("limiters", [])])

    def load_series(r: Any) -> None:
        nonlocal dropped, relabelled
        s = RequestSeries()
        s.requests = [int(x) for x in r["n"]]
        for name, saved_as in COUNTS.items():
            setattr(s, name, {k: int(v) for k, v in r.get(saved_as, {}).items()})
        for et, hd in r["d"].items():
            h = _unhist(hd, m.requests.hist_bounds("duration"), True)
            if h is None:
                dropped += 1
            else:
                s.duration[et] = h
        for name, (_, exemplars) in HISTS.items():
            if name in r:
                h = _unhist(r[name], m.requests.hist_bounds(name), exemplars)
                dropped += h is None
                setattr(s, name, h)
        key = tuple(str(x) for x in r["k"])
        saved = data.get("extra_labels")  # absent in snapshots older than it: the count is checked
        if saved is not None and tuple(str(x) for x in saved) != m.requests.extra_labels:
            relabelled += 1  # renamed extra labels: the saved values are of other labels
            return
        if len(key) == 3 + len(m.requests.extra_labels):  # saved before the llm_adapter label: no adapter
            key = (*key[:3], "", *key[3:])
        if len(key) != 4 + len(m.requests.extra_labels):  # the config's extra labels changed: start over
            relabelled += 1
            return
        t.requests.series[key] = s

    def load_requests() -> None:
        for i, r in enumerate(data.get("requests", [])):
            part(f"requests[{i}]", functools.partial(load_series, r))

    def load_stats() -> None:
        t.engine.stats.update({(k[0], k[1], k[2]): {f: _unnum(x) for f, x in v.items()}
                               for k, v in data.get("stats", [])})

    def load_counts(name: str, target: dict[Any, Any], width: int) -> Callable[[], None]:
        def load() -> None:
            got = {tuple(k[:width]): int(n) for k, n in data.get(name, [])}
            if any(len(k) != width for k in got):
                raise ValueError("short key")
            target.update(got)
        return load

    def load_prompt_tokens() -> None:
        t.incidents.prompt_tokens.update({(k[0], k[1], k[2]): [int(v[0]), int(v[1])]
                                          for k, v in data.get("prompt_tokens", [])})

    def load_bytes() -> None:
        t.internal.bytes.update({str(src): int(n) for src, n in data.get("bytes", {}).items()})

    def load_slo() -> None:
        t.slo.objectives = m.slo.objectives  # counts come back only for objectives defined as they were
        t.slo.restore(data.get("slo"))

    tenants: dict[tuple[str, str, str], list[int]] = {}

    def load_tenants() -> None:
        tenants.update({(str(k[0]), str(k[1]), str(k[2])): [int(x) for x in v]
                        for k, v in data.get("tenants", []) if len(v) == 8})

    part("limiters", load_limiters)
    load_requests()
    part("stats", load_stats)
    part("http", load_counts("http", t.engine.http, 4))
    part("logs", load_counts("logs", t.engine.logs, 2))
    part("server_errors", load_counts("server_errors", t.incidents.server_errors, 2))
    part("prompt_tokens", load_prompt_tokens)
    part("lines", load_counts("lines", t.internal.lines, 2))
    part("bytes", load_bytes)
    part("startup", lambda: t.startup.restore(data.get("startup")))
    part("slo", load_slo)
    part("tenants", load_tenants)
    if damaged:
        log.warning("saved metric state: %d damaged part(s) left out, the rest restored: %s", len(damaged),
                    "; ".join(damaged[:5]))
    with m.lock:
        for (metric, label), seen, overflow in limiters:
            m.limits(metric, label).restore(seen, overflow)
        m.requests.series.update(t.requests.series)
        m.engine.stats.update(t.engine.stats)
        m.engine.http.update(t.engine.http)
        m.engine.logs.update(t.engine.logs)
        m.incidents.server_errors.update(t.incidents.server_errors)
        m.incidents.prompt_tokens.update(t.incidents.prompt_tokens)
        m.internal.lines.update(t.internal.lines)
        m.internal.bytes.update(t.internal.bytes)
        m.startup.starts.update(t.startup.starts)
        m.startup.current.update(t.startup.current)
        m.slo.requests.update(t.slo.requests)
        m.slo.tokens.update(t.slo.tokens)
        m.accounting.series.update(tenants)
    if dropped:
        log.warning("%d saved histograms had other bucket bounds and were dropped", dropped)
    if relabelled:
        log.warning("%d saved request series had other extra labels (--config) and were dropped", relabelled)
    return True
