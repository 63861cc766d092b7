#!/usr/bin/env python3
"""The exporter an application team writes by hand: read log lines, json.loads, prometheus-client.

It is the benchmark's baseline: the straightforward way to get request metrics out of JSON
request logs, knowing the four application shapes the workload writes (bench/workload.py).
Reads stdin line by line until EOF; lines that are not JSON are skipped. At EOF it prints how
many lines it read and how fast to stderr, and with `--print` the exposition to stdout.

    python bench/baseline_exporter.py [--port 9100] [--print] < app.log
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest, start_http_server

REQUESTS = Counter("app_requests", "Finished requests", ["model", "outcome"])
ERRORS = Counter("app_request_errors", "Failed requests by error type", ["model", "error_type"])
DURATION = Histogram("app_request_duration_seconds", "Request duration", ["model"],
                     buckets=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                              81.92])
QUEUE = Histogram("app_queue_duration_seconds", "Time spent queued",
                  buckets=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48])
TTFT = Histogram("app_time_to_first_token_seconds", "Time to the first token",
                 buckets=[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0])
TOKENS = Histogram("app_tokens", "Tokens per request", ["model", "direction"],
                   buckets=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536])
DURATION_FIELDS = ("latency_ms", "total_time_ms", "response_time_ms", "duration_ms")


def handle(line: str) -> None:
    try:
        log = json.loads(line)
    except ValueError:
        return
    if not isinstance(log, dict):
        return
    model = log.get("model") or log.get("service") or ""
    if "error_type" in log:
        REQUESTS.labels(model, "error").inc()
        ERRORS.labels(model, str(log["error_type"])).inc()
    elif log.get("status") == "aborted":
        REQUESTS.labels(model, "aborted").inc()
    else:
        REQUESTS.labels(model, "success").inc()
    for name in DURATION_FIELDS:
        if name in log:
            DURATION.labels(model).observe(log[name] / 1000)
            break
    if "queue_time_ms" in log:
        QUEUE.observe(log["queue_time_ms"] / 1000)
    if "ttft_ms" in log:
        TTFT.observe(log["ttft_ms"] / 1000)
    if "input_tokens" in log:
        TOKENS.labels(model, "input").observe(log["input_tokens"])
    if "output_tokens" in log:
        TOKENS.labels(model, "output").observe(log["output_tokens"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, help="also serve /metrics on this port while reading")
    ap.add_argument("--print", action="store_true", help="print the exposition at EOF")
    ns = ap.parse_args()
    if ns.port:
        start_http_server(ns.port)
    t0, n = time.perf_counter(), 0
    for line in sys.stdin:
        n += 1
        try:
            handle(line)
        except Exception:  # a line with an odd value must not stop the exporter
            continue
    dt = time.perf_counter() - t0
    print(f"{n} lines in {dt:.3f}s = {n / dt if dt else 0:,.0f} lines/s", file=sys.stderr)
    if ns.print:
        sys.stdout.write(generate_latest(REGISTRY).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
