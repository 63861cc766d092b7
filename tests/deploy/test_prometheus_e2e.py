"""A real Prometheus scrapes a real llm-exporter and its recording rules agree with the input.

The exporter is fed application log lines (bench/workload.py) in two halves with a scrape in
between, so `rate()` sees the second half as the increase. Every ratio the rules compute (error
ratio, token and request shares, generation speed) is compared with the same ratio counted here,
independently, from the generated lines; latency quantiles with Prometheus' bucket interpolation
done here over the same lines.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_tools import deploy_tool
from tests.helpers import FIXTURES, ROOT, Exporter, app_logs, free_port, http_get

pytestmark = pytest.mark.slow

RULES = ROOT / "examples" / "prometheus" / "rules.yaml"
LINES, SEED = 6000, 11
# gen_ai_server_request_duration_seconds buckets (README: OTel buckets 0.01 ... 81.92 s)
BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
DURATION_MS = ("duration_ms", "latency_ms", "total_time_ms", "response_time_ms")
# Two GPUs through the test suite's stand-in NVML library: GPU 0 at 75 of 80 GiB, GPU 1 at 10 of 80.
FULL_GPU = "GPU-0a1b2c3d-0000-4000-8000-000000000000"
FAKE_GPUS = {
    "PYTHONPATH": os.pathsep.join([str(FIXTURES / "fake_pynvml"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "LLM_EXPORTER_TEST_FAKE_NVML": json.dumps({"gpus": [
        {"uuid": FULL_GPU, "mem_used": 75 << 30, "mem_total": 80 << 30},
        {"uuid": "GPU-0a1b2c3d-0000-4000-8000-000000000001", "mem_used": 10 << 30, "mem_total": 80 << 30}]}),
}


class Counts:
    """What one model's requests add up to, counted from the raw lines."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.out_tokens = 0
        self.in_tokens = 0
        self.success_seconds = 0.0
        self.durations: list[float] = []


def count(lines: list[str]) -> dict[str, Counts]:
    """Per model (`model`, else `service`, else empty): requests, errors, tokens, durations."""
    out: dict[str, Counts] = defaultdict(Counts)
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # access lines and print() output are not requests
        c = out[rec.get("model") or rec.get("service") or ""]
        c.requests += 1
        failed = rec.get("level") == "ERROR" or "error_type" in rec
        c.errors += failed
        c.in_tokens += rec.get("input_tokens", 0)
        c.out_tokens += rec.get("output_tokens", 0)
        ms = next((rec[k] for k in DURATION_MS if k in rec), None)
        if ms is not None:
            c.durations.append(ms / 1000)
            if not failed:
                c.success_seconds += ms / 1000
    return out


def bucket_quantile(q: float, values: list[float]) -> float:
    """histogram_quantile over these values in the contract's buckets (linear inside a bucket)."""
    cum = [sum(1 for v in values if v <= b) for b in BOUNDS]
    rank = q * len(values)
    for i, c in enumerate(cum):
        if c >= rank:
            lo, below = (BOUNDS[i - 1], cum[i - 1]) if i else (0.0, 0)
            return lo + (BOUNDS[i] - lo) * (rank - below) / (c - below)
    return BOUNDS[-1]


class Prometheus:
    """A real `prometheus` server on 127.0.0.1 with a temporary storage directory."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "llm-exporter", "static_configs": [{"targets": [target]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (tmp / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [deploy_tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited"
            try:
                if http_get(f"{self.url}/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus not ready in time")

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        code, _, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert code == 200, body
        data = json.loads(body)["data"]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def poll(self, expr: str, done: Any, timeout: float = 20.0) -> list[tuple[dict[str, str], float]]:
        """Query until `done(result)` holds or the timeout passes; returns the last result."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "prometheus exited"
            try:
                res = self.query(expr)
            except OSError:
                res = []
            if done(res) or time.monotonic() > deadline:
                return res
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def by_model(res: list[tuple[dict[str, str], float]], **match: str) -> dict[str, float]:
    return {m.get("gen_ai_request_model", ""): v for m, v in res
            if all(m.get(k) == val for k, val in match.items())}


