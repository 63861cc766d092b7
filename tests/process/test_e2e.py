"""End to end: the real process, real pipes, real HTTP, compared with an independent count."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workload import count
from tests.helpers import (
    ROOT,
    Exporter,
    app_logs,
    assert_matches_count,
    exporter,
    http_get,
    parse_metrics,
    tool,
    total,
)


def test_pipe_20k_app_lines_passthrough_and_exact_counts(tmp_path: Path) -> None:
    """20,000 application log lines: byte-identical passthrough; every figure equals an independent count."""
    data = app_logs(20000, 11)
    want = count(data)
    assert want.access and want.errors and want.finish and want.text
    out = tmp_path / "out.log"
    with out.open("wb") as fh, exporter(stdout=fh) as e:
        e.wait_ready()
        # write in odd-sized pieces so lines split across reads
        for i in range(0, len(data), 7919):
            e.stdin.write(data[i:i + 7919])
        e.stdin.flush()
        s = e.wait_lines(want.lines)
        text = e.scrape()
        e.stdin.close()
        assert e.proc.wait(20) == 0
    assert out.read_bytes() == data
    assert total(s, "llm_exporter_bytes_total") == len(data)
    assert_matches_count(s, want)
    r = subprocess.run([tool("promtool"), "check", "metrics"], input=text.encode(), capture_output=True)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_stdin_from_a_regular_file(tmp_path: Path) -> None:
    """`llm-exporter < file.log` reads the file to EOF, passes it through and exits 0."""
    data = app_logs(3000, 2) + b'{"latency_ms": 5}'  # last line without a newline
    src = tmp_path / "in.log"
    src.write_bytes(data)
    out = tmp_path / "out.log"
    with src.open("rb") as fin, out.open("wb") as fout, exporter("--shutdown-grace", "0", stdin=fin, stdout=fout) as e:
        assert e.proc.wait(30) == 0
    assert out.read_bytes() == data


def test_crlf_partial_and_too_long_lines_keep_passthrough_exact(tmp_path: Path) -> None:
    """CRLF, an over-long line and a split line are counted right and passed through unchanged."""
    big = b'{"latency_ms": 1, "pad": "' + b"x" * 5000 + b'"}\n'
    data = b'{"latency_ms": 5}\r\n' + big + b'{"latency_ms":' + b' 7}\nplain\n'
    out = tmp_path / "out"
    with out.open("wb") as fh, exporter("--max-line-bytes", "1024", stdout=fh) as e:
        e.wait_ready()
        e.stdin.write(data)
        e.stdin.flush()
        s = e.wait_lines(4)
        e.stdin.close()
        assert e.proc.wait(10) == 0
    assert out.read_bytes() == data
    assert total(s, "llm_exporter_lines_total", outcome="record") == 2
    assert total(s, "llm_exporter_lines_total", outcome="too_long") == 1
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx(0.012)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_with_exit_0(sig: signal.Signals) -> None:
    """SIGTERM/SIGINT: graceful stop, exit 0, our own logs are JSON on stderr."""
    with exporter() as e:
        e.wait_ready()
        e.proc.send_signal(sig)
        assert e.proc.wait(10) == 0
        err = e.stderr_text().strip().splitlines()
        assert err and all(json.loads(line)["msg"] for line in err)
        assert e.proc.stdout is not None and e.proc.stdout.read() == b""


def test_http_endpoints() -> None:
    """healthz, readyz, landing page, OpenMetrics with exemplars, gzip."""
    with exporter() as e:
        e.wait_ready()
        e.stdin.write(b'{"request_id": "req-42", "latency_ms": 1500, "model": "m"}\n')
        e.stdin.flush()
        e.wait_lines(1)
        assert http_get(e.url + "/healthz")[0] == 200
        assert http_get(e.url + "/readyz")[0] == 200
        code, headers, body = http_get(e.url + "/")
        assert code == 200 and b"/metrics" in body and headers["Content-Type"].startswith("text/html")
        code, headers, body = http_get(e.url + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert b'# {request_id="req-42"} 1.5' in body and body.endswith(b"# EOF\n")
        code, headers, body = http_get(e.url + "/metrics", {"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        assert b"llm_requests_total" in gzip.decompress(body)
        code, headers, body = http_get(e.url + "/metrics")
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        summary = json.loads(http_get(e.url + "/api/summary")[2])
        assert summary["last_minute"]["requests_per_second"] > 0


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "llm_exporter", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=30)


@pytest.mark.parametrize("args", [["--bogus"], ["--listen", "nope"], ["--format", "nonesuch"],
                                  ["--file-start", "middle"], ["--"]])
def test_bad_flag_is_one_line_and_exit_1(args: list[str]) -> None:
    """A bad flag or value: one clear line on stderr, no traceback, exit 1."""
    r = run_cli(*args)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-exporter: error:"), r.stderr


def test_bad_environment_value_is_one_line_and_exit_1() -> None:
    """LLM_EXPORTER_* values are validated like flags, and the error names the variable."""
    r = subprocess.run([sys.executable, "-m", "llm_exporter"], env={"LLM_EXPORTER_LISTEN": "x", "PATH": "/usr/bin"},
                       capture_output=True, cwd=ROOT, timeout=30)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    assert r.stderr.decode().startswith("llm-exporter: error: LLM_EXPORTER_LISTEN='x': expected HOST:PORT")


def test_port_in_use_is_one_line_and_exit_1() -> None:
    """A port already taken: one line naming --listen, exit 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1
    err = r.stderr.decode().strip().splitlines()
    assert err[-1].startswith("llm-exporter: error: --listen") and "Traceback" not in r.stderr.decode()


