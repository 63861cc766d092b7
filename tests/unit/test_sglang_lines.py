"""SGLang's scheduler lines, one at a time: the exact gauges and prompt-token record each one gives.

The lines of the first tables are copied from tests/fixtures/corpus/sglang.log (their sources are
cited there); each expected record is read off the line by hand: `#running-req` and `#queue-req`
(or the 2024 `#running_req` / `#remaining_req`) are the running and waiting gauges, `token usage`
(or `full token usage`) is already a fraction, a cache hit rate is a percent, and a prefill batch's
prompt tokens are `#new-token` + `#cached-token`. The edge cases further down change one figure of
such a line, to the bounds of what the figure can be (said on each).
"""

from __future__ import annotations

from pathlib import Path
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


# --- one stream at a time: what a line means can depend on the lines before it ---------------------

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "sglang.log"


def corpus_block(source: str) -> list[str]:
    """The lines of the corpus block cited from `source`, as the pipeline hands them on (stripped)."""
    out: list[str] | None = None
    for raw in CORPUS.read_text(encoding="utf-8").split("\n"):
        if raw.startswith("#@ "):
            if out is not None:
                break
            if source in raw:
                out = []
        elif out is not None and raw.strip():
            out.append(raw.strip())
    assert out, source
    return out


def stream(lines: list[str]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each line's answer from one adapter, then what it still holds at the end of the stream."""
    a = SglangAdapter()
    return [a.parse_text(t) for t in lines], a.flush()


def crash(cls: str = "engine_dead") -> dict[str, Any]:
    return {"kind": "server_error", "provider": "sglang", "error_type": cls}


ERROR_LOG = {"kind": "log", "provider": "sglang", "level": "ERROR"}
CHAT = [{"kind": "http", "provider": "sglang", "method": "POST", "path": "/v1/chat/completions", "code": "200"},
        {"kind": "request", "provider": "sglang", "operation": "chat", "model": "", "outcome": "success",
         "error_type": ""}]
#: the scheduler's crash of Agent-RL/ReCall#43: its line and a traceback of six lines
RECALL = corpus_block("Agent-RL/ReCall/issues/43")
DECODE = ("[04:40:55 TP0] Decode batch. #running-req: 2, #token: 4078, token usage: 0.00, gen throughput (token/s): "
          "447.31, #queue-req: 0")  # sglang#1270
DECODE_STATS = stats("TP0", running=2, kv_cache_usage=0.0, generation_tps=447.31, waiting=0)
PREFILL = ("[2025-06-25 14:02:04 TP0] Prefill batch. #new-seq: 1, #new-token: 2266, #cached-token: 1, "
           "token usage: 0.00, #running-req: 0, #queue-req: 0")  # sglang#7515
PREFILL_RECS = [stats("TP0", kv_cache_usage=0.0, running=0, waiting=0), tokens("TP0", 2266 + 1, 1)]


@pytest.mark.parametrize(("after", "closing"), [
    # the next scheduler line ends the traceback: the crash is counted, then the line's own records
    (DECODE, [crash(), DECODE_STATS]),
    (PREFILL, [crash(), *PREFILL_RECS]),
    # a start-up line (the server restarting) or a line no one knows also ends it: the crash alone
    ("[2025-06-25 14:01:42] The server is fired up and ready to roll!", [crash()]),
    ("Processing batches: 0it [00:00, ?it/s]", [crash()]),
])
def test_a_scheduler_crash_is_one_incident_counted_when_its_traceback_ends(after: str, closing: list[Any]) -> None:
    lines = [*RECALL, after, DECODE]
    res, held = stream(lines)
    assert res[0] == [ERROR_LOG]  # the crash line itself is one ERROR log line
    assert res[1:len(RECALL)] == [[]] * (len(RECALL) - 1)  # its traceback is part of it
    assert res[len(RECALL)] == [pytest.approx(r) for r in closing]
    assert res[-1] == pytest.approx(DECODE_STATS)  # after it, lines are read as before: no second incident
    assert held == []


def test_a_crash_still_open_at_the_end_of_the_stream_is_counted_once() -> None:
    res, held = stream(RECALL)
    assert res == [[ERROR_LOG]] + [[]] * (len(RECALL) - 1)
    assert held == [crash()]
    # the sglang-jax#622 block: an out-of-memory retraction (not a failure), then the crash, bare
    # (its `[date] ` peeled); the uvicorn line after it is SGLang's because the crash named the stream
    jax = corpus_block("sglang-jax/issues/622")[1:]
    res, held = stream([*jax, 'INFO:     127.0.0.1:40192 - "POST /v1/chat/completions HTTP/1.1" 200 OK'])
    assert res[:3] == [IGNORED] * 3 and res[3] == [ERROR_LOG] and res[4:6] == [[], []]
    assert res[6] == [crash(), *CHAT]
    assert held == []
    # the crash alone names the stream too
    res, held = stream([*jax[3:], 'INFO:     127.0.0.1:40192 - "POST /v1/chat/completions HTTP/1.1" 200 OK'])
    assert res == [[ERROR_LOG], [], [], [crash(), *CHAT]] and held == []


# the traceback's last line says what failed: PyTorch's out-of-memory error (its message as
# tests/fixtures/samples/vllm.log quotes it) and torch.distributed's store timeout
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 50.00 MiB. GPU 0 has a total capacity of "
       "23.56 GiB of which 21.75 MiB is free.")
