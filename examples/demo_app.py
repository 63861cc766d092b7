#!/usr/bin/env python3
"""A stand-in LLM application for `make demo`: a few JSON request lines per second on stdout.

It writes four common shapes of application request logs (a 7B chat service, a reasoning model,
a translation model, a small CPU model doing sentiment and chat), some failed requests, and some
plain-text lines (uvicorn access lines, print() output), as a real app's log would have.

Usage: demo_app.py [--rate N] [--count N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime


def line(rnd: random.Random, i: int) -> str:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rid = f"req_{i:08x}"
    r = rnd.random()
    if r < 0.45:
        q, inf = rnd.randint(0, 300), rnd.randint(50, 6000)
        rec = {"timestamp": ts, "request_id": rid, "method": "POST", "path": "/v1/chat/completions",
               "model": "Qwen2.5-7B", "input_tokens": rnd.randint(5, 4000), "output_tokens": rnd.randint(1, 1024),
               "total_time_ms": q + inf, "queue_time_ms": q, "inference_time_ms": inf,
               "ttft_ms": q + rnd.randint(20, 400), "status": "success"}
    elif r < 0.60:
        d = rnd.uniform(50, 15000)
        to = rnd.randint(1, 2048)
        rec = {"timestamp": ts, "level": "INFO", "service": "DeepSeek-R1-Distill-Qwen-1.5B", "request_id": rid,
               "prompt_truncated": "Solve: x+1=2", "duration_ms": round(d, 2),
               "input_tokens": rnd.randint(5, 2000), "output_tokens": to}
    elif r < 0.72:
        src, tgt = rnd.sample(["en", "zh", "ja", "de", "fr"], 2)
        rec = {"timestamp": ts, "level": "INFO", "message": "translation_success", "src_lang": src, "tgt_lang": tgt,
               "input_tokens": rnd.randint(5, 300), "output_tokens": rnd.randint(5, 400),
               "latency_ms": rnd.randint(80, 3000), "model": "HY-MT1.5-1.8B"}
    elif r < 0.85:
        rec = {"timestamp": ts, "level": "INFO", "task_type": rnd.choice(["sentiment", "chat"]),
               "request_id": rid[-8:], "response_time_ms": rnd.randint(300, 2500)}
    elif r < 0.92:
        rec = {"timestamp": ts, "level": "ERROR", "message": "translation_failed", "src_lang": "en", "tgt_lang": "zh",
               "error_type": rnd.choice(["OutOfMemoryError", "TimeoutError", "ValueError"]),
               "model": rnd.choice(["Qwen2.5-7B", "HY-MT1.5-1.8B"])}
    elif r < 0.96:
        return f'INFO:     127.0.0.1:{40000 + i % 20000} - "POST /v1/chat/completions HTTP/1.1" 200 OK'
    else:
        return "model warm-up done, serving"
    return json.dumps(rec, ensure_ascii=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=5.0, help="lines per second (5)")
    p.add_argument("--count", type=int, default=0, help="stop after N lines (0: run until stopped)")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    i = 0
    try:
        while a.count == 0 or i < a.count:
            sys.stdout.write(line(rnd, i) + "\n")
            sys.stdout.flush()
            i += 1
            if a.rate > 0:
                time.sleep(rnd.expovariate(a.rate))
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
