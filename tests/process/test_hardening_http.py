"""Adversarial HTTP on a real exporter, loopback only, each bounded in time and size: unauthenticated
ingest refused at start, idle and slow connections, a never-ending body, a connection flood under a
low open-file limit, wrong-password floods, health under every --web-config, malformed requests."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from aiohttp import web

from llm_exporter.webconfig import BasicAuth
from tests.helpers import ROOT, Exporter, free_port, http_get, parse_metrics, total
from tests.tlsutil import PASSWORD
from tests.tlsutil import basic as _basic


def _refusals(e: Exporter, limit: str, headers: dict[str, str] | None = None) -> float:
    return total(parse_metrics(e.scrape(headers)), "llm_exporter_limit_refusals_total", limit=limit)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes `sock` within `seconds` (sending `trickle` every 0.2 s meanwhile)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle)
            data = sock.recv(4096)
            if not data:
                return True
            if data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


# -- safe by default: /ingest beyond loopback needs a token or basic auth ---------------------------

@pytest.mark.parametrize("token_args", [[], ["--http-ingest-token", ""], ["--http-ingest-token", "  "]])
def test_ingest_beyond_loopback_without_a_token_is_refused_at_start(token_args: list[str]) -> None:
    """`--http-ingest` on 0.0.0.0 with no token (or an empty one, from an unset variable): exit 1 and
    one line naming the flag that allows it; nothing is bound."""
    port = free_port()
    with Exporter("--listen", f"0.0.0.0:{port}", "--http-ingest", *token_args, "--no-stdin",
                  stdin=subprocess.DEVNULL) as e:
        assert e.proc.wait(20) == 1
        err = e.stderr_text().strip()
    assert len(err.splitlines()) == 1, err
    assert "--http-ingest-allow-unauthenticated" in err and "0.0.0.0" in err, err


def test_ingest_exposure_rule() -> None:
    """Loopback, a token, basic auth or the explicit flag: allowed; anything else beyond loopback: not."""
    from llm_exporter.app import ingest_exposure_problem
    from llm_exporter.settings import Settings

    def problem(**kw: object) -> str | None:
        auth = bool(kw.pop("basic_auth", False))
        return ingest_exposure_problem(Settings(http_ingest=True, **kw), auth)  # type: ignore[arg-type]

    assert problem(listen="0.0.0.0:1") is not None
    assert problem(listen="[::]:1") is not None
    assert problem(listen="10.1.2.3:1", http_ingest_token="") is not None
    assert problem(listen="127.0.0.1:1") is None
    assert problem(listen="[::1]:1") is None
    assert problem(listen="localhost:1") is None
    assert problem(listen="0.0.0.0:1", http_ingest_token="t") is None
    assert problem(listen="0.0.0.0:1", basic_auth=True) is None
    assert problem(listen="0.0.0.0:1", http_ingest_allow_unauthenticated=True) is None


# -- connections: idle, slow head, endless body, flood under a low fd limit ------------------------

@pytest.fixture(scope="module")
def short() -> Iterator[Exporter]:
    with Exporter("--http-ingest", "--no-stdin", "--web-idle-timeout", "1", "--web-read-timeout", "1",
                  stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        yield e


def test_an_idle_connection_is_closed(short: Exporter) -> None:
    """A connection that never sends a byte is closed (1 s limit; waited for up to 20 s)."""
    before = _refusals(short, "header_timeout")
    with socket.create_connection(("127.0.0.1", short.port)) as s:
        assert _closed_within(s, 20)
    assert _refusals(short, "header_timeout") == before + 1


def test_a_slowloris_head_is_closed(short: Exporter) -> None:
    """A head sent one byte at a time, never finished, is closed although bytes keep coming."""
    with socket.create_connection(("127.0.0.1", short.port)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        assert _closed_within(s, 20, trickle=b"X")


def test_a_never_ending_chunked_body_gets_408(short: Exporter) -> None:
    """/ingest with a chunked body that never ends: 408 after --web-read-timeout, connection closed."""
    before = _refusals(short, "body_timeout")
    with socket.create_connection(("127.0.0.1", short.port)) as s:
        s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 20
        s.settimeout(0.2)
        got = b""
        while time.monotonic() < deadline and not got:
            with contextlib.suppress(TimeoutError):
                s.sendall(b"1\r\n\n\r\n")
                got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 408"), got[:100]
    assert _refusals(short, "body_timeout") == before + 1


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (192, 192))


def test_a_connection_flood_under_a_low_fd_limit_leaves_metrics_reachable() -> None:
    """300 idle connections against an exporter whose open-file limit is 192: the cap (lowered to
    fit, said in one line) closes the least recently active ones; /metrics still answers, stderr
    stays small."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{port}", "--no-stdin",
                             "--http-ingest", "--gpu", "off"], cwd=str(ROOT), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_low_fd_limit)
    e = Exporter.__new__(Exporter)
    e.port, e.url, e.proc = port, f"http://127.0.0.1:{port}", proc
    socks: list[socket.socket] = []
    try:
        e.wait_ready()
        for _ in range(300):
            with contextlib.suppress(OSError):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        code = http_get(e.url + "/metrics", timeout=10)[0]
        assert code == 200
        assert _refusals(e, "connections") >= 300 - 192
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(20)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert b"allows" in err and len(err) < 20_000, err[-2000:]


