"""Wrapper mode's derived image (examples/wrapper-image/Dockerfile), built for real with podman from
a local base (`python:3.11-slim`, which `scripts/image-tools.sh` provides; no network: the
dependencies' wheels come in the build context) and run: `llm-exporter -- <child>` inside it
counts the child's lines, and the base's own Python packages are left as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.deploy.test_dockerfile import hadolint
from tests.deploy_tools import deploy_tool
from tests.helpers import ROOT, free_port, http_get, parse_metrics, total

pytestmark = pytest.mark.slow
BASE = "docker.io/library/python:3.11-slim"
EXAMPLE = ROOT / "examples" / "wrapper-image"


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([deploy_tool("podman"), *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_wrapper_image_dockerfile_passes_hadolint() -> None:
    r = hadolint(EXAMPLE / "Dockerfile")
    assert r.returncode == 0 and json.loads(r.stdout or "[]") == [], r.stdout


@pytest.mark.skipif(not os.environ.get("LLM_EXPORTER_IMAGE"),
                    reason="`make test-image` sets up podman (scripts/image-tools.sh) and runs this test")
def test_wrapper_image_builds_offline_and_runs_a_child(tmp_path: Path) -> None:
    if podman("image", "exists", BASE, check=False).returncode != 0:
        pytest.skip(f"{BASE} not present (scripts/image-tools.sh makes it)")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_bytes((EXAMPLE / "Dockerfile").read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(ctx / "wheels"), str(ROOT)], check=True,
                   timeout=600)
    before = podman("run", "--rm", "--network=none", BASE, "python3", "-m", "pip", "list", "--format=freeze").stdout
    tag = f"localhost/llm-exporter-wrapper-test:{uuid.uuid4().hex[:8]}"
    podman("build", "--quiet", "--pull=never", "--format", "docker",
           "--build-arg", f"SERVER_IMAGE={BASE}", "--build-arg", "PIP_INSTALL_FLAGS=--no-index", "-t", tag, str(ctx))
    name = f"wrapper-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    child = ("import json, sys, time\n"
             "for i in range(300):\n"
             "    print(json.dumps({'request_id': f'r{i}', 'model': 'm', 'status': 'success', 'duration_ms': 5 + i}))\n"
             "sys.stdout.flush(); time.sleep(600)\n")
    try:
        after = podman("run", "--rm", "--network=none", tag, "python3", "-m", "pip", "list", "--format=freeze").stdout
        assert after == before  # the server's own environment is unchanged
        podman("run", "-d", "--rm", "--name", name, "--network=host", tag, "llm-exporter", "--listen",
               f"127.0.0.1:{port}", "--gpu", "off", "--no-passthrough", "--", "python3", "-c", child)
        deadline = time.monotonic() + 120
        seen = 0.0
        while seen < 300:
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-2000:]
            try:
                code, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                if code == 200:
                    seen = total(parse_metrics(body.decode()), "llm_requests_total")
            except OSError:
                pass
            time.sleep(0.3)
        assert seen == 300
    finally:
        podman("rm", "--force", "--time", "2", name, check=False)
        podman("rmi", "--force", tag, check=False)
