"""The benchmark's inputs: log files and line streams, built the same way on every run.

- `app_logs`: the seed applications' JSON request logs, from ../shared/bench/gen_logs.py when it
  is there, else from `builtin_app_logs` (the same four shapes, errors and plain-text lines);
- `server_mix`: real vLLM and TGI log lines from ../shared/samples, repeated to a given length;
- `RequestStream`: request lines with a cycling set of distinct request ids (the RSS run);
- `series_lines`: request lines spread over many label combinations (the scrape run).

Run as `python -m bench.inputs N [SEED]` it writes `builtin_app_logs` to stdout (a producer for
the passthrough run when ../shared is absent).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: the real server logs the mix is built from (text and JSON, with tracebacks and prefixes)
MIX_SAMPLES = ("vllm.log", "tgi.log", "tgi_json.log")


def builtin_app_logs(n: int, seed: int = 7) -> Iterator[str]:
    """`n` lines in the shapes of the four seed applications (same mix as gen_logs.py)."""
    rnd = random.Random(seed)
    models = ("Qwen2.5-7B", "DeepSeek-R1-Distill-Qwen-1.5B", "HY-MT1.5-1.8B")
    langs = ("en", "zh", "ja", "de", "fr")
    for i in range(n):
        pick = rnd.random()
        ts = f"2026-11-21T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        rid = f"req_{i:08x}"
        rec: dict[str, object]
        if pick < 0.50:  # chat service: milliseconds split into queue and inference
            queue_ms, infer_ms = rnd.randint(0, 300), rnd.randint(50, 9000)
            rec = {"timestamp": ts, "request_id": rid, "method": "POST", "path": "/v1/chat/completions",
                   "model": "Qwen2.5-7B", "input_tokens": rnd.randint(5, 4000),
                   "output_tokens": rnd.randint(1, 1024), "total_time_ms": queue_ms + infer_ms,
                   "queue_time_ms": queue_ms, "inference_time_ms": infer_ms,
                   "gpu_memory_mb": 18000 + rnd.randint(0, 2000), "status": "success"}
        elif pick < 0.65:  # reasoning service: duration_ms and a service name
            dur, out = rnd.uniform(50, 15000), rnd.randint(1, 2048)
            rec = {"timestamp": ts, "level": "INFO", "service": models[1], "request_id": rid,
                   "prompt_truncated": "Solve: " + "x" * rnd.randint(10, 120),
                   "response_truncated": "The answer is 42", "duration_ms": round(dur, 2),
                   "input_tokens": rnd.randint(5, 2000), "output_tokens": out,
                   "throughput_tps": round(out / (dur / 1000), 2)}
        elif pick < 0.77:  # translation model: latency_ms, languages
            src, tgt = rnd.sample(langs, 2)
            rec = {"timestamp": ts, "level": "INFO", "message": "translation_success",
                   "input_text": "Hello world " * rnd.randint(1, 5), "src_lang": src, "tgt_lang": tgt,
                   "output_text": "你好世界", "input_tokens": rnd.randint(5, 300),
                   "output_tokens": rnd.randint(5, 400), "latency_ms": rnd.randint(80, 3000),
                   "model": models[2]}
        elif pick < 0.90:  # small CPU model: task_type, response_time_ms
            task = rnd.choice(("sentiment", "chat"))
            rec = {"timestamp": ts.replace("T", " ")[:19], "level": "INFO",
                   "message": "情感分析完成: 正面" if task == "sentiment" else "生成回复: 太好了!",
                   "task_type": task, "request_id": rid[-8:], "response_time_ms": rnd.randint(300, 2500),
                   "cpu_usage_percent": round(rnd.uniform(20, 90), 1),
                   "memory_usage_mb": round(rnd.uniform(1800, 1900), 1)}
        elif pick < 0.95:  # failed translations
            rec = {"timestamp": ts, "level": "ERROR", "message": "translation_failed", "input_text": "Hello",
                   "src_lang": "en", "tgt_lang": "zh",
                   "error_type": rnd.choice(("OutOfMemoryError", "TimeoutError", "ValueError")),
                   "error_message": "CUDA out of memory. Tried to allocate 2.00 GiB", "model": models[i % 3]}
        else:  # plain text: access lines and the app's own prints
            if rnd.random() < 0.5:
                port = 40000 + i % 20000
                yield f'INFO:     127.0.0.1:{port} - "POST /v1/chat/completions HTTP/1.1" 200 OK\n'
            else:
                yield "😄 LLM 情感判断: 正面\n"
            continue
        yield json.dumps(rec, ensure_ascii=False) + "\n"


def producer_argv(shared: Path, n: int) -> list[str]:
    """A command that writes `n` seed-application lines to stdout."""
    gen = shared / "bench" / "gen_logs.py"
    if gen.is_file():
        return [sys.executable, str(gen), str(n)]
    return [sys.executable, "-m", "bench.inputs", str(n)]


def app_logs(path: Path, n: int, shared: Path) -> str:
    """Write `n` seed-application lines to `path`; returns which generator made them."""
    gen = shared / "bench" / "gen_logs.py"
    if gen.is_file():
        with path.open("wb") as out:
            subprocess.run([sys.executable, str(gen), str(n)], stdout=out, check=True)
        return str(gen)
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(builtin_app_logs(n))
    return "builtin (bench/inputs.py)"


def server_mix(path: Path, n: int, samples: Path) -> list[str]:
    """Write `n` lines of real vLLM/TGI output (whole sample files, round robin); returns the files."""
    files = [samples / name for name in MIX_SAMPLES if (samples / name).is_file()]
    if not files:
        raise FileNotFoundError(f"none of {', '.join(MIX_SAMPLES)} in {samples}")
    blocks = [f.read_bytes().splitlines(keepends=True) for f in files]
    written = 0
    with path.open("wb") as out:
        while written < n:
            for block in blocks:
                take = block[: n - written]
                out.writelines(take)
                written += len(take)
                if written >= n:
                    break
    return [str(f) for f in files]


class RequestStream:
    """Seed-application request lines whose request ids cycle over `distinct` values."""

    def __init__(self, distinct: int, templates: int = 997) -> None:
        self.distinct = distinct
        self._parts: list[tuple[bytes, bytes]] = []
        for line in builtin_app_logs(templates * 2, seed=11):
            if '"request_id": "' not in line:
                continue
            head, _, rest = line.partition('"request_id": "')
            _, _, tail = rest.partition('"')
            self._parts.append((head.encode() + b'"request_id": "', b'"' + tail.encode()))
            if len(self._parts) == templates:
                break

    def chunk(self, start: int, count: int) -> bytes:
        """Lines number `start` to `start + count - 1` of the stream, as one block of bytes."""
        parts, distinct, k = self._parts, self.distinct, len(self._parts)
        out = []
        for i in range(start, start + count):
            head, tail = parts[i % k]
            out.append(b"%bid-%07d%b" % (head, i % distinct, tail))
        return b"".join(out)


def series_lines(models: int, operations: tuple[str, ...] = ("chat", "text_completion", "embeddings",
                                                              "sentiment")) -> bytes:
    """Request lines (a success with every timing, and an error) for each (operation, model)."""
    out = []
    for m in range(models):
        for op in operations:
            base = {"request_id": f"s-{m}-{op}", "operation": op, "model": f"model-{m:03d}",
                    "input_tokens": 100 + m, "output_tokens": 20 + m, "duration_ms": 1500 + m,
                    "queue_time_ms": 20, "inference_time_ms": 1400, "ttft_ms": 90, "status": "success"}
            out.append(json.dumps(base))
            out.append(json.dumps({**base, "status": "error", "error_type": "TimeoutError"}))
    return ("\n".join(out) + "\n").encode()


if __name__ == "__main__":
    sys.stdout.writelines(builtin_app_logs(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 7))