SIGQUIT = "[2025-02-21 22:59:28] Received sigquit from a child proces. It usually means the child failed."
TIMEOUT = "torch.distributed.DistStoreError: Timed out after 601 seconds waiting for clients. 1/2 clients joined."


@pytest.mark.parametrize(("last", "cls"), [(OOM, "oom"), (TIMEOUT, "timeout")])
def test_a_crash_is_classed_by_the_exception_its_traceback_ends_with(last: str, cls: str) -> None:
    res, held = stream([*RECALL, last])
    assert res[-1] == [] and held == [crash(cls)]


@pytest.mark.parametrize(("line", "cls"), [
    # the crash line with its cause on the same line (a collector that joined the traceback)
    ("[2025-04-23 21:31:41 TP2] Scheduler hit an exception: " + OOM, "oom"),
    ("[2025-04-23 21:31:41 TP2] Scheduler hit an exception: " + TIMEOUT, "timeout"),
    # a crash that quotes a request's error is still the engine's crash, not that request's
    ("[2025-04-23 21:31:41 TP2] Scheduler hit an exception: ValueError: This model's maximum context length is "
     "4096 tokens.", "engine_dead"),
    # sglang#3713: the launcher's line after a child's crash (SGLang's own spelling), then a scheduler line
    (SIGQUIT, "engine_dead"),
])
def test_a_crash_line_names_its_class(line: str, cls: str) -> None:
    res, held = stream([line, DECODE])
    assert res == [[ERROR_LOG], [crash(cls), pytest.approx(DECODE_STATS)]] and held == []


@pytest.mark.parametrize("first", [RECALL[0], SIGQUIT])
def test_a_traceback_is_read_up_to_its_400th_line(first: str) -> None:
    """The crash line and 399 more lines are one record; the next line is no longer its own."""
    body = ['File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 1825, in f', "f()"] * 200
    res, held = stream([first, *body[:399], body[399]])
    assert res[:400] == [[ERROR_LOG]] + [[]] * 399
    assert res[400] == [crash()] and held == []


BARE_CHAT = 'INFO:     127.0.0.1:40192 - "POST /v1/chat/completions HTTP/1.1" 200 OK'  # sglang#393


