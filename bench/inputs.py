"""The benchmark's inputs: log files and line streams, built the same way on every run.

- `app_logs`: application JSON request logs of four shapes, from bench/workload.py;
- `server_mix`: real vLLM and TGI log lines (tests/fixtures/samples), repeated to a given length;
- `RequestStream`: request lines with a cycling set of distinct request ids (the RSS run);
- `series_lines`: request lines spread over many label combinations (the scrape run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import workload

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "fixtures" / "samples"
#: the real server logs the mix is built from (text and JSON, with tracebacks and prefixes)
MIX_SAMPLES = ("vllm.log", "tgi.log", "tgi_json.log")


def producer_argv(n: int) -> list[str]:
    """A command that writes `n` application JSON log lines to stdout."""
    return [sys.executable, "-m", "bench.workload", str(n)]


def app_logs(path: Path, n: int) -> str:
    """Write `n` application JSON log lines to `path`; returns how they were made."""
    workload.write(path, n)
    return f"bench/workload.py {n} 7 (four shapes, errors, 5 % plain text)"


def server_mix(path: Path, n: int, samples: Path = SAMPLES) -> list[str]:
    """Write `n` lines of real vLLM/TGI output (whole sample files, round robin); returns the files."""
    files = [samples / name for name in MIX_SAMPLES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"server samples missing: {', '.join(missing)}")
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
    return [str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in files]


class RequestStream:
    """Application request lines whose request ids cycle over `distinct` values."""

    def __init__(self, distinct: int, templates: int = 997) -> None:
        self.distinct = distinct
        self._parts: list[tuple[bytes, bytes]] = []
        for line in workload.generate(templates * 2, seed=11):
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