# -- malformed requests and odd tokens --------------------------------------------------------------

def test_malformed_requests_log_one_short_line_per_kind() -> None:
    """200 malformed requests: each 400, and stderr gets at most a few one-line JSON records."""
    with Exporter("--no-stdin", "--http-ingest", stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        for i in range(200):
            with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header Line " + str(i).encode() + b"\r\n\r\n")
                assert b" 400 " in s.recv(100)
        assert http_get(e.url + "/healthz")[0] == 200
        assert e.stop() == 0
        err = e.stderr_text()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len([ln for ln in lines if "aiohttp" in ln]) <= 2, err[-3000:]


def test_a_non_ascii_bearer_token_is_401_not_500() -> None:
    with Exporter("--no-stdin", "--http-ingest", "--http-ingest-token", "tok", stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
            s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      b"Authorization: Bearer t\xc3\xb6k\xff\r\n\r\n{}")
            assert s.recv(100).startswith(b"HTTP/1.1 401")


# -- basic auth under a wrong-password flood; health probes ----------------------------------------

async def test_remembered_credentials_do_not_queue_behind_a_wrong_password_flood(pw_hash: str) -> None:
    """While bcrypt checks of wrong passwords are stuck, a remembered good login is still answered
    (on main it queued behind them); past --web-auth-queue, wrong ones get False at once, counted."""
    auth = BasicAuth({"alice": pw_hash}, max_pending=8)
    good = _basic("alice", PASSWORD)
    assert await auth.verify(good)  # remembered from now on
    release = threading.Event()
    real = bcrypt.checkpw

    def stuck(pw: bytes, hashed: bytes) -> bool:
        release.wait(30)
        return real(pw, hashed)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bcrypt, "checkpw", stuck)
        flood = [asyncio.ensure_future(auth.verify(_basic("alice", f"wrong{i}"))) for i in range(300)]
        await asyncio.sleep(0)
        try:
            assert await asyncio.wait_for(auth.verify(good), 5)
            assert auth.refusals.counts["auth_queue"] >= 300 - 8
        finally:
            release.set()
        assert not any(await asyncio.gather(*flood))
    auth.close()


def _health(port: int, env_listen: bool = True) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "llm_exporter", "healthcheck"]
    env = None
    if env_listen:
        import os
        env = {**os.environ, "LLM_EXPORTER_LISTEN": f"127.0.0.1:{port}"}
    else:
        args += ["--listen", f"127.0.0.1:{port}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=str(ROOT), env=env)


@pytest.mark.parametrize("mode", ["plain", "basic", "tls", "tls+basic", "mtls"])
def test_healthcheck_passes_in_every_web_config_mode(tmp_path: Path, pki: dict[str, Path], pw_hash: str,
                                                     mode: str) -> None:
    """`llm-exporter healthcheck` (the image's HEALTHCHECK) passes with no web-config, basic auth,
    TLS, TLS with basic auth and required client certificates; /healthz needs no credentials."""
    text = ""
    if "tls" in mode:
        text += f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
        if mode == "mtls":
            text += f"  client_ca_file: {pki['ca.crt']}\n  client_auth_type: RequireAndVerifyClientCert\n"
    if "basic" in mode:
        text += f"basic_auth_users:\n  alice: '{pw_hash}'\n"
    args = ["--no-stdin", "--http-ingest"]
    if text:
        cfg = tmp_path / "web.yml"
        cfg.write_text(text)
        args += ["--web-config", str(cfg)]
    with Exporter(*args, stdin=subprocess.DEVNULL) as e:
        deadline = time.monotonic() + 30
        while True:
            r = _health(e.port, env_listen=mode != "plain")
            if r.returncode == 0 or time.monotonic() > deadline or e.proc.poll() is not None:
                break
            time.sleep(0.2)
        assert r.returncode == 0, r.stdout + r.stderr + e.stderr_text()
        if mode in ("basic", "tls+basic"):
            scheme = "https" if "tls" in mode else "http"
            ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{e.port}/readyz", timeout=5,
                                        context=ctx if scheme == "https" else None) as resp:
                assert resp.status == 200
    r = _health(e.port)
    assert r.returncode == 1 and "unhealthy" in r.stderr


