"""Realistic application request logs for the benchmark and the tests, and an independent count of them.

An LLM application usually logs one JSON object per request, in its own words. This module writes
such logs in four common shapes, each with its own field names, units and failure style:

- `translation`: a translation service: `latency_ms`, `src_lang`/`tgt_lang`, token counts, `model`;
  a failed translation is an `ERROR` line with `error_type` (the small model fails most often).
- `reasoning`: a reasoning model behind an OpenAI-style endpoint: `total_time_ms` split into
  `queue_time_ms` and `inference_time_ms`, `ttft_ms`, `finish_reason`, a `status` word
  (`success`, `error` with `error_type`, `aborted` when the client went away).
- `cpu`: a small model on CPU doing sentiment analysis and chat: `task_type`, `response_time_ms`,
  CPU and memory readings, tokens for chat replies, no model name; it logs no failures.
- `chat`: a 7B chat model: `duration_ms` (fractional), `service` naming the model, `endpoint`,
  token counts and throughput; failures are `ERROR` lines with `error_type`.

About 5 % of the lines are not JSON: uvicorn access lines and the application's own prints. Output
is deterministic for a given seed.

    python -m bench.workload N SEED [--shape chat --shape cpu ...] > app.log
    python -m bench.workload --count app.log      # the independent count, as JSON

`count()` is the truth the tests compare the exporter with: plain `json.loads` and the documented
field names (the README's table of accepted names), no code of the exporter.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHAPES = ("translation", "reasoning", "cpu", "chat")
#: share of each shape among the request lines
WEIGHTS = {"translation": 0.14, "reasoning": 0.22, "cpu": 0.16, "chat": 0.48}
TEXT_SHARE = 0.05  # lines that are not JSON

LANGS = ("en", "zh", "ja", "de", "fr", "es", "ko")
SNIPPETS = ("Where is the train station?", "The meeting moved to Thursday.", "Please restart the router.",
            "今天天气很好。", "Das Ergebnis ist korrekt.", "お支払いは完了しました。")
SENTIMENT = (("这家餐厅的服务太棒了", "positive"), ("The update broke my workflow", "negative"),
             ("Delivery came on time", "positive"), ("还行吧，一般般", "neutral"))
PRINTS = ("😄 sentiment: positive", "warming up tokenizer cache ... done", "模型已加载，开始服务",
          "batch of 8 flushed to disk", "GC: collected 1532 objects", "reloading prompt templates from /app/prompts")


def _ms(rnd: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    """A log-normal duration in milliseconds (LLM latencies have long right tails), clamped."""
    return min(high, max(low, rnd.lognormvariate(math.log(median), sigma)))


def _iso(t: float) -> str:
    whole = int(t)
    hh, mm, ss = (whole // 3600) % 24, (whole // 60) % 60, whole % 60
    return f"2026-11-21T{hh:02d}:{mm:02d}:{ss:02d}.{int((t - whole) * 1e6):06d}Z"


def _translation(rnd: random.Random, i: int, t: float) -> dict[str, Any]:
    src, tgt = rnd.sample(LANGS, 2)
    text = rnd.choice(SNIPPETS)
    n_in = max(3, int(len(text) * rnd.uniform(0.3, 0.8)))
    model = rnd.choice(("mt-small-1.8b", "mt-large-7b"))
    rec: dict[str, Any] = {"ts": _iso(t), "level": "INFO", "logger": "mt.api", "request_id": f"tr-{i:09d}",
                           "model": model, "src_lang": src, "tgt_lang": tgt, "input_chars": len(text)}
    if rnd.random() < (0.09 if model == "mt-small-1.8b" else 0.025):  # the small model runs out of memory more
        rec["level"] = "ERROR"
        rec["message"] = "translation failed"
        rec["error_type"] = rnd.choice(("OutOfMemoryError", "TimeoutError", "UnsupportedLanguagePair"))
        rec["latency_ms"] = round(_ms(rnd, 900, 0.8, 20, 30000))
        return rec
    rec["message"] = "translation done"
    rec["input_tokens"] = n_in
    rec["output_tokens"] = max(1, int(n_in * rnd.uniform(0.8, 1.6)))
    rec["latency_ms"] = round(_ms(rnd, 350, 0.6, 40, 8000))
    return rec


def _reasoning(rnd: random.Random, i: int, t: float) -> dict[str, Any]:
    queue = round(_ms(rnd, 40, 1.2, 0, 20000), 1)
    n_out = int(min(32768, rnd.lognormvariate(math.log(1800), 0.9))) + 1
    tpot = rnd.uniform(12, 30)
    ttft = round(rnd.uniform(80, 900), 1)
    infer = round(ttft + tpot * (n_out - 1), 1)
    rec: dict[str, Any] = {"timestamp": _iso(t), "request_id": f"chatcmpl-{rnd.getrandbits(64):016x}",
                           "method": "POST", "path": "/v1/chat/completions", "model": "reasoner-14b",
                           "input_tokens": rnd.randint(40, 6000)}
    pick = rnd.random()
    if pick < 0.04:  # failed inside the engine
        rec |= {"status": "error", "error_type": rnd.choice(("TimeoutError", "RequestValidationError",
                                                             "CudaOutOfMemoryError")),
                "total_time_ms": round(queue + ttft, 1), "queue_time_ms": queue}
        return rec
    if pick < 0.07:  # the client hung up mid-stream
        cut = rnd.randint(1, max(1, n_out // 2))
        spent = round(ttft + tpot * cut, 1)
        rec |= {"status": "aborted", "output_tokens": cut, "total_time_ms": round(queue + spent, 1),
                "queue_time_ms": queue, "inference_time_ms": spent}
        return rec
    rec |= {"output_tokens": n_out, "reasoning_tokens": int(n_out * rnd.uniform(0.5, 0.9)),
            "total_time_ms": round(queue + infer, 1), "queue_time_ms": queue, "inference_time_ms": infer,
            "ttft_ms": ttft, "finish_reason": "length" if n_out >= 32768 or rnd.random() < 0.05 else "stop",
            "status": "success"}
    return rec


def _cpu(rnd: random.Random, i: int, t: float) -> dict[str, Any]:
    task = "sentiment" if rnd.random() < 0.6 else "chat"
    whole = int(t)
    clock = f"{(whole // 3600) % 24:02d}:{(whole // 60) % 60:02d}:{whole % 60:02d}"
    stamp = f"2026-11-21 {clock},{int(t * 1000) % 1000:03d}"  # Python logging's asctime
    rec: dict[str, Any] = {"time": stamp, "level": "INFO", "task_type": task,
                           "request_id": f"{rnd.getrandbits(32):08x}",
                           "cpu_percent": round(rnd.uniform(15, 95), 1),
                           "rss_mb": round(rnd.uniform(1750, 1950), 1)}
    if task == "sentiment":
        text, label = rnd.choice(SENTIMENT)
        rec |= {"message": f"sentiment: {text} -> {label}", "label": label,
                "response_time_ms": round(_ms(rnd, 420, 0.35, 120, 4000))}
    else:
        rec |= {"message": "reply generated", "response_time_ms": round(_ms(rnd, 1600, 0.45, 300, 12000)),
                "input_tokens": rnd.randint(6, 400), "output_tokens": rnd.randint(8, 160)}
    return rec


def _chat(rnd: random.Random, i: int, t: float) -> dict[str, Any]:
    n_in, n_out = rnd.randint(12, 3000), int(min(4096, rnd.lognormvariate(math.log(220), 0.8))) + 1
    dur = _ms(rnd, 60 + 28 * n_out, 0.25, 30, 120000)
    rec: dict[str, Any] = {"timestamp": _iso(t), "level": "INFO", "service": "chat-7b-instruct",
                           "endpoint": rnd.choice(("/v1/chat/completions",) * 9 + ("/v1/completions",)),
                           "request_id": f"req-{i:08x}", "user_tier": rnd.choice(("free", "pro"))}
    if rnd.random() < 0.03:
        rec |= {"level": "ERROR", "error_type": rnd.choice(("OutOfMemoryError", "ContextWindowExceeded")),
                "duration_ms": round(dur * 0.1, 3), "input_tokens": n_in}
        return rec
    rec |= {"prompt_preview": "Summarize the following ...", "duration_ms": round(dur, 3),
            "input_tokens": n_in, "output_tokens": n_out, "throughput_tps": round(n_out / (dur / 1000), 2)}
    return rec


MAKERS = {"translation": _translation, "reasoning": _reasoning, "cpu": _cpu, "chat": _chat}


def _text(rnd: random.Random, i: int) -> str:
    if rnd.random() < 0.6:
        path, code = rnd.choice((("/v1/chat/completions", "200 OK"), ("/v1/chat/completions", "200 OK"),
                                 ("/v1/completions", "200 OK"), ("/v1/chat/completions", "422 Unprocessable Entity"),
                                 ("/v1/chat/completions", "500 Internal Server Error")))
        client = f"10.0.{i % 7}.{(i * 13) % 250 + 2}:{30000 + (i * 7919) % 30000}"
        return f'INFO:     {client} - "POST {path} HTTP/1.1" {code}'
    return rnd.choice(PRINTS)


def generate(n: int, seed: int = 7, shapes: Sequence[str] = SHAPES) -> Iterator[str]:
    """`n` log lines (each ending in a newline) of the given shapes, the same for the same seed."""
    unknown = set(shapes) - set(SHAPES)
    if unknown or not shapes:
        raise ValueError(f"shapes must be among {', '.join(SHAPES)}, got {', '.join(shapes) or 'none'}")
    rnd = random.Random(seed)
    makers = [MAKERS[s] for s in shapes]
    cum, acc = [], 0.0
    for s in shapes:
        acc += WEIGHTS[s]
        cum.append(acc)
    t = 36000.0
    for i in range(n):
        t += rnd.expovariate(40.0)
        if rnd.random() < TEXT_SHARE:
            yield _text(rnd, i) + "\n"
            continue
        pick, k = rnd.random() * acc, 0
        while cum[k] < pick:
            k += 1
        yield json.dumps(makers[k](rnd, i, t), ensure_ascii=False) + "\n"


def write(path: Path, n: int, seed: int = 7, shapes: Sequence[str] = SHAPES) -> None:
    """Write `generate(n, seed, shapes)` to `path`."""
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(generate(n, seed, shapes))


# -- the independent count ---------------------------------------------------------------------

#: error names the README says fold into the shared classes (the others are kept as logged)
_FOLD = {"outofmemoryerror": "oom", "cudaoutofmemoryerror": "oom", "memoryerror": "oom",
         "timeouterror": "timeout", "requestvalidationerror": "validation"}


def error_class(name: str) -> str:
    """The error type label for an application's error name: folded when the README names it."""
    return _FOLD.get(name.lower(), name)


