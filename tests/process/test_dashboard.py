"""The page at `/` in a real headless Chromium: no console errors, its numbers match /metrics."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from llm_exporter.collectors.gpu import GpuCollector
from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.hist import DURATION_BUCKETS
from llm_exporter.server import make_app
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.helpers import ROOT, Exporter, free_port, http_get, parse_metrics, tool, total

OUT = ROOT / "test-output"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative {le: count}, written independently."""
    les = sorted(buckets)
    count = buckets[float("inf")]
    if count == 0:
        return None
    rank = q * count
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


def _lines(n: int, seed: int) -> tuple[list[bytes], dict[str, Any]]:
    rnd = random.Random(seed)
    truth: dict[str, Any] = {"success": 0, "error": 0, "errors": {}, "input": 0, "output": 0}
    out = []
    for i in range(n):
        rec: dict[str, Any] = {"request_id": f"r{i}", "model": rnd.choice(["llama", "qwen"]),
                               "task_type": "chat", "total_time_ms": round(rnd.lognormvariate(5, 1.2), 3)}
        if rnd.random() < 0.2:
            rec["status"] = "error"
            rec["error_type"] = rnd.choice(["timeout", "oom", "validation"])
            truth["error"] += 1
            truth["errors"][rec["error_type"]] = truth["errors"].get(rec["error_type"], 0) + 1
        else:
            rec["status"] = "success"
            rec["input_tokens"] = rnd.randint(1, 3000)
            rec["output_tokens"] = rnd.randint(1, 800)
            truth["success"] += 1
            truth["input"] += rec["input_tokens"]
            truth["output"] += rec["output_tokens"]
        out.append(json.dumps(rec).encode())
    out.append(b"not json, unparsed")
    return out, truth


@contextmanager
def _browser() -> Iterator[Any]:
    chromium = tool("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(url)
    page.wait_for_function("document.body.dataset.updated !== undefined", timeout=15000)
    return page, problems


def _value(page: Any, selector: str) -> float | None:
    v = page.get_attribute(selector, "data-value")
    return None if v in (None, "") else float(v)


def test_page_numbers_match_metrics_in_a_real_browser() -> None:
    """Totals, quantiles, tokens and error types on the page equal /metrics; it refreshes by itself."""
    lines, truth = _lines(400, seed=3)
    OUT.mkdir(exist_ok=True)
    with Exporter("--no-passthrough") as e, _browser() as browser:
        e.wait_ready()
        e.stdin.write(b"\n".join(lines[:200]) + b"\n")
        e.stdin.flush()
        e.wait_lines(200)
        page, problems = _open(browser, e.url + "/")
        first = page.get_attribute("body", "data-updated")
        e.stdin.write(b"\n".join(lines[200:]) + b"\n")
        e.stdin.flush()
        s = e.wait_lines(len(lines))
        # the page fetches again on its own and shows the new totals
        page.wait_for_function(f"document.getElementById('tot-success').dataset.value === '{truth['success']}'",
                               timeout=15000)
        assert page.get_attribute("body", "data-updated") != first
        s = parse_metrics(e.scrape())
        assert _value(page, "#tot-success") == total(s, "llm_requests_total", outcome="success") == truth["success"]
        assert _value(page, "#tot-error") == total(s, "llm_requests_total", outcome="error") == truth["error"]
        assert _value(page, "#tot-aborted") == total(s, "llm_requests_total", outcome="aborted") == 0
        assert _value(page, "#tot-input") == total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") \
            == truth["input"]
        assert _value(page, "#tot-output") == total(s, "gen_ai_client_token_usage_sum",
                                                    gen_ai_token_type="output") == truth["output"]
        buckets = {le: total(s, "gen_ai_server_request_duration_seconds_bucket",
                             le=str(le) if le != float("inf") else "+Inf")
                   for le in [*DURATION_BUCKETS, float("inf")]}
        assert sum(buckets.values()) > 0
        for q, sel in ((0.5, "#tot-p50"), (0.95, "#tot-p95")):
            want = _histogram_quantile(q, buckets)
            assert want is not None and _value(page, sel) == pytest.approx(want, rel=1e-9)
        rows = {page.get_attribute(f"#err-table tr:nth-child({i + 1})", "data-type"):
                _value(page, f"#err-table tr:nth-child({i + 1}) td.num")
                for i in range(page.locator("#err-table tr").count())}
        assert rows == {et: total(s, "llm_request_errors_total", error_type=et) for et in truth["errors"]}
        assert rows == {k: float(v) for k, v in truth["errors"].items()}
        assert page.locator(".gpu-none").count() == 1 and not page.is_visible("#card-gpuutil")
        assert page.locator("#c-req svg polyline, #c-req svg circle").count() >= 1
        page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
        assert problems == []
        # without JavaScript the page still has the name, the version, the links and a summary
        code, _, body = http_get(e.url + "/")
        assert code == 200 and b"/metrics" in body and b"<noscript><h2>Last minute</h2><table><tr>" in body


@contextmanager
def _serve(app: web.Application) -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()


def test_page_draws_each_gpu(tmp_path: Path) -> None:
    """With GPU samples in the registry the page shows each GPU's memory and utilisation."""
    registry = CollectorRegistry(auto_describe=False)
    metrics = LLMMetrics()
    registry.register(metrics)  # type: ignore[arg-type]
    # the real NVML collector over a fake NVML library: the page reads what the collector serves
    gpus = GpuCollector(FakeNvml([FakeGpu("GPU-aaaa", util=25, mem_used=10 * 2**30),
                                  FakeGpu("GPU-bbbb", util=75, mem_used=30 * 2**30)]))
    assert gpus.init()
    gpus.poll()
    registry.register(gpus)
    with _serve(make_app(registry, metrics, lambda: True)) as url, _browser() as browser:
        data = json.loads(http_get(url + "/api/dashboard")[2])
        assert [(g["gpu"], g["memory_used_bytes"], g["utilization_ratio"]) for g in data["gpus"]] == [
            ("0", 10 * 2**30, 0.25), ("1", 30 * 2**30, 0.75)]
        page, problems = _open(browser, url + "/")
        mem = page.locator("#gpu-mem-legend .gpu")
        assert mem.count() == 2 and page.locator(".gpu-none").count() == 0
        assert [float(mem.nth(i).get_attribute("data-value") or "nan") for i in range(2)] == [10 * 2**30, 30 * 2**30]
        assert "GPU 1: 30.00 GiB of 80.00 GiB" in (mem.nth(1).text_content() or "")
        assert "75 %" in (page.text_content("#gpu-util-legend") or "")
        assert page.locator("#c-gpumem svg").count() == 1
        OUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUT / "dashboard-gpu.png"), full_page=True)
        assert problems == []
