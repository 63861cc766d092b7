"""Stopping always ends, with the right code: a child that ignores SIGTERM, SIGHUP storms while the
child exits, a --state-dir that cannot be written, oversized configs; and wrapper mode's stderr keeps
whole lines when our own log lines meet the child's. Real processes on loopback, bounded in time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Exporter

IGNORE_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "print('ready', flush=True); time.sleep(600)")


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    """SIGTERM to us, the child ignores it: after --command-kill-after it gets SIGKILL and we exit
    with 137 (128+9), saying why in one line."""
    with Exporter("--gpu", "off", "--command-kill-after", "1", "--", sys.executable, "-c", IGNORE_TERM,
                  stdin=subprocess.DEVNULL) as e:
        assert e.proc.stdout is not None
        assert e.proc.stdout.readline() == b"ready\n"
        e.proc.send_signal(signal.SIGTERM)
        try:
            code = e.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail("the exporter is still up 60 s after SIGTERM, held by a child that ignores it")
        err = e.stderr_text()
    assert code == 137, err
    assert "SIGKILL" in err


@pytest.mark.parametrize("run", range(3))
def test_sighup_storm_while_the_child_exits_keeps_the_childs_exit_code(run: int) -> None:
    """SIGHUP every 2 ms from before the child ends until we are gone: we exit with the child's
    code (3), never killed by SIGHUP (on main: 5 of 5 runs ended by the signal)."""
    child = ("import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); print('ready', flush=True); "
             "time.sleep(1); raise SystemExit(3)")
    with Exporter("--gpu", "off", "--", sys.executable, "-c", child, stdin=subprocess.DEVNULL) as e:
        assert e.proc.stdout is not None
        assert e.proc.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 60
        while e.proc.poll() is None and time.monotonic() < deadline:
            try:
                e.proc.send_signal(signal.SIGHUP)
            except ProcessLookupError:
                break
            time.sleep(0.002)
        assert e.proc.wait(30) == 3, e.stderr_text()[-2000:]


def test_a_state_dir_that_cannot_be_written_at_stop_is_one_line_and_exit_0(tmp_path: Path) -> None:
    """The final checkpoint fails (its temporary file cannot be created): one error line, no
    traceback, exit 0 (on main: a traceback and exit 1)."""
    state = tmp_path / "state"
    with Exporter("--gpu", "off", "--state-dir", str(state)) as e:
        e.wait_ready()
        (state / f".state.json.{e.proc.pid}.tmp").mkdir()  # os.open(O_WRONLY) on it: EISDIR
        e.stdin.write(b'{"request_id":"a","model":"m","status":"success","duration_ms":5}\n')
        e.stdin.flush()
        e.wait_lines(1)
        code = e.stop(timeout=30)
        err = e.stderr_text()
    assert code == 0, err
    assert "Traceback" not in err
    assert any("final state checkpoint failed" in ln for ln in err.splitlines()), err


def test_an_oversized_config_is_refused_unread(tmp_path: Path) -> None:
    """A 2 MiB --config (over the 1 MiB default) is one line naming --config-max-bytes, exit 1,
    without parsing it (on main it was parsed: 10 MB took minutes)."""
    cfg = tmp_path / "big.yml"
    cfg.write_text("metrics:\n" + "".join(f"  - {{name: m{i}, type: gauge, path: f{i}}}\n" for i in range(50_000)))
    assert cfg.stat().st_size > 2 << 20
    with Exporter("--gpu", "off", "--config", str(cfg), stdin=subprocess.DEVNULL) as e:
        assert e.proc.wait(60) == 1
        err = e.stderr_text().strip()
    assert len(err.splitlines()) == 1 and "--config-max-bytes" in err, err


def test_a_config_may_define_at_most_500_metrics(tmp_path: Path) -> None:
    from llm_exporter.config import load_config
    from llm_exporter.problems import ConfigError

    cfg = tmp_path / "many.yml"
    cfg.write_text("metrics:\n" + "".join(f"  - {{name: m{i}, type: gauge, path: f{i}}}\n" for i in range(501)))
    with pytest.raises(ConfigError, match="at most 500"):
        load_config(cfg)


def test_wrapper_stderr_lines_stay_whole_under_a_sighup_storm() -> None:
    """The child writes each stderr line in two pieces with a pause between; 40 SIGHUPs make us log
    'reloaded' meanwhile. Every stderr line is then either one of the child's lines, whole, or one
    of ours, whole JSON (on main our lines landed inside the child's)."""
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
             "print('ready', flush=True)\n"
             "for i in range(150):\n"
             "    sys.stderr.write(f'child line {i} first half'); sys.stderr.flush(); time.sleep(0.01)\n"
             "    sys.stderr.write(' second half\\n'); sys.stderr.flush()\n")
    with Exporter("--gpu", "off", "--", sys.executable, "-c", child, stdin=subprocess.DEVNULL) as e:
        assert e.proc.stdout is not None
        assert e.proc.stdout.readline() == b"ready\n"
        for _ in range(40):
            if e.proc.poll() is not None:
                break
            e.proc.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        assert e.proc.wait(60) == 0
        err = e.stderr_text()
    child_lines = 0
    for line in err.splitlines():
        if line.startswith("child line "):
            assert line.endswith(" first half second half"), line
            child_lines += 1
        else:
            assert json.loads(line)["logger"].startswith("llm_exporter"), line
    assert child_lines == 150
    assert err.count('"msg":"reloaded"') >= 1