_PATH_OP = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion"}
_UNIT = {"_ms": 1e-3, "_s": 1.0, "": 1.0}


@dataclass
class Truth:
    """What a log says, counted by hand: keys are (operation, model, ...)."""

    lines: int = 0
    text: int = 0  # non-JSON lines that are not access lines
    access: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (method, path, code)
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (op, model, outcome)
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (op, model, error_type)
    finish: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (op, model, reason)
    duration_s: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    duration_n: Counter[tuple[str, str]] = field(default_factory=Counter)
    ttft_s: float = 0.0  # successful requests only
    ttft_n: int = 0
    queue_s: float = 0.0
    queue_n: int = 0
    inference_s: float = 0.0
    inference_n: int = 0
    tokens_in: Counter[tuple[str, str]] = field(default_factory=Counter)
    tokens_out: Counter[tuple[str, str]] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        def keyed(d: dict[Any, Any]) -> dict[str, Any]:
            return {"|".join(k): v for k, v in sorted(d.items())}
        return {"lines": self.lines, "text": self.text, "access": keyed(self.access),
                "requests": keyed(self.requests), "errors": keyed(self.errors), "finish": keyed(self.finish),
                "duration_s": keyed(self.duration_s), "duration_n": keyed(self.duration_n),
                "ttft_s": self.ttft_s, "ttft_n": self.ttft_n, "queue_s": self.queue_s, "queue_n": self.queue_n,
                "inference_s": self.inference_s, "inference_n": self.inference_n,
                "tokens_in": keyed(self.tokens_in), "tokens_out": keyed(self.tokens_out)}