def test_a_piped_stdin_that_is_not_read_is_said_at_start() -> None:
    """`app | llm-exporter --http-ingest` does not read stdin (another source is given): one warning
    line says so and names --stdin, instead of the app blocking unannounced after 64 KiB."""
    with Exporter("--http-ingest", "--gpu", "off") as e:  # stdin is a pipe from the test
        e.wait_ready()
        assert e.stop() == 0
        err = e.stderr_text()
    warned = [ln for ln in err.splitlines() if "stdin is a pipe but is not read" in ln]
    assert len(warned) == 1 and "--stdin" in warned[0], err


# -- /ingest: memory in proportion to the body, parsing off the event loop, per-line limit ----------

def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


@pytest.mark.parametrize("shape", ["ndjson", "array"])
def test_a_push_of_tiny_objects_costs_memory_in_proportion_to_its_bytes(shape: str) -> None:
    """256 KiB of `{}` objects (87,381 lines): the peak RSS grows by less than 48 MiB (on main:
    about 350 MB, each object re-serialised into a buffer of several KiB), and every line is counted."""
    n = (256 << 10) // 3
    body = b"{}\n" * n if shape == "ndjson" else b"[" + b",".join([b"{}"] * n) + b"]"
    with Exporter("--http-ingest", "--no-stdin", "--gpu", "off", stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        e.samples()  # the first scrape's own allocations happen before the baseline
        before = _peak_rss_mib(e.proc.pid)
        req = urllib.request.Request(e.url + "/ingest", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 204
        samples = e.wait_lines(n, timeout=120)
        grown = _peak_rss_mib(e.proc.pid) - before
    assert total(samples, "llm_exporter_lines_total", source="http") == n
    assert grown < 48, f"peak RSS grew by {grown:.0f} MiB for a 256 KiB push"


def test_each_ingest_line_is_held_to_max_line_bytes() -> None:
    """--max-line-bytes 1000: the 5,000-byte line of a push is `too_long`, its neighbours are counted."""
    small = b'{"request_id":"a","model":"m","status":"success","duration_ms":5}'
    big = b'{"request_id":"b","model":"m","status":"success","duration_ms":5,"pad":"' + b"x" * 5000 + b'"}'
    with Exporter("--http-ingest", "--no-stdin", "--gpu", "off", "--max-line-bytes", "1000",
                  stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        req = urllib.request.Request(e.url + "/ingest", data=small + b"\n" + big + b"\n" + small + b"\n",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204
        s = e.wait_lines(3)
    assert total(s, "llm_exporter_lines_total", source="http", outcome="too_long") == 1
    assert total(s, "llm_exporter_lines_total", source="http", outcome="record") == 2


async def test_a_push_is_parsed_off_the_event_loop() -> None:
    """The body is judged and its lines queued on the ingest threads, never on the loop's thread."""
    from aiohttp.test_utils import TestClient, TestServer

    from llm_exporter.metrics import LLMMetrics
    from llm_exporter.pipeline import Pipeline
    from llm_exporter.sources import http_push
    from llm_exporter.worker import Worker

    seen: list[str] = []
    real = http_push.orjson.loads

    def spy(data: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(data)

    metrics = LLMMetrics()
    worker = Worker(Pipeline(metrics))
    ingest = http_push.Ingest(worker, metrics.source, None, 1 << 20, read_timeout=60.0, concurrency=4)
    app = web.Application()
    app.add_routes(ingest.routes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(http_push.orjson, "loads", spy)
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/ingest", data=b'{"a": 1}\n{"log": "x"}\n')
            assert r.status == 204
    worker.stop()
    assert seen and all(name.startswith("ingest") for name in seen), seen
