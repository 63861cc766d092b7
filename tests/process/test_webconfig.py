"""--web-config: TLS, client certificates and basic auth on a real exporter process."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llm_exporter.problems import WebConfigError
from llm_exporter.webconfig import BasicAuth, load_web_config
from tests.helpers import Exporter
from tests.tlsutil import PASSWORD
from tests.tlsutil import basic as _basic


def _client_ctx(pki: dict[str, Path], cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    if cert:
        ctx.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    return ctx


def _get(url: str, ctx: ssl.SSLContext | None = None, auth: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(e: Exporter, url: str, ctx: ssl.SSLContext | None = None, auth: str | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if e.proc.poll() is not None:
            raise AssertionError(f"exporter exited {e.proc.returncode}: {e.stderr_text()}")
        with contextlib.suppress(OSError):
            _get(url + "/healthz", ctx, auth)
            return
        time.sleep(0.05)
    raise AssertionError("exporter did not come up")


def _write_cfg(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "web.yml"
    p.write_text(text)
    return p


def test_serves_metrics_over_tls_to_a_verifying_client(tmp_path: Path, pki: dict[str, Path]) -> None:
    """A TLS client that trusts only the test CA scrapes /metrics; plain HTTP to that port gets nothing."""
    cfg = _write_cfg(tmp_path, f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
                               f"  key_file: {pki['server.key']}\n  min_version: TLS12\n")
    with Exporter("--web-config", str(cfg)) as e:
        https = f"https://127.0.0.1:{e.port}"
        _wait(e, https, _client_ctx(pki))
        code, body = _get(https + "/metrics", _client_ctx(pki))
        assert code == 200 and b"llm_exporter_build_info" in body
        # a client that does not trust the CA refuses the server
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(https + "/metrics", ssl.create_default_context())
        # plain HTTP to the TLS port: no HTTP answer at all
        conn = http.client.HTTPConnection("127.0.0.1", e.port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/metrics")
            conn.getresponse()
        conn.close()
        assert e.stop() == 0


def test_tls_1_3_minimum_refuses_a_tls_1_2_client(tmp_path: Path, pki: dict[str, Path]) -> None:
    """min_version TLS13 turns away a client that speaks at most TLS 1.2."""
    cfg = _write_cfg(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                               "  min_version: TLS13\n")
    for n in ("server.crt", "server.key"):  # relative to the web-config file
        (tmp_path / n).write_bytes(pki[n].read_bytes())
    with Exporter("--web-config", str(cfg)) as e:
        https = f"https://127.0.0.1:{e.port}"
        _wait(e, https, _client_ctx(pki))
        old = _client_ctx(pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, urllib.error.URLError)):
            _get(https + "/healthz", old)
        assert _get(https + "/healthz", _client_ctx(pki))[0] == 200


def test_client_certificate_is_required_when_configured(tmp_path: Path, pki: dict[str, Path]) -> None:
    """RequireAndVerifyClientCert: without a certificate signed by the client CA, no response."""
    cfg = _write_cfg(tmp_path, f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
                               f"  key_file: {pki['server.key']}\n  client_ca_file: {pki['ca.crt']}\n"
                               "  client_auth_type: RequireAndVerifyClientCert\n")
    with Exporter("--web-config", str(cfg)) as e:
        https = f"https://127.0.0.1:{e.port}"
        _wait(e, https, _client_ctx(pki, cert=True))
        assert _get(https + "/metrics", _client_ctx(pki, cert=True))[0] == 200
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _get(https + "/metrics", _client_ctx(pki))


def test_basic_auth_guards_every_endpoint(tmp_path: Path, pki: dict[str, Path], pw_hash: str) -> None:
    """Right password: 200; wrong password, unknown user or no header: 401 on every path but the
    health probes, over TLS; /healthz and /readyz answer without credentials (a documented choice)."""
    cfg = _write_cfg(tmp_path, f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
                               f"  key_file: {pki['server.key']}\n"
                               f"basic_auth_users:\n  alice: '{pw_hash}'\n"
                               "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    ctx = _client_ctx(pki)
    with Exporter("--web-config", str(cfg)) as e:
        https = f"https://127.0.0.1:{e.port}"
        _wait(e, https, ctx)
        good = _basic("alice", PASSWORD)
        for path in ("/healthz", "/readyz"):
            assert _get(https + path, ctx)[0] == 200, path
            assert _get(https + path, ctx, _basic("alice", "wrong"))[0] == 200, path
        for path in ("/metrics", "/", "/api/summary"):
            assert _get(https + path, ctx, good)[0] == 200, path
            assert _get(https + path, ctx, _basic("alice", "wrong"))[0] == 401, path
            assert _get(https + path, ctx, _basic("bob", PASSWORD))[0] == 401, path
            assert _get(https + path, ctx)[0] == 401, path
        assert _get(https + "/metrics", ctx, "Basic !!notbase64")[0] == 401
        req = urllib.request.Request(https + "/metrics", headers={"Authorization": good})
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            assert r.headers["X-Frame-Options"] == "deny"
        assert e.stop() == 0


def test_basic_auth_without_tls(tmp_path: Path, pw_hash: str) -> None:
    """basic_auth_users alone works on plain HTTP (behind a TLS-terminating proxy)."""
    cfg = _write_cfg(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n")
    with Exporter("--web-config", str(cfg)) as e:
        _wait(e, e.url)
        assert _get(e.url + "/metrics")[0] == 401
        assert _get(e.url + "/metrics", None, _basic("alice", PASSWORD))[0] == 200


@pytest.mark.parametrize(("text", "needle"), [
    ("basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /no.key\n", "cert_file/key_file"),
    ("tls_srever_config: {}\n", "tls_srever_config"),
    ("tls_server_config: [unclosed\n", "not valid YAML"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n", "min_version"),
])
def test_bad_web_config_is_one_line_and_exit_1(tmp_path: Path, text: str, needle: str) -> None:
    """A mistake in the web-config file stops start-up with exit 1 and one line naming it."""
    cfg = _write_cfg(tmp_path, text)
    with Exporter("--web-config", str(cfg)) as e:
        assert e.proc.wait(15) == 1
        err = e.stderr_text().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("llm-exporter: error: --web-config") and needle in err, err


def test_client_auth_needs_a_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    """Asking for verified client certificates without client_ca_file is refused at load time."""
    cfg = _write_cfg(tmp_path, f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
                               f"  key_file: {pki['server.key']}\n"
                               "  client_auth_type: VerifyClientCertIfGiven\n")
    with pytest.raises(WebConfigError, match="needs client_ca_file"):
        load_web_config(cfg)


def test_successful_checks_are_cached_and_failures_are_not(pw_hash: str) -> None:
    """bcrypt runs once for repeated right credentials, every time for wrong ones."""
    auth = BasicAuth({"alice": pw_hash})

    async def go() -> list[bool]:
        return [await auth.verify(_basic("alice", PASSWORD)) for _ in range(3)] + \
               [await auth.verify(_basic("alice", "nope")) for _ in range(2)] + \
               [await auth.verify(_basic("mallory", "x"))]

    assert asyncio.run(go()) == [True, True, True, False, False, False]
    assert auth.bcrypt_checks == 1 + 2 + 1


def test_ssl_port_refuses_raw_bytes_without_crashing(tmp_path: Path, pki: dict[str, Path]) -> None:
    """Garbage on the TLS port closes that connection only; the server keeps serving."""
    cfg = _write_cfg(tmp_path, f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
                               f"  key_file: {pki['server.key']}\n")
    with Exporter("--web-config", str(cfg)) as e:
        https = f"https://127.0.0.1:{e.port}"
        _wait(e, https, _client_ctx(pki))
        with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
            s.sendall(b"\x00" * 64 + b"GET / HTTP/1.0\r\n\r\n")
            with contextlib.suppress(OSError):
                assert not s.recv(100).startswith(b"HTTP/1.")
        assert _get(https + "/healthz", _client_ctx(pki))[0] == 200


def test_ingest_takes_its_bearer_token_beside_basic_auth(tmp_path: Path, pw_hash: str) -> None:
    """With basic auth on, /ingest accepts its own bearer token; without either it is 401."""
    cfg = _write_cfg(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n")
    body = b'{"request_id":"i1","model":"m","status":"success","total_time_ms":12}\n'

    def post(auth: str | None) -> int:
        req = urllib.request.Request(f"{e.url}/ingest", data=body, method="POST",
                                     headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    with Exporter("--web-config", str(cfg), "--http-ingest", "--http-ingest-token", "tok-123",
                  "--no-stdin", stdin=subprocess.DEVNULL) as e:
        _wait(e, e.url)
        assert post(None) == 401
        assert post("Bearer wrong") == 401
        assert post(_basic("alice", PASSWORD)) == 401  # past basic auth, but /ingest wants its token
        assert post("Bearer tok-123") == 204
        assert _get(e.url + "/metrics")[0] == 401  # the ingest token opens /ingest only
        req = urllib.request.Request(e.url + "/metrics", headers={"Authorization": "Bearer tok-123"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)
        deadline = time.monotonic() + 10
        while b"llm_requests_total{" not in _get(e.url + "/metrics", None, _basic("alice", PASSWORD))[1]:
            assert time.monotonic() < deadline, "the ingested line was not counted"
            time.sleep(0.05)


def test_web_config_mistakes_name_the_file_and_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 and a wrong key each give one line (a reload keeps the old config)."""
    from llm_exporter.problems import WebConfigError
    from llm_exporter.webconfig import load_web_config

    bad = tmp_path / "latin1.yml"
    bad.write_bytes(b"basic_auth_users:\n  caf\xe9: x\n")
    with pytest.raises(WebConfigError, match="not UTF-8 text"):
        load_web_config(bad)
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n")
    with pytest.raises(WebConfigError, match=r"wrong\.yml:4: "):
        load_web_config(wrong)
