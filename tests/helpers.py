"""Shared test machinery: real exporter processes, scraping, tool lookup, an independent counter."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import workload

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = FIXTURES / "samples"


def tool(name: str) -> str:
    """Path of a real tool the test needs; in CI a missing tool fails the test, locally it skips."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (make tools installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples as {(name, sorted labels): value}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **match: str) -> float:
    """Sum of every sample of `name` whose labels include `match`."""
    return sum(v for (n, labels), v in samples.items()
               if n == name and all(dict(labels).get(k) == val for k, val in match.items()))


class Exporter:
    """A real `python -m exporter` process on a free port."""

    def __init__(self, *args: str, stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{self.port}", *args]
        self.proc = subprocess.Popen(self.args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})}, cwd=cwd or str(ROOT))

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def wait_ready(self, timeout: float = 60.0, path: str = "/readyz") -> None:
        """Poll until `path` answers 200 (a deadline, not a sleep: start-up is slow on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited {self.proc.returncode}: {self.stderr_text()}")
            with contextlib.suppress(OSError):
                if http_get(self.url + path, timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        raise AssertionError("exporter not ready in time")

    def scrape(self, headers: dict[str, str] | None = None) -> str:
        code, _, body = http_get(self.url + "/metrics", headers)
        assert code == 200
        return body.decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.scrape())

    def wait_lines(self, n: int, timeout: float = 30.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Scrape until llm_exporter_lines_total adds up to n (every line has an outcome); fails the
        test when it does not within `timeout` (a caller never goes on with a short count)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.samples()
            got = total(s, "llm_exporter_lines_total")
            if got >= n:
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{got:g} of {n} lines counted in {timeout:g} s")
            time.sleep(0.05)

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@contextlib.contextmanager
def exporter(*args: str, **kw: Any) -> Iterator[Exporter]:
    with Exporter(*args, **kw) as e:
        yield e


def app_logs(n: int, seed: int) -> bytes:
    """`n` lines of application JSON logs (bench/workload.py: four shapes, errors, plain text)."""
    return "".join(workload.generate(n, seed)).encode()


def app_labels(op: str, model: str) -> dict[str, str]:
    return {"gen_ai_operation_name": op, "gen_ai_provider_name": "app", "gen_ai_request_model": model}


def assert_matches_count(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], want: workload.Truth) -> None:
    """Every request figure in the samples `s` equals the independent count `want` of the input."""
    assert total(s, "llm_exporter_lines_total") == want.lines
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == want.text
    assert total(s, "llm_exporter_lines_total", outcome="record") == want.lines - want.text
    for (method, path, code), n in want.access.items():
        assert total(s, "llm_http_requests_total", method=method, path=path, code=code) == n
    assert total(s, "llm_http_requests_total") == sum(want.access.values())
    for (op, model, outcome), n in want.requests.items():
        assert total(s, "llm_requests_total", outcome=outcome, **app_labels(op, model)) == n, (op, model, outcome)
    assert total(s, "llm_requests_total") == sum(want.requests.values())
    for (op, model, et), n in want.errors.items():
        assert total(s, "llm_request_errors_total", error_type=et, **app_labels(op, model)) == n, (op, model, et)
    assert total(s, "llm_request_errors_total") == sum(want.errors.values())
    for (op, model, reason), n in want.finish.items():
        assert total(s, "llm_request_finish_reasons_total", gen_ai_response_finish_reason=reason,
                     **app_labels(op, model)) == n
    for (op, model), v in want.duration_s.items():
        lbl = app_labels(op, model)
        assert total(s, "gen_ai_server_request_duration_seconds_sum", **lbl) == pytest.approx(v, rel=1e-9)
        assert total(s, "gen_ai_server_request_duration_seconds_count", **lbl) == want.duration_n[(op, model)]
        got_in = total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **lbl)
        got_out = total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **lbl)
        assert (got_in, got_out) == (want.tokens_in[(op, model)], want.tokens_out[(op, model)]), (op, model)
    assert total(s, "gen_ai_server_time_to_first_token_seconds_sum") == pytest.approx(want.ttft_s, rel=1e-9)
    assert total(s, "gen_ai_server_time_to_first_token_seconds_count") == want.ttft_n
    assert total(s, "llm_request_queue_duration_seconds_sum") == pytest.approx(want.queue_s, rel=1e-9)
    assert total(s, "llm_request_queue_duration_seconds_count") == want.queue_n
    assert total(s, "llm_request_inference_duration_seconds_sum") == pytest.approx(want.inference_s, rel=1e-9)
    assert total(s, "llm_request_inference_duration_seconds_count") == want.inference_n


@contextlib.contextmanager
def logged(name: str, level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """The records logger `name` emits at `level` or above inside the block (the logger's own
    level is set to `level` meanwhile, then put back)."""
    got: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    lg = logging.getLogger(name)
    h, old = _Keep(level), lg.level
    lg.addHandler(h)
    lg.setLevel(level)
    try:
        yield got
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)
