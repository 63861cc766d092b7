"""Hot reload on a real process: SIGHUP and POST /-/reload re-read the files; a bad file changes nothing."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt

from tests.helpers import Exporter, http_get, parse_metrics, total
from tests.tlsutil import make_pki

LINE = b'{"request_id":"r","model":"m","status":"success","total_time_ms":20}\n'


def _post(url: str, ctx: ssl.SSLContext | None = None, auth: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=b"", method="POST", headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _until(cond: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _reload_state(e: Exporter) -> tuple[float, float]:
    s = e.samples()
    return (total(s, "llm_exporter_config_last_reload_successful"),
            total(s, "llm_exporter_config_last_reload_success_timestamp_seconds"))


def _feed(e: Exporter, n: int) -> None:
    e.stdin.write(LINE * n)
    e.stdin.flush()


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(tmp_path: Path) -> None:
    """SIGHUP re-reads --config; a broken file is refused with one log line; counters keep counting."""
    cfg = tmp_path / "config.yml"
    cfg.write_text("extra_labels: []\n")
    with Exporter("--no-passthrough", "--config", str(cfg)) as e:
        e.wait_ready()
        _feed(e, 10)
        e.wait_lines(10)
        ok, ts0 = _reload_state(e)
        assert ok == 1
        cfg.write_text("extra_labels: [unclosed\n")
        e.proc.send_signal(signal.SIGHUP)
        _until(lambda: _reload_state(e)[0] == 0, "bad config not reported")
        _feed(e, 5)
        s = e.wait_lines(15)
        assert total(s, "llm_requests_total") == 15  # the series kept their values and go on
        cfg.write_text("extra_labels: []\n")
        e.proc.send_signal(signal.SIGHUP)
        _until(lambda: _reload_state(e)[0] == 1, "good config not taken")
        assert _reload_state(e)[1] > ts0
        _feed(e, 5)
        assert total(e.wait_lines(20), "llm_requests_total") == 20
        assert e.stop() == 0
        logs = [json.loads(x) for x in e.stderr_text().splitlines()]
    failed = [x for x in logs if x["msg"].startswith("reload failed")]
    assert len(failed) == 1 and "not valid YAML" in failed[0]["msg"] and failed[0]["trigger"] == "SIGHUP"
    assert [x["trigger"] for x in logs if x["msg"] == "reloaded"] == ["SIGHUP"]


def test_sighup_without_config_does_not_kill_the_process() -> None:
    """SIGHUP's default action would end the process; here it is a harmless reload."""
    with Exporter("--no-passthrough") as e:
        e.wait_ready()
        e.proc.send_signal(signal.SIGHUP)
        _feed(e, 3)
        assert total(e.wait_lines(3), "llm_requests_total") == 3
        assert e.proc.poll() is None and e.stop() == 0


def test_http_reload_only_when_enabled(tmp_path: Path) -> None:
    """POST /-/reload: 404 by default; with --web-enable-reload 200, or 500 naming the bad file."""
    cfg = tmp_path / "c.yml"
    cfg.write_text("{}\n")
    with Exporter("--no-passthrough", "--config", str(cfg)) as e:
        e.wait_ready()
        assert _post(e.url + "/-/reload")[0] == 404
    with Exporter("--no-passthrough", "--config", str(cfg), "--web-enable-reload") as e:
        e.wait_ready()
        code, text = _post(e.url + "/-/reload")
        assert code == 200 and str(cfg) in text
        cfg.write_text("- a list\n- not a mapping\n")
        code, text = _post(e.url + "/-/reload")
        assert code == 500 and "expected a mapping" in text and len(text.strip().splitlines()) == 1
        assert _reload_state(e)[0] == 0
        assert http_get(e.url + "/metrics")[0] == 200


def test_bad_config_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """At start-up there is no old config to keep: a bad file is a start-up error."""
    cfg = tmp_path / "c.yml"
    cfg.write_text("key: [unclosed\n")
    with Exporter("--config", str(cfg)) as e:
        assert e.proc.wait(15) == 1
        err = e.stderr_text().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llm-exporter: error: --config") and "not valid YAML" in err[0]


def test_reload_rotates_basic_auth_users_and_certificates(tmp_path: Path) -> None:
    """A re-read web-config swaps passwords and the served certificate without a restart."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a, b = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    web = tmp_path / "web.yml"

    def write(pki: dict[str, Path], pw: str) -> str:
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
        web.write_text(f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
                       f"basic_auth_users:\n  alice: '{h}'\n")
        return "Basic " + base64.b64encode(f"alice:{pw}".encode()).decode()

    old = write(a, "old-pw")
    ctx_a = ssl.create_default_context(cafile=str(a["ca.crt"]))
    ctx_b = ssl.create_default_context(cafile=str(b["ca.crt"]))
    with Exporter("--no-passthrough", "--web-config", str(web), "--web-enable-reload") as e:
        https = f"https://127.0.0.1:{e.port}"

        def up() -> bool:
            try:
                return _post(https + "/-/reload", ctx_a, old)[0] == 200
            except OSError:
                return False

        _until(up, "exporter did not come up over TLS")
        new = write(b, "new-pw")
        code, _ = _post(https + "/-/reload", ctx_a, old)  # authorised by the running users
        assert code == 200
        code, _ = _post(https + "/-/reload", ctx_b, new)  # a new connection: new certificate, new user
        assert code == 200
        assert _post(https + "/-/reload", ctx_b, old)[0] == 401
        try:
            _post(https + "/-/reload", ctx_a, new)
            raise AssertionError("old certificate still served")
        except urllib.error.URLError as err:
            assert "CERTIFICATE_VERIFY_FAILED" in str(err)
        # a broken web-config on reload keeps users and certificate as they are
        web.write_text("basic_auth_users:\n  alice: plaintext\n")
        assert _post(https + "/-/reload", ctx_b, new)[0] == 500
        req = urllib.request.Request(https + "/metrics", headers={"Authorization": new})
        with urllib.request.urlopen(req, context=ctx_b, timeout=5) as r:
            assert parse_metrics(r.read().decode())[("llm_exporter_config_last_reload_successful", ())] == 0


def test_wrapper_mode_sighup_reloads_and_reaches_the_child(tmp_path: Path) -> None:
    """In wrapper mode SIGHUP reloads our config and is handed on to the child; /-/reload is ours alone."""
    import subprocess
    import sys

    cfg = tmp_path / "c.yml"
    cfg.write_text("{}\n")
    hups = tmp_path / "hups"
    child = ("import os, signal, time\n"
             f"signal.signal(signal.SIGHUP, lambda n, f: open({str(hups)!r}, 'a').write('hup\\n'))\n"
             f"open({str(hups)!r}, 'w').close()\n"
             "parent = os.getppid()\n"
             "while os.getppid() == parent: time.sleep(0.05)\n")
    with Exporter("--no-passthrough", "--config", str(cfg), "--web-enable-reload", "--", sys.executable, "-c",
                  child, stdin=subprocess.DEVNULL) as e:
        e.wait_ready()
        _until(hups.exists, "child did not start")
        ts0 = _reload_state(e)[1]
        e.proc.send_signal(signal.SIGHUP)
        _until(lambda: hups.read_text() == "hup\n", "child did not get the SIGHUP")
        _until(lambda: _reload_state(e)[1] > ts0, "SIGHUP did not reload our config")
        assert _post(e.url + "/-/reload")[0] == 200
        assert hups.read_text() == "hup\n"  # POST /-/reload never signals the child
        assert e.proc.poll() is None
        assert e.stop() == 128 + signal.SIGTERM  # SIGTERM went to the child too; its code is ours