def test_replay_prints_exposition_and_summary(tmp_path: Path) -> None:
    """replay: the exposition on stdout, lines per outcome and first rejects on stderr."""
    f = tmp_path / "a.log"
    f.write_bytes(b'{"latency_ms": 100, "model": "m"}\nhello world\n{"latency_ms": -1}\n')
    r = run_cli("replay", str(f))
    assert r.returncode == 0
    s = parse_metrics(r.stdout.decode())
    assert total(s, "llm_requests_total") == 1
    err = r.stderr.decode()
    assert "record=1" in err and "unparsed=1" in err and "invalid=1" in err
    assert "file:2: unparsed/no_adapter: hello world" in err
    assert "file:3: invalid/bad_value" in err


def test_replay_of_a_missing_file_is_one_line() -> None:
    """replay on a missing file: one line, exit 1."""
    r = run_cli("replay", "/nonexistent/x.log")
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1


def test_schema_prints_the_accepted_line_json_schema() -> None:
    """`schema` prints a JSON Schema of the field names an application's line may carry."""
    r = run_cli("schema")
    assert r.returncode == 0
    sch = json.loads(r.stdout)
    assert {"duration", "latency_ms", "input_tokens", "status", "ttft_s"} <= set(sch["properties"])


def test_stop_while_reading_does_not_lose_passthrough(tmp_path: Path) -> None:
    """SIGTERM mid-stream: what was read was passed through in full."""
    out = tmp_path / "o"
    with out.open("wb") as fh, Exporter(stdout=fh) as e:
        e.wait_ready()
        e.stdin.write(b'{"latency_ms": 1}\n' * 1000)
        e.stdin.flush()
        e.wait_lines(1000)
        e.proc.send_signal(signal.SIGTERM)
        assert e.proc.wait(10) == 0
    assert out.read_bytes() == b'{"latency_ms": 1}\n' * 1000


def test_demo_app_output_is_understood() -> None:
    """The bundled demo app's lines are records, text lines unparsed, nothing invalid."""
    demo = subprocess.run([sys.executable, str(ROOT / "examples" / "demo_app.py"), "--rate", "0", "--count", "500",
                           "--seed", "1"], capture_output=True, check=True, timeout=30).stdout
    r = run_cli("replay", "-", stdin=demo)
    s = parse_metrics(r.stdout.decode())
    n_text = sum(1 for ln in demo.split(b"\n")[:-1] if not ln.startswith(b"{"))
    n_access = sum(1 for ln in demo.split(b"\n")[:-1] if ln.startswith(b"INFO:     ") and b'HTTP/1.1" ' in ln)
    assert total(s, "llm_http_requests_total") == n_access  # uvicorn access lines are records
    n_text -= n_access
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == n_text
    assert total(s, "llm_exporter_lines_total", outcome="record") == 500 - n_text
    assert total(s, "llm_exporter_lines_total", outcome="invalid") == 0


def test_regular_file_on_stdin_is_never_dropped(tmp_path: Path) -> None:
    """A file on stdin has no writer to stall: every line is parsed, none dropped, even with a tiny queue."""
    data = app_logs(20000, 4)
    src = tmp_path / "in.log"
    src.write_bytes(data)
    with src.open("rb") as fin, exporter("--queue-chunks", "1", "--shutdown-grace", "5", stdin=fin,
                                         stdout=subprocess.DEVNULL) as e:
        e.wait_ready(path="/healthz")
        s = e.wait_lines(20000)
        assert e.proc.wait(30) == 0
    assert total(s, "llm_exporter_lines_total", outcome="dropped") == 0
    assert total(s, "llm_exporter_lines_total") == 20000