@pytest.mark.parametrize(("first", "first_res", "chat"), [
    # a scheduler line names the stream SGLang's: the bare uvicorn access line after it is a request
    ("new fill batch. #seq: 1. #cached_token: 478. #new_token: 254. #remaining_req: 0. #running_req: 4. "
     "tree_cache_hit_rate: 80.81%.", None, CHAT),
    ("#running-req: 3, #token: 1442, token usage: 0.18, #queue-req: 0", stats("", running=3, kv_cache_usage=0.18,
                                                                              waiting=0), CHAT),
    # so does a start-up line behind SGLang's own prefix (sglang#7515) ...
    ("[2025-06-25 14:01:42] The server is fired up and ready to roll!", IGNORED, CHAT),
    # ... but not the same line bare: vLLM prints lines like it too, and names no server
    ("The server is fired up and ready to roll!", IGNORED, None),
    # a uvicorn start-up line behind SGLang's prefix is SGLang's, counted as nothing (sglang#4339)
    ("[2025-03-12 08:52:40] INFO:     Started server process [1029]", IGNORED, None),
])
def test_a_bare_access_line_is_sglang_s_once_the_stream_is(first: str, first_res: Any, chat: Any) -> None:
    res, _ = stream([first, BARE_CHAT])
    if first_res is IGNORED:
        assert res[0] is IGNORED
    elif first_res is not None:
        assert res[0] == pytest.approx(first_res)
    assert res[1] == chat


@pytest.mark.parametrize(("lines", "last"), [
    # an out-of-memory retraction's detail lines (sglang-jax#622) are SGLang's only on an SGLang stream
    (["Try to allocate 168 tokens."], None),
    (["[2026-01-05 06:12:41] Decode out of memory. Try to lower your batch size.", "Try to allocate 168 tokens."],
     IGNORED),
    # a uvicorn start-up line, bare: SGLang's access lines only are read on an SGLang stream
    ([PREFILL, "INFO:     Started server process [621]"], None),
    # an unknown bare line stays unknown on an SGLang stream (sglang#1612's client progress bar)
    ([PREFILL, "Processing batches: 1it [00:00,  2.74it/s]"], None),
    # SGLang's rank-tagged lines are SGLang's even when nothing is read from them (sglang#4339)
    (["[2025-03-12 08:52:39 DP0 TP1] Registering 1311 cuda graph addresses"], IGNORED),
    # the 2024 decode line is known by its start and its `token usage`: cut short, it is not read
    (["#running-req: 3, #token: 1442"], None),
    (["#queue-req: 0, token usage: 0.18"], None),
])
def test_which_lines_are_sglang_s(lines: list[str], last: Any) -> None:
    res, _ = stream(lines)
    assert res[-1] is last


# Python logging's format, `%(asctime)s [%(levelname)s] %(name)s: %(message)s` (the INFO line of the
# first table): a real WARNING line of it (SGLang's MoE kernel warning, 2026-07), and the scheduler's
# crash line in it at each level, with their timestamp (as a file holds them) and without (as the
# pipeline hands them on, the timestamp peeled)
MOE_WARNING = ("2026-07-14 10:01:46,564 [WARNING] sglang.srt.layers.moe.moe_runner.triton_utils."
               "fused_moe_triton_config: Using MoE kernel config with down_moe=False. "
               "Performance might be sub-optimal!")
PY_CRASH = "[{}] sglang.srt.managers.scheduler: Scheduler hit an exception: Traceback (most recent call last):"


@pytest.mark.parametrize("peel", [False, True])
def test_sglang_python_logging_lines_are_read_at_every_level(peel: bool) -> None:
    stamp = "" if peel else "2026-07-14 10:01:46,564 "
    assert SglangAdapter().parse_text(MOE_WARNING[24:] if peel else MOE_WARNING) is IGNORED
    for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        res, held = stream([stamp + PY_CRASH.format(level)])
        assert res == [[ERROR_LOG]] and held == [crash()], level
    # another program's Python logging line is not SGLang's
    assert SglangAdapter().parse_text(stamp + "[WARNING] httpx: Retrying request to /generate") is None


@pytest.mark.parametrize(("line", "expected"), [
    # SGLang with data parallel ranks: both ranks name the engine (prefix as in sglang#4339)
    ("[2025-03-12 08:52:40 DP3 TP1] Decode batch. #running-req: 2, #token: 4078, token usage: 0.00, "
     "#queue-req: 0", [stats("DP3 TP1", running=2, kv_cache_usage=0.0, waiting=0)]),
])
def test_every_rank_tag_names_the_engine(line: str, expected: list[dict[str, Any]]) -> None:
    assert records(line) == [pytest.approx(e) for e in expected]