def close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Exporter, Prometheus, list[str], list[str]]]:
    """An exporter holding the first half of the lines, and a Prometheus that has scraped it."""
    deploy_tool("prometheus")
    lines = app_logs(LINES, SEED).decode().splitlines(keepends=True)
    first, second = lines[: LINES // 2], lines[LINES // 2 :]
    with Exporter("--no-passthrough", "--gpu", "on", "--gpu-interval", "0.2", env=FAKE_GPUS) as exp:
        exp.wait_ready()
        exp.stdin.write("".join(first).encode())
        exp.stdin.flush()
        exp.wait_lines(len(first))
        prom = Prometheus(tmp_path, f"127.0.0.1:{exp.port}")
        try:
            prom.wait_ready()
            yield exp, prom, first, second
        finally:
            prom.stop()


def test_recording_rules_match_an_independent_count(
        stack: tuple[Exporter, Prometheus, list[str], list[str]]) -> None:
    """Error ratio, request and token shares, generation speed and p50/p95/p99 agree with the input."""
    exp, prom, first, second = stack
    before, after = count(first), count(second)
    n_first = sum(c.requests for c in before.values())
    seen = prom.poll("sum(llm_requests_total)", lambda r: bool(r) and r[0][1] == n_first)
    assert seen and seen[0][1] == n_first, f"first scrape never arrived: {seen}"
    # rate() needs every series in the first scrape: no model may first appear in the second half
    assert set(after) <= set(before)
    assert all(before[m].errors for m in after if after[m].errors)

    exp.stdin.write("".join(second).encode())
    exp.stdin.flush()
    exp.wait_lines(LINES)
    n_all = n_first + sum(c.requests for c in after.values())

    want_ratio = {m: c.errors / c.requests for m, c in after.items()}
    prom.poll("sum(llm_requests_total)", lambda r: bool(r) and r[0][1] == n_all)
    got = by_model(prom.poll(
        "llm:request_errors:ratio_rate5m",
        lambda r: by_model(r).keys() == want_ratio.keys()
        and all(close(v, want_ratio[m], 1e-9) for m, v in by_model(r).items())))
    assert got.keys() == want_ratio.keys()
    for m, v in got.items():
        assert close(v, want_ratio[m], 1e-9), (m, v, want_ratio[m])
    assert min(want_ratio.values()) == 0 < max(want_ratio.values()) < 1  # both branches of the rule

    rates = prom.query("llm:requests:rate5m")
    assert {m["job"] for m, _ in rates} == {"llm-exporter"}
    total_rate = sum(v for _, v in rates)
    for m, c in after.items():
        assert close(by_model(rates, outcome="error").get(m, 0.0) / total_rate, c.errors / (n_all - n_first), 1e-9)

    tokens = prom.query("llm:tokens:rate5m")
    out, inp = by_model(tokens, gen_ai_token_type="output"), by_model(tokens, gen_ai_token_type="input")
    want_tok = {m for m, c in after.items() if c.out_tokens}
    assert out.keys() == inp.keys() == want_tok
    for m in want_tok:
        assert close(out[m] / inp[m], after[m].out_tokens / after[m].in_tokens, 1e-9), m

    speed = by_model(prom.query("llm:generation_speed_tokens_per_second:ratio_rate5m"))
    assert speed.keys() == want_tok
    for m, v in speed.items():
        assert close(v, after[m].out_tokens / after[m].success_seconds, 1e-9), (m, v)

    for q, rule in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        got_q = by_model(prom.query(f"llm:request_duration_seconds:{rule}_5m"))
        want_q = {m: bucket_quantile(q, c.durations) for m, c in after.items() if c.durations}
        assert got_q.keys() == want_q.keys(), rule
        for m, v in got_q.items():
            # a bucket that was still 0 at the first scrape is extrapolated a little differently
            assert close(v, want_q[m], 0.02), (rule, m, v, want_q[m])


def test_alerts_go_pending_for_the_failing_models_and_the_full_gpu(
        stack: tuple[Exporter, Prometheus, list[str], list[str]]) -> None:
    """LLMErrorRatioHigh goes pending for exactly the models whose input has more than 5% errors, and
    LLMGPUMemoryHigh for the GPU at 75 of 80 GiB and not the one at 10 (the collector's real labels)."""
    exp, prom, first, second = stack
    n_first = sum(c.requests for c in count(first).values())
    prom.poll("sum(llm_requests_total)", lambda r: bool(r) and r[0][1] == n_first)
    exp.stdin.write("".join(second).encode())
    exp.stdin.flush()
    exp.wait_lines(LINES)
    want = {m for m, c in count(second).items() if c.errors / c.requests > 0.05}
    assert want and want != set(count(second))

    def pending(res: list[tuple[dict[str, str], float]]) -> set[str]:
        return {m["gen_ai_request_model"] for m, _ in res if m.get("alertname") == "LLMErrorRatioHigh"}

    res = prom.poll('ALERTS{alertstate="pending"}', lambda r: pending(r) == want)
    assert pending(res) == want
    assert {m["severity"] for m, _ in res if m["alertname"] == "LLMErrorRatioHigh"} == {"critical"}

    gpus = prom.poll('ALERTS{alertname="LLMGPUMemoryHigh"}', bool)
    assert [(m["hw_id"], m["gpu"], m["alertstate"]) for m, _ in gpus] == [(FULL_GPU, "0", "pending")]