def _seconds(o: dict[str, Any], base: str) -> float | None:
    for suffix, scale in _UNIT.items():
        if base + suffix in o:
            return float(o[base + suffix]) * scale
    return None


def count(data: bytes | str | Iterable[str]) -> Truth:
    """Count requests, outcomes, errors, durations and tokens in `data` with plain json parsing."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    lines = data.split("\n")[:-1] if isinstance(data, str) else [x.rstrip("\n") for x in data]
    c = Truth()
    for line in lines:
        c.lines += 1
        if not line.startswith("{"):
            if line.startswith("INFO:     ") and ' HTTP/1.1" ' in line:
                request, status = line.rsplit('"', 2)[1:]
                method, path, _ = request.split()
                c.access[(method, path, status.split()[0])] += 1
            else:
                c.text += 1
            continue
        o = json.loads(line)
        model = o.get("model") or o.get("model_name") or o.get("service") or ""
        op = o.get("operation") or o.get("task_type") or _PATH_OP.get(o.get("path") or o.get("endpoint") or "", "")
        key = (op, model)
        status = o.get("status")
        if status == "aborted":
            outcome = "aborted"
        elif status == "error" or o.get("level") == "ERROR" or "error_type" in o:
            outcome = "error"
        else:
            outcome = "success"
        c.requests[(*key, outcome)] += 1
        if outcome == "error":
            name = o["error_type"]
            c.errors[(*key, error_class(name))] += 1
        if "finish_reason" in o:
            c.finish[(*key, o["finish_reason"])] += 1
        for base in ("duration", "latency", "total_time", "response_time"):
            secs = _seconds(o, base)
            if secs is not None:
                c.duration_s[key] += secs
                c.duration_n[key] += 1
                break
        if (secs := _seconds(o, "ttft")) is not None and outcome == "success":
            c.ttft_s += secs
            c.ttft_n += 1
        if (secs := _seconds(o, "queue_time")) is not None:
            c.queue_s += secs
            c.queue_n += 1
        if (secs := _seconds(o, "inference_time")) is not None:
            c.inference_s += secs
            c.inference_n += 1
        c.tokens_in[key] += o.get("input_tokens", 0)
        c.tokens_out[key] += o.get("output_tokens", 0)
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.workload", description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, help="how many lines to write")
    ap.add_argument("seed", nargs="?", type=int, default=7, help="random seed (7)")
    ap.add_argument("--shape", action="append", choices=SHAPES,
                    help="only this shape (repeatable; default: all four)")
    ap.add_argument("--count", type=Path, metavar="FILE", help="print the independent count of FILE as JSON")
    ns = ap.parse_args(argv)
    if ns.count is not None:
        json.dump(count(ns.count.read_bytes()).as_json(), sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if ns.n is None or ns.n < 0:
        ap.error("N (a number of lines, 0 or more) is required")
    try:
        sys.stdout.writelines(generate(ns.n, ns.seed, ns.shape or SHAPES))
    except BrokenPipeError:
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
