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
"""

from __future__ import annotations

import logging
from typing import Any

from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.hist import Hist
from llm_exporter.metrics.requests import COUNTS, HISTS, RequestSeries

log = logging.getLogger("llm_exporter.state")

LAYOUT = 1


def _hist(h: Hist) -> dict[str, Any]:
    return {"b": list(h.bounds), "c": list(h.counts), "s": h.sum}


def _unhist(d: Any, bounds: tuple[float, ...], exemplars: bool) -> Hist | None:
    if not isinstance(d, dict) or [float(b) for b in d.get("b", [])] != [float(b) for b in bounds] \
            or len(d.get("c", [])) != len(bounds) + 1:
        return None
    h = Hist(bounds, exemplars=exemplars)
    h.counts = [int(c) for c in d["c"]]
    h.sum = float(d["s"])
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
        "requests": reqs,
        "stats": [[list(k), dict(v)] for k, v in e.stats.items()],
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
    dropped = 0
    t = LLMMetrics(label_limit=m.label_limit)  # filled first, so a damaged snapshot changes nothing
    try:
        limiters = [((str(metric), str(label)), [str(v) for v in seen], int(overflow))
                    for (metric, label), seen, overflow in data.get("limiters", [])]
        for r in data.get("requests", []):
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
            if len(key) == 3 + len(m.requests.extra_labels):  # saved before the llm_adapter label: no adapter
                key = (*key[:3], "", *key[3:])
            if len(key) != 4 + len(m.requests.extra_labels):  # the config's extra labels changed: start over
                dropped += 1
                continue
            t.requests.series[key] = s
        for k, v in data.get("stats", []):
            t.engine.stats[(k[0], k[1], k[2])] = {f: float(x) for f, x in v.items()}
        for k, n in data.get("http", []):
            t.engine.http[(k[0], k[1], k[2], k[3])] = int(n)
        for k, n in data.get("logs", []):
            t.engine.logs[(k[0], k[1])] = int(n)
        for k, n in data.get("server_errors", []):
            t.incidents.server_errors[(k[0], k[1])] = int(n)
        for k, v in data.get("prompt_tokens", []):
            t.incidents.prompt_tokens[(k[0], k[1], k[2])] = [int(v[0]), int(v[1])]
        for k, n in data.get("lines", []):
            t.internal.lines[(k[0], k[1])] = int(n)
        for src, n in data.get("bytes", {}).items():
            t.internal.bytes[src] = int(n)
        t.startup.restore(data.get("startup"))
        t.slo.objectives = m.slo.objectives  # counts come back only for objectives defined as they were
        t.slo.restore(data.get("slo"))
        tenants = {(str(k[0]), str(k[1]), str(k[2])): [int(x) for x in v]
                   for k, v in data.get("tenants", []) if len(v) == 8}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        log.warning("saved metric state is damaged (%s); counters start from zero", e)
        return False
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
    return True
