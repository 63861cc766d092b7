"""SGLang's scheduler lines, one at a time: the exact gauges and prompt-token record each one gives.

The lines of the first tables are copied from tests/fixtures/corpus/sglang.log (their sources are
cited there); each expected record is read off the line by hand: `#running-req` and `#queue-req`
(or the 2024 `#running_req` / `#remaining_req`) are the running and waiting gauges, `token usage`
(or `full token usage`) is already a fraction, a cache hit rate is a percent, and a prefill batch's
prompt tokens are `#new-token` + `#cached-token`. The edge cases further down change one figure of
such a line, to the bounds of what the figure can be (said on each).
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_exporter.adapters import IGNORED
from llm_exporter.adapters.sglang import SglangAdapter
from llm_exporter.records import validate_record


def records(text: str) -> list[dict[str, Any]]:
    res = SglangAdapter().parse_text(text)
    assert res is not None and res is not IGNORED, text
    recs = res if isinstance(res, list) else [res]
    for r in recs:
        validate_record(r)
    return recs


def stats(engine: str, **gauges: float) -> dict[str, Any]:
    return {"kind": "stats", "provider": "sglang", "model": "", "engine": engine, **gauges}


def tokens(engine: str, prompt: int, cached: int | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": "tokens", "provider": "sglang", "model": "", "engine": engine,
                           "prompt_tokens": prompt}
    if cached is not None:
        rec["cached_tokens"] = cached
    return rec


@pytest.mark.parametrize(("line", "expected"), [
    # 2026-04, no rank tag; `cuda graph: True` after the token counts is not a count
    ("[2026-04-05 20:02:51] Prefill batch, #new-seq: 1, #new-token: 158, #cached-token: 0, token usage: 0.08, "
     "#running-req: 31, #queue-req: 0, cuda graph: True, input throughput (token/s): 559.53",
     [stats("", kv_cache_usage=0.08, running=31, waiting=0, prompt_tps=559.53), tokens("", 158 + 0, 0)]),
    # 2025-10, a trailing comma after the last figure
    ("[2025-10-31 00:07:31 TP0] Prefill batch, #new-seq: 3, #new-token: 5824, #cached-token: 448, "
     "token usage: 0.44, #running-req: 139, #queue-req: 369,",
     [stats("TP0", kv_cache_usage=0.44, running=139, waiting=369), tokens("TP0", 5824 + 448, 448)]),
    # 2026-07 hybrid model: `full token usage` is the KV cache; `mamba usage`, `#pending-token` and
    # `npu graph` are not read
    ("[2026-07-04 04:31:24 TP0] Prefill batch, #new-seq: 12, #new-token: 43008, #cached-token: 0, "
     "full token usage: 0.14, mamba usage: 0.20, #running-req: 1, #queue-req: 97, #pending-token: 109585, "
     "npu graph: False, input throughput (token/s): 15734.14",
     [stats("TP0", kv_cache_usage=0.14, running=1, waiting=97, prompt_tps=15734.14),
      tokens("TP0", 43008 + 0, 0)]),
    # 2024-10, a time-only prefix and a cache hit rate in percent
    ("[16:43:29 TP0] Prefill batch. #new-seq: 4, #new-token: 8192, #cached-token: 291, cache hit rate: 2.76%, "
     "token usage: 0.04, #running-req: 1, #queue-req: 38",
     [stats("TP0", prefix_cache_hit=0.0276, kv_cache_usage=0.04, running=1, waiting=38),
      tokens("TP0", 8192 + 291, 291)]),
    # Python logging's prefix, a trailing comma
    ("2026-06-07 10:59:31,843 [INFO] sglang.srt.managers.scheduler_metrics_mixin: Prefill batch, #new-seq: 1, "
     "#new-token: 1, #cached-token: 7, token usage: 0.00, #running-req: 0, #queue-req: 0,",
     [stats("", kv_cache_usage=0.0, running=0, waiting=0), tokens("", 1 + 7, 7)]),
    # 2025-03 decode line ending in `, `: a decode batch has no prompt tokens
    ("[2025-03-14 02:16:14 TP0] Decode batch. #running-req: 509, #token: 180776, token usage: 0.43, "
     "gen throughput (token/s): 7897.87, largest-len: 0, #queue-req: 0, ",
     [stats("TP0", running=509, kv_cache_usage=0.43, generation_tps=7897.87, waiting=0)]),
    # the 2024 scheduler's decode line, bare
    ("#running-req: 3, #token: 1442, token usage: 0.18, #queue-req: 0",
     [stats("", running=3, kv_cache_usage=0.18, waiting=0)]),
    # the 2024 scheduler's prefill lines: `. `-separated, the hit rate as `tree_cache_hit_rate`
    ("new fill batch. #seq: 1. #cached_token: 478. #new_token: 254. #remaining_req: 0. #running_req: 4. "
     "tree_cache_hit_rate: 80.81%.",
     [stats("", running=4, waiting=0, prefix_cache_hit=0.8081), tokens("", 254 + 478, 478)]),
    ("new fill batch. #seq: 1. #cached_token: 731. #new_token: 1. #remaining_req: 0. #running_req: 4. "
     "tree_cache_hit_rate: 80.82%.",
     [stats("", running=4, waiting=0, prefix_cache_hit=0.8082), tokens("", 1 + 731, 731)]),
])
def test_a_real_batch_line_gives_its_gauges_and_prompt_tokens(line: str, expected: list[dict[str, Any]]) -> None:
    assert records(line) == [pytest.approx(e) for e in expected]


@pytest.mark.parametrize(("line", "expected"), [
    # a full KV cache and a full prefix-cache hit are read; figures past their bound are not
    ("[16:43:29 TP0] Prefill batch. #new-seq: 1, #new-token: 2, #cached-token: 8, cache hit rate: 100.00%, "
     "token usage: 1.00, #running-req: 0, #queue-req: 0",
     [stats("TP0", prefix_cache_hit=1.0, kv_cache_usage=1.0, running=0, waiting=0), tokens("TP0", 10, 8)]),
    ("[16:43:29 TP0] Prefill batch. #new-seq: 1, #new-token: 2, #cached-token: 8, cache hit rate: 100.50%, "
     "token usage: 1.50, #running-req: 0, #queue-req: 0",
     [stats("TP0", running=0, waiting=0), tokens("TP0", 10, 8)]),
    # a cache hit rate without its percent sign is not a percent
    ("[16:43:29 TP0] Prefill batch. #new-seq: 1, #new-token: 2, #cached-token: 8, cache hit rate: 2.76, "
     "token usage: 0.50, #running-req: 0, #queue-req: 0",
     [stats("TP0", kv_cache_usage=0.5, running=0, waiting=0), tokens("TP0", 10, 8)]),
    # figures that are not numbers (a line garbled on its way) are left out, never a crash
    ("[16:43:29 TP0] Prefill batch. #new-seq: 1, #new-token: 2x, #cached-token: 8, cache hit rate: ab%, "
     "token usage: 0.5X, #running-req: 5X, #queue-req: n/a",
     [stats("TP0")]),
    ("[16:43:29 TP0] Prefill batch. #new-seq: 1, #new-token: 2, #cached-token: ?, token usage: 0.50",
     [stats("TP0", kv_cache_usage=0.5), tokens("TP0", 2, None)]),
    # an item that is not `key: value` does not stop the reading of the items after it
    ("[2026-04-05 20:02:51] Decode batch, #running-req: 32, spec-v2, token usage: 0.08, #queue-req: 4",
     [stats("", running=32, kv_cache_usage=0.08, waiting=4)]),
    # `token usage` (the whole pool) wins over `full token usage`, in either order
    ("[2026-04-05 20:02:51] Decode batch, #running-req: 1, full token usage: 0.70, token usage: 0.30",
     [stats("", running=1, kv_cache_usage=0.3)]),
    ("[2026-04-05 20:02:51] Decode batch, #running-req: 1, token usage: 0.30, full token usage: 0.70",
     [stats("", running=1, kv_cache_usage=0.3)]),
    # the 2024 prefill line at its bounds, garbled, or cut short by a log viewer
    ("new fill batch. #seq: 1. #cached_token: 0. #new_token: 9. #remaining_req: 2. #running_req: 4. "
     "tree_cache_hit_rate: 100.00%.",
     [stats("", running=4, waiting=2, prefix_cache_hit=1.0), tokens("", 9, 0)]),
    ("new fill batch. #seq: 1. #cached_token: 0. #new_token: 9. #remaining_req: 2. #running_req: 4. "
     "tree_cache_hit_rate: 100.50%.",
     [stats("", running=4, waiting=2), tokens("", 9, 0)]),
    ("new fill batch. #seq: 1. #cached_token: 4X. #new_token: 2X. #remaining_req: 0X. #running_req: 4X. "
     "tree_cache_hit_rate: 80.81X.",
     [stats("")]),
    ("new fill batch. #seq: 1. #cached_token: 478.", [stats("")]),
    ("new fill batch. #seq: 1. #new_token: 254. #running_req: 4.", [stats("", running=4), tokens("", 254, None)]),
])
def test_batch_line_figures_are_read_within_their_bounds(line: str, expected: list[dict[str, Any]]) -> None:
    assert records(line) == [pytest.approx(e) for e in expected]
