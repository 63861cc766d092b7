"""The container image, built from the Dockerfile by `make test-image` and run with podman:
a fixed non-root user, a read-only root filesystem, /healthz and the HEALTHCHECK, and metrics
from lines piped into the container's stdin, counted against the input."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests.deploy_tools import deploy_tool
from tests.helpers import ROOT, app_logs, free_port, http_get, parse_metrics, total
from tests.tlsutil import make_pki

IMAGE = os.environ.get("LLM_EXPORTER_IMAGE", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IMAGE, reason="`make test-image` builds the image and sets LLM_EXPORTER_IMAGE"),
]


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([deploy_tool("podman"), *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def running() -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """The image running with a read-only root, stdin open, on a loopback port of the host."""
    name = f"llm-exporter-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = subprocess.Popen(
        [deploy_tool("podman"), "run", "-i", "--rm", "--name", name, "--read-only", "--network=host",
         "-e", f"LLM_EXPORTER_LISTEN=127.0.0.1:{port}", IMAGE, "--no-passthrough", "--gpu", "off"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if http_get(url + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "container not answering /healthz"
            time.sleep(0.2)
        yield proc, name, url
    finally:
        if proc.poll() is None:
            podman("rm", "--force", "--time", "2", name, check=False)
            proc.wait(30)
        for f in (proc.stdin, proc.stderr):
            if f is not None:
                f.close()


def test_image_metadata_names_user_port_entrypoint_and_healthcheck() -> None:
    """The image runs llm-exporter as uid 10060, exposes 10060 and carries a HEALTHCHECK."""
    info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "10060:10060"
    assert cfg["Entrypoint"] == ["llm-exporter"]
    assert "10060/tcp" in cfg["ExposedPorts"]
    assert "healthcheck" in " ".join(info["Healthcheck"]["Test"])  # podman lists it beside Config


def test_piped_lines_become_metrics_in_a_read_only_container(
        running: tuple[subprocess.Popen[bytes], str, str]) -> None:
    """Application log lines piped into the container are all counted, requests as the input has them;
    the process is uid 10060, cannot write its root filesystem, and the HEALTHCHECK passes."""
    proc, name, url = running
    lines = app_logs(3000, 21)
    requests = 0
    for line in lines.splitlines():
        try:
            json.loads(line)
        except ValueError:
            continue
        requests += 1
    assert proc.stdin is not None
    proc.stdin.write(lines)
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while True:
        samples = parse_metrics(http_get(url + "/metrics")[2].decode())
        if total(samples, "llm_exporter_lines_total") >= lines.count(b"\n") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total(samples, "llm_exporter_lines_total") == lines.count(b"\n")
    assert total(samples, "llm_requests_total") == requests

    ids = podman("exec", name, "python3", "-c", "import os; print(os.getuid(), os.getgid())").stdout.split()
    assert ids == ["10060", "10060"]
    write = podman("exec", name, "python3", "-c", "open('/probe', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    health = podman("healthcheck", "run", name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr

    proc.stdin.close()  # EOF on stdin: a graceful stop with exit code 0
    assert proc.wait(30) == 0


def test_compose_service_runs_the_demo_app_in_wrapper_mode() -> None:
    """The llm-exporter service of examples/docker-compose.yml, run with podman as compose would
    (its command, its read-only mount of the demo app, a read-only root): the app's requests are counted."""
    svc = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())["services"]["llm-exporter"]
    assert svc["read_only"] is True
    mounts = [v.replace("./", str(ROOT / "examples") + "/", 1) for v in svc["volumes"]]
    name = f"llm-exporter-compose-{uuid.uuid4().hex[:8]}"
    port = free_port()
    args = ["run", "-d", "--rm", "--name", name, "--read-only", "--network=host",
            "-e", f"LLM_EXPORTER_LISTEN=127.0.0.1:{port}"]
    for m in mounts:
        args += ["-v", m]
    podman(*args, IMAGE, *svc["command"])
    try:
        deadline = time.monotonic() + 60
        requests = 0.0
        while requests < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                requests = total(parse_metrics(http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)[2].decode()),
                                 "llm_requests_total")
            except OSError:
                continue
        assert requests >= 3
    finally:
        podman("rm", "--force", "--time", "2", name, check=False)


@pytest.mark.parametrize("mode", ["tls+basic", "mtls"])
def test_healthcheck_passes_under_tls_basic_auth_and_client_certificates(tmp_path: Path, mode: str) -> None:
    """The image's HEALTHCHECK under --web-config: TLS with basic auth, and TLS requiring client
    certificates. Basic auth leaves /healthz open (documented); the check speaks TLS when the port does."""
    make_pki(tmp_path)  # ca.crt, server.crt/.key into the mounted directory
    pw_hash = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    text = "tls_server_config:\n  cert_file: /web/server.crt\n  key_file: /web/server.key\n"
    if mode == "mtls":
        text += "  client_ca_file: /web/ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"
    else:
        text += f"basic_auth_users:\n  alice: '{pw_hash}'\n"
    (tmp_path / "web.yml").write_text(text)
    for p in tmp_path.iterdir():
        p.chmod(0o644)
    tmp_path.chmod(0o755)
    name = f"llm-exporter-health-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman("run", "-d", "--rm", "--name", name, "--read-only", "--network=host", "-v", f"{tmp_path}:/web:ro",
           "-e", f"LLM_EXPORTER_LISTEN=127.0.0.1:{port}", IMAGE, "--no-stdin", "--http-ingest", "--gpu", "off",
           "--web-config", "/web/web.yml")
    try:
        deadline = time.monotonic() + 60
        while True:
            health = podman("healthcheck", "run", name, check=False)
            if health.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        logs = podman("logs", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr + logs.stderr
    finally:
        podman("rm", "--force", "--time", "2", name, check=False)
