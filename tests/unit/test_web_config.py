"""--web-config in process: the file read into TLS and basic auth, real TLS handshakes on test
certificates made on the spot, the auth middleware on aiohttp's test server, and a reload."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
import threading
from contextlib import suppress
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from llm_exporter.problems import WebConfigError
from llm_exporter.webconfig import WebConfig, load_web_config
from tests.helpers import logged as log_records
from tests.tlsutil import PASSWORD, basic, make_pki

#: never reached when the code is right: it only turns a hang into a failure
GUARD = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A second CA with its own server and client certificates."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture(scope="module")
def pw_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def write(d: Path, text: str, name: str = "web.yml") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def tls_yaml(pki: dict[str, Path], extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n{extra}"


def client_ctx(pki: dict[str, Path], cert: dict[str, Path] | None = None, *,
               min_v: ssl.TLSVersion | None = None, max_v: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that trusts `pki`'s CA; with `cert`, it shows that PKI's client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    if cert is not None:
        ctx.load_cert_chain(cert["client.crt"], cert["client.key"])
    if min_v is not None:
        ctx.minimum_version = min_v
    if max_v is not None:
        ctx.maximum_version = max_v
    return ctx


async def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, bytes]:
    """A real TLS connection on 127.0.0.1: the version and the server certificate (DER) the client
    got, once the server has answered a byte (TLS 1.3 checks a client certificate after the
    client's side of the handshake is done). Raises on a refused handshake."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"!")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
    try:
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        try:
            if await reader.read(1) != b"!":
                raise ConnectionResetError("the server closed the connection")
            tls = writer.get_extra_info("ssl_object")
            return tls.version(), tls.getpeercert(binary_form=True)
        finally:
            writer.close()
            with suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    finally:
        srv.close()
        await srv.wait_closed()


async def refused(server: ssl.SSLContext, client: ssl.SSLContext) -> bool:
    try:
        await handshake(server, client)
    except (OSError, ssl.SSLError):
        return True
    return False


def der(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def one_line(e: pytest.ExceptionInfo[WebConfigError]) -> str:
    line = e.value.line()
    assert "\n" not in line
    return line




# -- TLS -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["relative", "absolute"])
async def test_tls_files_are_read_relative_to_the_web_config_file(
        tmp_path: Path, pki: dict[str, Path], where: str) -> None:
    """cert_file/key_file relative to the file's own folder (not the working directory), or
    absolute: the server shows that certificate to a client that trusts only the test CA."""
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(pki[name], conf / f"my-{name}")
    prefix = "" if where == "relative" else f"{conf}/"
    cfg = write(conf, f"tls_server_config:\n  cert_file: {prefix}my-server.crt\n  key_file: {prefix}my-server.key\n")
    wc = load_web_config(cfg)
    assert wc.ssl_context is not None and wc.auth is None and wc.headers == {}
    assert wc.cert_files == (str(conf / "my-server.crt"), str(conf / "my-server.key"))
    version, cert = await handshake(wc.ssl_context, client_ctx(pki))
    assert version == "TLSv1.3" and cert == der(pki["server.crt"])


async def test_min_and_max_version_bound_what_a_client_may_speak(tmp_path: Path, pki: dict[str, Path]) -> None:
    """The default minimum is TLS 1.2; min_version TLS13 turns a TLS 1.2 client away; max_version
    TLS12 serves TLS 1.2 and turns a TLS-1.3-only client away."""
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    default = load_web_config(write(tmp_path / "a", tls_yaml(pki))).ssl_context
    assert default is not None and default.minimum_version == v12
    assert (await handshake(default, client_ctx(pki, max_v=v12)))[0] == "TLSv1.2"
    min13 = load_web_config(write(tmp_path / "b", tls_yaml(pki, "  min_version: TLS13\n"))).ssl_context
    assert min13 is not None
    assert await refused(min13, client_ctx(pki, max_v=v12))
    assert (await handshake(min13, client_ctx(pki)))[0] == "TLSv1.3"
    max12 = load_web_config(write(tmp_path / "c", tls_yaml(pki, "  max_version: TLS12\n"))).ssl_context
    assert max12 is not None
    assert (await handshake(max12, client_ctx(pki)))[0] == "TLSv1.2"
    assert await refused(max12, client_ctx(pki, min_v=v13))


@pytest.mark.parametrize(("auth_type", "no_cert", "own_cert", "foreign_cert"), [
    # (client_auth_type line, a client without a certificate / with one of the client CA / of another CA)
    ("", False, True, False),  # client_ca_file alone: RequireAndVerifyClientCert
    ("  client_auth_type: RequireAndVerifyClientCert\n", False, True, False),
    ("  client_auth_type: VerifyClientCertIfGiven\n", True, True, False),
    ("  client_auth_type: NoClientCert\n", True, True, True),
])
async def test_client_certificates_are_asked_for_as_configured(
        tmp_path: Path, pki: dict[str, Path], other_pki: dict[str, Path],
        auth_type: str, no_cert: bool, own_cert: bool, foreign_cert: bool) -> None:
    cfg = write(tmp_path, tls_yaml(pki, f"  client_ca_file: {pki['ca.crt']}\n{auth_type}"))
    ctx = load_web_config(cfg).ssl_context
    assert ctx is not None
    got = [not await refused(ctx, client_ctx(pki, cert)) for cert in (None, pki, other_pki)]
    assert got == [no_cert, own_cert, foreign_cert]


@pytest.mark.parametrize("mode", ["RequestClientCert", "RequireAnyClientCert"])
def test_unverified_client_certificates_are_refused_with_what_to_use_instead(
        tmp_path: Path, pki: dict[str, Path], mode: str) -> None:
    cfg = write(tmp_path, tls_yaml(pki, f"  client_ca_file: {pki['ca.crt']}\n  client_auth_type: {mode}\n"))
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert one_line(e) == (
        f"--web-config {cfg}: tls_server_config: client_auth_type {mode}: unverified client certificates are "
        "not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file")


@pytest.mark.parametrize("mode", ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"])
def test_verifying_client_certificates_needs_a_client_ca(tmp_path: Path, pki: dict[str, Path], mode: str) -> None:
    cfg = write(tmp_path, tls_yaml(pki, f"  client_auth_type: {mode}\n"))
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert one_line(e) == f"--web-config {cfg}: tls_server_config: client_auth_type {mode} needs client_ca_file"


@pytest.mark.parametrize(("files", "reason"), [
    (("missing.crt", "server.key"), "cert_file/key_file: No such file or directory"),
    (("server.crt", "client.key"), r"cert_file/key_file: \[X509: KEY_VALUES_MISMATCH\] key values mismatch \(.*\)"),
    (("server.key", "server.key"), r"cert_file/key_file: \[SSL\] PEM lib \(.*\)"),
])
def test_unusable_certificate_files_are_one_line(
        tmp_path: Path, pki: dict[str, Path], files: tuple[str, str], reason: str) -> None:
    cert, key = (pki.get(f, tmp_path / f) for f in files)
    cfg = write(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert re.fullmatch(re.escape(f"--web-config {cfg}: tls_server_config: ") + reason, one_line(e))


@pytest.mark.parametrize(("ca", "reason"), [
    ("missing.crt", "client_ca_file: No such file or directory"),
    ("server.key", r"client_ca_file: \[X509: NO_CERTIFICATE_OR_CRL_FOUND\] no certificate or crl found \(.*\)"),
])
def test_an_unusable_client_ca_file_is_one_line(tmp_path: Path, pki: dict[str, Path], ca: str, reason: str) -> None:
    cfg = write(tmp_path, tls_yaml(pki, f"  client_ca_file: {pki.get(ca, tmp_path / ca)}\n"))
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert re.fullmatch(re.escape(f"--web-config {cfg}: tls_server_config: ") + reason, one_line(e))


@pytest.mark.parametrize(("extra", "named"), [
    ("", None),
    ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
    ("  curve_preferences: [X25519]\n  prefer_server_cipher_suites: false\n",
     "curve_preferences, prefer_server_cipher_suites"),
])
def test_exporter_toolkit_keys_left_to_openssl_are_named_in_one_warning(
        tmp_path: Path, pki: dict[str, Path], extra: str, named: str | None) -> None:
    """Accepted so that a file written for other exporters loads, and said once at load."""
    with log_records("llm_exporter.webconfig", logging.NOTSET) as logged:
        load_web_config(write(tmp_path, tls_yaml(pki, extra)))
    want = [] if named is None else [
        ("WARNING", f"web-config: {named} accepted but not applied (OpenSSL defaults are used)")]
    assert [(r.levelname, r.getMessage()) for r in logged] == want


# -- basic auth users ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "hunter2",  # plaintext
    "$2b$xx$" + "a" * 53,  # no cost
    "$2b$99$" + "a" * 53,  # a cost bcrypt refuses (and no start-up could afford)
    "$2b$03$" + "a" * 53,
    "$2b$32$" + "a" * 53,
    "$2x$10$" + "a" * 53,  # not a variant htpasswd or the bcrypt libraries write
    "$2b$10$" + "!" * 53,  # outside bcrypt's alphabet
    "$2b$10$" + "a" * 52,
])
def test_a_password_that_is_not_a_usable_bcrypt_hash_stops_start_up(tmp_path: Path, value: str) -> None:
    """Refused at load with one line naming the user, never the value; before, a hash of the
    right length and prefix was taken and then failed (HTTP 500) at every login of that user."""
    cfg = write(tmp_path, f"basic_auth_users:\n  alice: '{value}'\n")
    with pytest.raises(WebConfigError) as e:
        load_web_config(cfg)
    assert one_line(e) == (f"--web-config {cfg}:1: basic_auth_users: user 'alice': not a bcrypt hash "
                           "(plaintext passwords are refused)")


@pytest.mark.parametrize("variant", ["$2a$", "$2b$", "$2y$"])
async def test_each_bcrypt_variant_lets_its_user_in(tmp_path: Path, pw_hash: str, variant: str) -> None:
    """htpasswd writes `$2y$`, the bcrypt libraries `$2b$` (older ones `$2a$`): all three work."""
    wc = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{variant}{pw_hash[4:]}'\n"))
    assert wc.auth is not None and wc.ssl_context is None and wc.cert_files is None
    assert await wc.auth.verify(basic("alice", PASSWORD)) is True
    assert await wc.auth.verify(basic("alice", PASSWORD + "x")) is False
    wc.auth.close()


# -- the middleware on a real aiohttp server -------------------------------------------------------

def app_with(wc: WebConfig, ingest_token: str | None) -> web.Application:
    """Routes shaped like the exporter's: what they answer does not matter, the middleware does."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def framed(request: web.Request) -> web.Response:
        return web.Response(text="ok\n", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = web.Application()
    app.router.add_get("/metrics", ok)
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", ok)
    app.router.add_get("/page", framed)
    app.router.add_post("/ingest", ok)
    app.middlewares.append(wc.middleware(ingest_token))
    return app


HEADERS_YAML = "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n    X-Content-Type-Options: nosniff\n"


@pytest.mark.parametrize(("method", "path", "authorization", "status"), [
    ("GET", "/metrics", None, 401),
    ("GET", "/metrics", basic("alice", PASSWORD), 200),
    ("GET", "/metrics", basic("alice", "nope"), 401),
    ("GET", "/metrics", basic("bob", PASSWORD), 401),
    ("GET", "/healthz", None, 200),  # liveness and readiness answer without credentials
    ("GET", "/readyz", None, 200),
    ("GET", "/page", None, 401),
    ("POST", "/ingest", "Bearer push-token", 200),  # /ingest's own token stands in for basic auth
    ("POST", "/ingest", "bearer push-token", 200),
    ("POST", "/ingest", "Bearer push-token-2", 401),
    ("POST", "/ingest", "Bearer ", 401),
    ("POST", "/ingest", basic("alice", PASSWORD), 200),
    ("POST", "/ingest", None, 401),
    ("GET", "/metrics", "Bearer push-token", 401),  # the push token opens /ingest only
])
async def test_every_path_but_the_probes_needs_credentials(
        tmp_path: Path, pw_hash: str, method: str, path: str, authorization: str | None, status: int) -> None:
    """With the configured headers on every answer, a 401 included (it names the realm)."""
    wc = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n{HEADERS_YAML}"))
    assert wc.headers == {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with TestClient(TestServer(app_with(wc, "push-token"))) as client:
        r = await client.request(method, path, headers=headers)
        assert r.status == status
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
        if status == 401:
            assert r.headers["WWW-Authenticate"] == 'Basic realm="llm-exporter"'
            assert await r.text() == "401 Unauthorized\n"
        else:
            assert await r.text() == "ok\n"


async def test_without_a_push_token_ingest_takes_basic_auth_only(tmp_path: Path, pw_hash: str) -> None:
    wc = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n"))
    async with TestClient(TestServer(app_with(wc, None))) as client:
        assert (await client.post("/ingest", headers={"Authorization": "Bearer push-token"})).status == 401
        assert (await client.post("/ingest", headers={"Authorization": basic("alice", PASSWORD)})).status == 200


async def test_headers_alone_need_no_credentials_and_never_override_a_handlers_own(tmp_path: Path) -> None:
    """http_server_config without users: every answer carries the headers, except where a handler
    set that header itself (the page's own frame policy stays)."""
    wc = load_web_config(write(tmp_path, HEADERS_YAML))
    assert wc.auth is None and wc.ssl_context is None
    async with TestClient(TestServer(app_with(wc, None))) as client:
        r = await client.get("/metrics")
        assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
        r = await client.get("/page")
        assert r.status == 200 and r.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_over_https_with_basic_auth(tmp_path: Path, pki: dict[str, Path], pw_hash: str) -> None:
    wc = load_web_config(write(tmp_path, tls_yaml(pki) + f"basic_auth_users:\n  alice: '{pw_hash}'\n"))
    assert wc.ssl_context is not None and wc.auth is not None
    async with TestClient(TestServer(app_with(wc, None), ssl=wc.ssl_context)) as client:
        tls = client_ctx(pki)
        assert (await client.get("/metrics", ssl=tls)).status == 401
        r = await client.get("/metrics", ssl=tls, headers={"Authorization": basic("alice", PASSWORD)})
        assert r.status == 200


# -- reload ----------------------------------------------------------------------------------------

async def test_a_reload_replaces_users_and_headers_and_can_add_users(tmp_path: Path, pw_hash: str) -> None:
    """No users, then alice, then bob instead of alice: each re-read file decides the next request."""
    other = bcrypt.hashpw(b"bobs-pw", bcrypt.gensalt(rounds=4)).decode()
    wc = load_web_config(write(tmp_path, "http_server_config:\n  headers:\n    X-Gen: one\n"))
    async with TestClient(TestServer(app_with(wc, None))) as client:
        r = await client.get("/metrics")
        assert r.status == 200 and r.headers["X-Gen"] == "one"
        wc.update_from(load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n"
                                                       "http_server_config:\n  headers:\n    X-Gen: two\n")))
        r = await client.get("/metrics")
        assert r.status == 401 and r.headers["X-Gen"] == "two"
        assert (await client.get("/metrics", headers={"Authorization": basic("alice", PASSWORD)})).status == 200
        wc.update_from(load_web_config(write(tmp_path, f"basic_auth_users:\n  bob: '{other}'\n")))
        r = await client.get("/metrics", headers={"Authorization": basic("alice", PASSWORD)})
        assert r.status == 401 and "X-Gen" not in r.headers
        assert (await client.get("/metrics", headers={"Authorization": basic("bob", "bobs-pw")})).status == 200
    assert wc.auth is not None
    wc.auth.close()


async def test_a_reload_serves_the_new_certificate_on_new_connections(
        tmp_path: Path, pki: dict[str, Path], other_pki: dict[str, Path]) -> None:
    cfg = write(tmp_path, tls_yaml(pki))
    wc = load_web_config(cfg)
    assert wc.ssl_context is not None
    trust_both = client_ctx(pki)
    trust_both.load_verify_locations(cafile=str(other_pki["ca.crt"]))
    assert (await handshake(wc.ssl_context, trust_both))[1] == der(pki["server.crt"])
    wc.update_from(load_web_config(write(tmp_path, tls_yaml(other_pki))))
    assert (await handshake(wc.ssl_context, trust_both))[1] == der(other_pki["server.crt"])


def test_a_server_started_without_tls_stays_without_it(tmp_path: Path, pki: dict[str, Path]) -> None:
    """TLS settings are the ones it started with: a re-read file that has TLS changes nothing there
    (the reload itself refuses it; this is the web config's own rule)."""
    wc = load_web_config(write(tmp_path, HEADERS_YAML))
    wc.update_from(load_web_config(write(tmp_path, tls_yaml(pki))))
    assert wc.ssl_context is None and wc.headers == {}


async def test_checks_waiting_at_a_reload_are_answered_and_the_old_threads_end(
        tmp_path: Path, pw_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three scrapes whose passwords are being checked (two on bcrypt's threads, one waiting for a
    thread) when the users are replaced: the reload does not wait for them, each still gets its
    answer (before, the waiting one lost its connection), then the old checker's threads end and
    the new users decide."""
    gate, entered, finished = threading.Event(), threading.Semaphore(0), []
    threads: set[threading.Thread] = set()
    real = bcrypt.checkpw

    def held_check(password: bytes, hashed: bytes) -> bool:
        threads.add(threading.current_thread())
        entered.release()
        gate.wait(GUARD)
        finished.append(True)
        return real(password, hashed)

    cfg = write(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n")
    wc = load_web_config(cfg)
    old = wc.auth
    assert old is not None
    monkeypatch.setattr(bcrypt, "checkpw", held_check)
    async with TestClient(TestServer(app_with(wc, None))) as client:
        scrapes = [asyncio.ensure_future(client.get("/metrics", headers={"Authorization": basic("alice", PASSWORD)}))
                   for _ in range(3)]
        for _ in range(2):
            assert await asyncio.to_thread(entered.acquire, True, GUARD)
        while old.pending < 3:
            await asyncio.sleep(0.005)
        wc.update_from(load_web_config(write(tmp_path, "basic_auth_users:\n  bob: '" + pw_hash + "'\n")))
        assert finished == []  # the reload returned while the checks were still held
        gate.set()
        assert [(await s).status for s in scrapes] == [200, 200, 200]
        for t in threads:
            await asyncio.to_thread(t.join, GUARD)
            assert not t.is_alive()
        monkeypatch.setattr(bcrypt, "checkpw", real)
        assert (await client.get("/metrics", headers={"Authorization": basic("alice", PASSWORD)})).status == 401
        assert (await client.get("/metrics", headers={"Authorization": basic("bob", PASSWORD)})).status == 200
    assert wc.auth is not None
    wc.auth.close()


def test_a_reload_before_any_password_was_checked(tmp_path: Path, pw_hash: str) -> None:
    """The old checker never started its threads: nothing to end, the reload just applies."""
    wc = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: '{pw_hash}'\n"))
    new = load_web_config(write(tmp_path, f"basic_auth_users:\n  bob: '{pw_hash}'\n"))
    wc.update_from(new)
    assert wc.auth is new.auth
