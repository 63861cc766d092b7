"""The `metrics` section of the `--state-dir` checkpoint: LLMMetrics as JSON, and back.

`snapshot()` is called under the metrics lock by `StateStore.checkpoint`, together with the file
sources' offsets, so a restart resumes counters and histograms exactly at the lines those offsets
say were applied. Saved: request series (outcome counts, error types, finish reasons, every
histogram's buckets and sum), server stats gauges, HTTP and log-level counters, the lines and
bytes self counters, and the label limiters' admitted values and overflow counts (so `_OTHER`
folding goes on as before). Not saved: exemplars (they point at recent lines) and the 15-minute
window of the page. A histogram saved with other bucket bounds than this build's is dropped with
one log line rather than misread.
"""

from __future__ import annotations

import logging
from typing import Any

from llm_exporter.labels import LabelLimiter
from llm_exporter.metrics import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    Hist,
    LLMMetrics,
    RequestSeries,
)

log = logging.getLogger("llm_exporter.state")

LAYOUT = 1
_HISTS = {"queue": DURATION_BUCKETS, "inference": DURATION_BUCKETS, "ttft": TTFT_BUCKETS,
          "tpot": TPOT_BUCKETS, "tokens_in": TOKEN_BUCKETS, "tokens_out": TOKEN_BUCKETS}
_EXEMPLARS = {"ttft"}


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
    for key, s in m.requests.items():
        r: dict[str, Any] = {"k": list(key), "n": list(s.requests), "e": dict(s.errors), "f": dict(s.finish),
                             "d": {et: _hist(h) for et, h in s.duration.items()}}
        for name in _HISTS:
            h = getattr(s, name)
            if h is not None:
                r[name] = _hist(h)
        reqs.append(r)
    return {
        "layout": LAYOUT,
        "requests": reqs,
        "stats": [[list(k), dict(v)] for k, v in m.stats.items()],
        "http": [[list(k), n] for k, n in m.http.items()],
        "logs": [[list(k), n] for k, n in m.logs.items()],
        "lines": [[list(k), n] for k, n in m.lines.items()],
        "bytes": dict(m.bytes),
        "limiters": [[list(k), sorted(lim._seen), lim.overflow] for k, lim in m._limiters.items()],
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
        limiters = [((metric, label), list(seen), int(overflow))
                    for (metric, label), seen, overflow in data.get("limiters", [])]
        for r in data.get("requests", []):
            s = RequestSeries()
            s.requests = [int(x) for x in r["n"]]
            s.errors = {k: int(v) for k, v in r["e"].items()}
            s.finish = {k: int(v) for k, v in r["f"].items()}
            for et, hd in r["d"].items():
                h = _unhist(hd, DURATION_BUCKETS, True)
                if h is None:
                    dropped += 1
                else:
                    s.duration[et] = h
            for name, bounds in _HISTS.items():
                if name in r:
                    h = _unhist(r[name], bounds, name in _EXEMPLARS)
                    dropped += h is None
                    setattr(s, name, h)
            key = tuple(str(x) for x in r["k"])
            if len(key) != 3 + len(m.extra_labels):  # the config's extra labels changed: start over
                dropped += 1
                continue
            t.requests[key] = s
        for k, v in data.get("stats", []):
            t.stats[(k[0], k[1], k[2])] = {f: float(x) for f, x in v.items()}
        for k, n in data.get("http", []):
            t.http[(k[0], k[1], k[2], k[3])] = int(n)
        for k, n in data.get("logs", []):
            t.logs[(k[0], k[1])] = int(n)
        for k, n in data.get("lines", []):
            t.lines[(k[0], k[1])] = int(n)
        for src, n in data.get("bytes", {}).items():
            t.bytes[src] = int(n)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        log.warning("saved metric state is damaged (%s); counters start from zero", e)
        return False
    with m.lock:
        for key, seen, overflow in limiters:
            lim: LabelLimiter = m.limiter(*key)
            lim._seen.update(seen)
            lim.overflow = overflow
        m.requests.update(t.requests)
        m.stats.update(t.stats)
        m.http.update(t.http)
        m.logs.update(t.logs)
        m.lines.update(t.lines)
        m.bytes.update(t.bytes)
    if dropped:
        log.warning("%d saved histograms had other bucket bounds and were dropped", dropped)
    return True
