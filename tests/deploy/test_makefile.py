"""`make demo` as a new user runs it: into a fresh virtual environment it installs the package and
its dependencies only (no test extras), and serves on the port `PORT=` names."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port, http_get, parse_metrics, tool, total

pytestmark = pytest.mark.slow


def test_make_demo_installs_only_what_it_needs_and_takes_a_port(tmp_path: Path) -> None:
    make = tool("make")
    venv = tmp_path / "venv"
    port = free_port()
    proc = subprocess.Popen([make, "demo", f"PORT={port}", f"VENV={venv}"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a cold install on a loaded machine
        requests = 0.0
        while requests == 0:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "demo not serving"
            try:
                code, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                if code == 200:
                    requests = total(parse_metrics(body.decode()), "llm_requests_total")
            except OSError:
                pass
            time.sleep(0.5)
        installed = {p.name.split("-")[0].lower() for p in venv.glob("lib/python*/site-packages/*.dist-info")}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert f"open http://127.0.0.1:{port}/" in out
    assert {"prometheus_client", "aiohttp", "pydantic"} <= installed
    # the test extras stay out: pytest, hypothesis, playwright, mypy, ruff, kubernetes-validate
    assert not installed & {"pytest", "hypothesis", "playwright", "mypy", "ruff", "kubernetes_validate"}, installed
