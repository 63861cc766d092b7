"""The page at `/` answers a new user's first question in a real headless Chromium, at a desktop and a
phone width: are my lines understood (lines per source and outcome, the unparsed share, the last
rejects), then per-model requests, latency and tokens, and the server's KV cache and queue. Every
number is checked against /metrics and against a count of the input made here; the charts' text
is readable (no text under 11 px as drawn), their ticks are round, their window fits the
process's age, and nothing spills sideways at 420 px. Screenshots go to test-output/."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from llm_exporter.metrics.hist import DURATION_BUCKETS
from tests.helpers import ROOT, Exporter, parse_metrics, total
from tests.process.test_dashboard import _browser, _histogram_quantile, _open

OUT = ROOT / "test-output"
# a real vLLM periodic stats line (tests/fixtures/samples/vllm.log, line 5): 2 running, 3 pending, 82.1 % KV cache
VLLM_STATS = next(line for line in (ROOT / "tests/fixtures/samples/vllm.log").read_text().splitlines()
                  if "Pending: 3 reqs" in line and "82.1%" in line)
SECRET = "the-users-private-prompt"


def _input(seed: int) -> tuple[list[bytes], dict[str, Any]]:
    rnd = random.Random(seed)
    truth: dict[str, Any] = {"models": {}, "unparsed": 0, "invalid": 0, "record": 0, "too_long": 0}
    out: list[bytes] = []
    for i in range(240):
        model = rnd.choice(["llama-3-8b", "qwen2-7b"])
        m = truth["models"].setdefault(model, {"requests": 0, "error": 0, "in": 0, "out": 0})
        rec: dict[str, Any] = {"request_id": f"r{i}", "model": model, "duration_ms": rnd.randint(20, 9000)}
        if rnd.random() < 0.15:
            rec.update(status="error", error_type="timeout")
            m["error"] += 1
        else:
            rec.update(status="success", input_tokens=rnd.randint(1, 2000), output_tokens=rnd.randint(1, 500))
            m["in"] += rec["input_tokens"]
            m["out"] += rec["output_tokens"]
        m["requests"] += 1
        truth["record"] += 1
        out.append(json.dumps(rec).encode())
        if i % 20 == 0:  # plain text nobody reads
            out.append(f"starting worker {i} with a note nobody parses".encode())
            truth["unparsed"] += 1
    # a known shape with a bad value (negative tokens), carrying prompt text that must never be shown
    out.append(json.dumps({"request_id": "bad", "model": "qwen2-7b", "duration_ms": 5, "status": "success",
                           "output_tokens": -3, "prompt": SECRET}).encode())
    truth["invalid"] += 1
    out.append(VLLM_STATS.encode())
    truth["record"] += 1
    out.append(b"x" * 5000)  # over --max-line-bytes 4096
    truth["too_long"] += 1
    return out, truth


def _cells(page: Any, selector: str, attr: str) -> dict[str, float]:
    return page.eval_on_selector_all(
        selector, f"els => Object.fromEntries(els.map(e => [e.dataset.{attr}, Number(e.dataset.value)]))")


def _check_readable(page: Any, width: int) -> None:
    """No chart text under 11 px as drawn, round y ticks, and nothing wider than the window."""
    sizes = page.eval_on_selector_all(
        "svg text", "els => els.map(e => parseFloat(getComputedStyle(e).fontSize) * "
        "e.ownerSVGElement.getBoundingClientRect().width / e.ownerSVGElement.viewBox.baseVal.width)")
    assert sizes and min(sizes) >= 11, f"chart text drawn at {min(sizes):.1f} px"
    body = page.eval_on_selector_all(".card, p, td, th, span",
                                     "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
    assert min(body) >= 11
    for chart in page.eval_on_selector_all(".chart svg", "els => els.map(s => [...s.querySelectorAll('.ytick')]"
                                           ".map(t => Number(t.dataset.tick)))"):
        step = chart[1] - chart[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 2.5, 5), chart
        assert all(abs(v / step - round(v / step)) < 1e-6 for v in chart), chart
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    overflow = page.eval_on_selector_all(".card", f"els => els.filter(e => e.getBoundingClientRect().right > {width})"
                                                  ".length")
    assert overflow == 0


@pytest.mark.parametrize("debug", [False, True])
def test_page_says_whether_the_lines_are_understood(debug: bool) -> None:
    lines, truth = _input(seed=7)
    OUT.mkdir(exist_ok=True)
    args = ["--no-passthrough", "--gpu", "off", "--max-line-bytes", "4096"] + (["--debug-endpoints"] if debug else [])
    with Exporter(*args) as e, _browser() as browser:
        e.wait_ready()
        e.stdin.write(b"\n".join(lines) + b"\n")
        e.stdin.flush()
        s = e.wait_lines(len(lines))
        assert total(s, "llm_exporter_lines_total") == len(lines)
        page, problems = _open(browser, e.url + "/")
        page.wait_for_function(f"document.querySelector('#lines-table td[data-source=stdin][data-outcome=total]')"
                               f"?.dataset.value === '{len(lines)}'", timeout=15000)
        s = parse_metrics(e.scrape())
        # lines per source and outcome: /metrics and the count made above
        cells = _cells(page, "#lines-table td[data-source=stdin]", "outcome")
        for outcome in ("record", "unparsed", "invalid", "too_long"):
            assert cells[outcome] == total(s, "llm_exporter_lines_total", source="stdin", outcome=outcome) \
                == truth[outcome], outcome
        assert cells["total"] == len(lines)
        share = float(page.get_attribute("#verdict", "data-share") or "nan")
        assert share == pytest.approx(truth["unparsed"] / len(lines))
        assert f"({truth['unparsed'] / len(lines) * 100:.1f} %)" in (page.text_content("#verdict") or "")
        # the last rejects, newest first: the too-long line, then the invalid one; text only with --debug-endpoints
        rows = page.eval_on_selector_all("#rejects tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
        assert rows[0][:2] == [f"stdin:{len(lines)}", "too_long/line_too_long"]
        assert rows[1][0] == f"stdin:{len(lines) - 2}" and rows[1][1].startswith("invalid/")
        assert SECRET not in (page.content())
        if debug:
            assert "[redacted]" in rows[1][2]
        else:
            assert all(len(r) == 2 for r in rows)
            assert "--debug-endpoints" in (page.text_content("#rejects-note") or "")
        # per model since start: requests, errors, tokens, latency quantiles
        for model, m in truth["models"].items():
            row = f"#models tr[data-model='{model}']"
            got = _cells(page, f"{row} td[data-k]", "k")
            assert got["requests"] == total(s, "llm_requests_total", gen_ai_request_model=model) == m["requests"]
            assert got["error"] == total(s, "llm_requests_total", gen_ai_request_model=model, outcome="error") \
                == m["error"]
            assert got["input_tokens"] == total(s, "gen_ai_client_token_usage_sum", gen_ai_request_model=model,
                                                gen_ai_token_type="input") == m["in"]
            assert got["output_tokens"] == m["out"]
            buckets = {le: total(s, "gen_ai_server_request_duration_seconds_bucket", gen_ai_request_model=model,
                                 le=str(le) if le != float("inf") else "+Inf")
                       for le in [*DURATION_BUCKETS, float("inf")]}
            for q in ("p50", "p95"):
                assert got[q] == pytest.approx(_histogram_quantile(0.5 if q == "p50" else 0.95, buckets), rel=1e-9)
        # KV cache and queue from the server's stats line
        kv = page.get_attribute("#kv-legend span", "data-value")
        assert float(kv or "nan") == total(s, "llm_kv_cache_usage_ratio") == pytest.approx(0.821)
        queue = _cells(page, "#queue-legend span", "k")
        assert queue == {"running": total(s, "llm_requests_running"), "waiting": total(s, "llm_requests_waiting")} \
            == {"running": 2, "waiting": 3}
        assert page.is_visible("#card-kv") and page.is_visible("#card-queue")
        # a young process gets a one-minute window, its x axis in seconds
        assert page.eval_on_selector_all("#c-req .xtick", "ts => ts.map(t => t.textContent)") == \
            ["-1 min", "-45 s", "-30 s", "-15 s", "now"]
        assert "the last 1 min" in (page.text_content("#status") or "")
        _check_readable(page, 1300)
        page.screenshot(path=str(OUT / f"page-wide{'-debug' if debug else ''}.png"), full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_function("document.querySelector('#c-req svg').getAttribute('width') < 420", timeout=5000)
        _check_readable(page, 420)
        page.screenshot(path=str(OUT / f"page-420{'-debug' if debug else ''}.png"), full_page=True)
        assert problems == []


def test_page_window_grows_with_the_process_age() -> None:
    """The charts' window is the smallest of 1, 2, 5, 10 and 15 minutes that covers the uptime."""
    from llm_exporter.dashboard import window

    assert [window(a)[0] for a in (0, 59, 61, 200, 301, 599, 601, 5000)] == [60, 60, 120, 300, 600, 600, 900, 900]
    for span, step in (window(a) for a in (1, 100, 250, 500, 800)):
        assert span % step == 0 and 30 <= span // step <= 120
