"""Wrapper mode: real child processes, byte-exact passthrough, exit codes, signal forwarding."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Exporter, free_port, total

LINE = '{"request_id":"r%d","model":"m","status":"success","duration_ms":%d,"output_tokens":%d}'


def run_wrapped(*child: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    args = [sys.executable, "-m", "llm_exporter", "--listen", f"127.0.0.1:{free_port()}", "--", *child]
    return subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_child_output_passes_through_byte_exact_and_the_exit_code_is_kept(tmp_path: Path) -> None:
    """stdout and stderr reach ours unchanged (binary, CRLF, no final newline); exit 7 gives 7."""
    out = b"".join(b"%b\n" % (LINE % (i, i, i)).encode() for i in range(2000)) + b"\xff\x00 crlf\r\ntail"
    err = b"warning: something\nERROR boom\r\n"
    (tmp_path / "out").write_bytes(out)
    (tmp_path / "err").write_bytes(err)
    script = f"import sys; sys.stdout.buffer.write(open({str(tmp_path / 'out')!r},'rb').read()); " \
             f"sys.stderr.buffer.write(open({str(tmp_path / 'err')!r},'rb').read()); sys.exit(7)"
    r = run_wrapped(sys.executable, "-c", script)
    assert r.returncode == 7
    assert r.stdout == out
    assert err in r.stderr  # our own JSON logs are on stderr too, as whole lines around it


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_child_killed_by_a_signal_gives_128_plus_n(sig: int) -> None:
    """A child that dies of signal N makes us exit 128+N."""
    r = run_wrapped(sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(sig)})")
    assert r.returncode == 128 + sig


def test_an_unknown_command_is_one_line_and_exit_1() -> None:
    """A command that cannot start is a start-up error."""
    r = run_wrapped("/nonexistent/program")
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines()[-1].startswith("llm-exporter: error: cannot run")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_are_forwarded_to_the_child(sig: int, tmp_path: Path) -> None:
    """The child receives the signal we got; its exit code (here 40+N) becomes ours."""
    ready = tmp_path / "ready"
    child = (f"import os, signal, sys, time\n"
             f"signal.signal({int(sig)}, lambda n, f: (print('got', n, flush=True), sys.exit(40 + n)))\n"
             f"open({str(ready)!r}, 'w').close()\n"
             f"time.sleep(60)\n")
    with Exporter("--", sys.executable, "-c", child, stdin=subprocess.DEVNULL) as e:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline and e.proc.poll() is None
            time.sleep(0.02)
        e.proc.send_signal(sig)
        assert e.proc.wait(20) == 40 + sig
        assert e.proc.stdout is not None
        assert e.proc.stdout.read() == f"got {int(sig)}\n".encode()


def test_lines_from_both_pipes_are_counted_before_exit(tmp_path: Path) -> None:
    """Every line of the child's stdout and stderr is counted (source stdout / stderr) before we exit."""
    n_out, n_err = 3000, 700
    child = (f"import sys\n"
             f"for i in range({n_out}): print({LINE!r} % (i, 10 + i % 50, 1 + i % 9))\n"
             f"for i in range({n_err}): print('plain text', i, file=sys.stderr)\n"
             f"sys.stdout.flush(); sys.stderr.flush()\n"
             f"import time; time.sleep(60)\n")
    # a queue longer than the child's writes: nothing can be dropped, whatever the machine's load
    with Exporter("--queue-chunks", "100000", "--", sys.executable, "-c", child, stdin=subprocess.DEVNULL,
                  stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        s = e.wait_lines(n_out + n_err)
        assert total(s, "llm_exporter_lines_total", source="stdout") == n_out
        assert total(s, "llm_exporter_lines_total", source="stderr") == n_err
        assert total(s, "llm_exporter_lines_total", source="stdout", outcome="record") == n_out
        assert total(s, "llm_requests_total") == n_out
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(1 + i % 9 for i in range(n_out))
        e.proc.terminate()
        assert e.proc.wait(20) == 128 + signal.SIGTERM


def test_exporter_stays_up_serving_metrics_while_the_child_runs() -> None:
    """/metrics answers, with the child's lines counted, while the child runs; then the daemon exits 0."""
    child = "import sys, time; print('{\"latency_ms\": 5}', flush=True); sys.stdin.read()"
    with Exporter("--", sys.executable, "-c", child) as e:
        e.wait_ready()
        s = e.wait_lines(1)
        assert e.proc.poll() is None  # still running: the child waits for its stdin to close
        assert total(s, "llm_exporter_lines_total", source="stdout", outcome="record") == 1
        e.stdin.close()
        assert e.proc.wait(20) == 0
