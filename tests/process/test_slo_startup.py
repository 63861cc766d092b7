"""A real exporter: objectives judged from stdin lines, changed by SIGHUP; a wrapped child's
start-up lines become the start-up figures."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from tests.helpers import FIXTURES, Exporter, total
from tests.unit.test_slo import CONFIG, LINES, expected


def results(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[tuple[str, str, str], float]:
    return {(dict(lb)["slo"], dict(lb)["gen_ai_request_model"], dict(lb)["result"]): v
            for (n, lb), v in s.items() if n == name and v}


def test_objectives_over_stdin_and_a_reload(tmp_path: Path) -> None:
    config = tmp_path / "slo.yaml"
    config.write_text(CONFIG)
    body = b"".join(json.dumps(line).encode() + b"\n" for line, _, _ in LINES)
    with Exporter("--no-passthrough", "--gpu", "off", "--config", str(config)) as e:
        e.wait_ready()
        e.stdin.write(body)
        e.stdin.flush()
        s = e.wait_lines(len(LINES))
        req, tok = expected()
        assert results(s, "llm_slo_requests_total") == req
        assert results(s, "llm_slo_output_tokens_total") == tok
        # a stricter "all" by SIGHUP: its counts start over; "chat" is unchanged and keeps its own
        config.write_text(CONFIG.replace("duration: 2s", "duration: 1s"))
        e.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while total(e.samples(), "llm_slo_threshold_seconds", slo="all", field="duration") != 1.0:
            assert time.monotonic() < deadline, "the reload was not applied"
            time.sleep(0.05)
        e.stdin.write(body)
        e.stdin.flush()
        s = e.wait_lines(2 * len(LINES))
        got = results(s, "llm_slo_requests_total")
        assert {k: v for k, v in got.items() if k[0] == "chat"} == {k: 2 * v for k, v in req.items() if k[0] == "chat"}
        # with duration <= 1 s: lines 1 (1.4 s) and 3 (3 s) now bad, 2 (1.0 s, on the edge) and 5 good
        assert {k: v for k, v in got.items() if k[0] == "all"} == {
            ("all", "llama-8b", "good"): 1, ("all", "llama-8b", "bad"): 3, ("all", "llama-8b", "unjudged"): 1,
            ("all", "mistral-7b", "good"): 1, ("all", "mistral-7b", "unjudged"): 1, ("all", "llama-70b", "bad"): 1}
        assert e.stop() == 0


def test_wrapped_servers_start_up_lines(tmp_path: Path) -> None:
    """The child prints a real vLLM 0.32 start (tests/fixtures/startup/vllm_cpu_0.32.log) on
    stderr, as vLLM does, then stays; the figures are the ones written in those lines."""
    log = FIXTURES / "startup" / "vllm_cpu_0.32.log"
    child = [sys.executable, "-c", "import sys, time; sys.stderr.write(open(sys.argv[1]).read()); "
             "sys.stderr.flush(); time.sleep(60)", str(log)]
    with Exporter("--no-passthrough", "--gpu", "off", "--", *child) as e:
        e.wait_ready()
        deadline = time.monotonic() + 30
        while total(s := e.samples(), "llm_server_startup_duration_seconds", phase="ready") == 0:
            assert time.monotonic() < deadline, "no ready figure"
            time.sleep(0.05)
        vllm = {"gen_ai_provider_name": "vllm"}
        assert total(s, "llm_server_starts_total", **vllm) == 1
        assert total(s, "llm_server_startup_duration_seconds", phase="ready", **vllm) == 85.0  # 07:12:21 - 07:10:56
        assert total(s, "llm_server_startup_duration_seconds", phase="engine_init", **vllm) == 10.09
        assert total(s, "llm_server_kv_cache_tokens", **vllm) == 6748160
        assert total(s, "llm_server_max_concurrency", **vllm) == 13180
        assert total(s, "llm_exporter_lines_total", source="stderr", outcome="record") == 8
        e.stop()
