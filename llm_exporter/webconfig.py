"""TLS and basic auth from a Prometheus exporter-toolkit web-config file (`--web-config FILE`).

The file is the one the Prometheus exporters read::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the web-config file
      key_file: server.key
      client_ca_file: ca.crt         # optional; then client_auth_type defaults to RequireAndVerifyClientCert
      client_auth_type: NoClientCert # or VerifyClientCertIfGiven, RequireAndVerifyClientCert
      min_version: TLS12             # TLS10 .. TLS13
    basic_auth_users:
      alice: $2y$10$...              # bcrypt hashes only; plaintext is never stored or compared

`load_web_config` validates the file and builds what the server needs (an `ssl.SSLContext`, a
`BasicAuth` checker); anything wrong is a start-up error with one line. bcrypt costs about 0.1 s
per check, so a check runs on a small pool of its own (never the event loop, never the executor
other work waits on) and a successful one is remembered under a SHA-256 of the presented
credentials (never the password itself), as exporter-toolkit does. Remembered credentials are
answered on the event loop without queueing, so a flood of wrong passwords cannot slow an
authorised scrape; at most `max_pending` checks wait for the pool, further ones get 401 at once
(counted as `llm_exporter_limit_refusals_total{limit="auth_queue"}`).

`/healthz` and `/readyz` answer without credentials (they say only "ok" / "ready"), so liveness
probes, the image's HEALTHCHECK and load balancers keep working under basic auth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import bcrypt
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_exporter.config import load_yaml_model
from llm_exporter.limits import Refusals
from llm_exporter.problems import WebConfigError

log = logging.getLogger("llm_exporter.webconfig")

ClientAuth = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
                     "RequestClientCert", "RequireAnyClientCert"]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: exporter-toolkit keys we accept for compatibility but leave to OpenSSL's defaults
_IGNORED_TLS_KEYS = ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
CACHE_SIZE = 100
#: threads that run bcrypt (each check holds one for ~0.1 s; bcrypt releases the GIL)
AUTH_THREADS = 2
#: paths that answer without credentials: they tell nothing but "alive" / "ready"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: a bcrypt hash as htpasswd and the bcrypt libraries write it: variant, cost 04-31, 53 characters of
#: salt and digest in bcrypt's base64 alphabet
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: ClientAuth | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion | None = None
    cipher_suites: list[str] | None = None
    curve_preferences: list[str] | None = None
    prefer_server_cipher_suites: bool | None = None


class HTTPServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool | None = None  # accepted; aiohttp serves HTTP/1.1


class WebConfigFile(BaseModel):
    """The exporter-toolkit web-config file."""

    model_config = ConfigDict(extra="forbid")

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, v: dict[str, str]) -> dict[str, str]:
        for user, h in v.items():
            if not _BCRYPT.fullmatch(h):
                raise ValueError(f"user {user!r}: not a bcrypt hash (plaintext passwords are refused)")
        return v


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, caching successful checks.

    `users` maps names to bcrypt hashes of the form `WebConfigFile` accepts.
    """

    def __init__(self, users: dict[str, str], cache_size: int = CACHE_SIZE, max_pending: int = 32,
                 refusals: Refusals | None = None) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        # a hash to burn the same time on an unknown user as on a wrong password: the cheapest
        # user's cost (`$2b$NN$`); with no users there is no password check to match
        cost = min((int(h[4:6]) for h in users.values()), default=4)
        self._dummy = bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=cost))
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self.max_pending = max_pending
        self.pending = 0  # checks queued or running on the pool (event loop thread only)
        self.refusals = refusals if refusals is not None else Refusals()
        self._pool: ThreadPoolExecutor | None = None
        self.bcrypt_checks = 0  # how many times bcrypt ran (the cache's effect, for tests)

    def _key(self, user: str, password: bytes, hashed: bytes) -> bytes:
        return hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()

    def _cached(self, user: str, password: bytes) -> bool:
        """Whether these credentials passed bcrypt before (a SHA-256: cheap enough for the loop)."""
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = self._key(user, password, hashed)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        return False

    def _check(self, user: str, password: bytes) -> bool:
        if self._cached(user, password):
            return True
        hashed = self._users.get(user)
        self.bcrypt_checks += 1
        ok = bcrypt.checkpw(password, hashed or self._dummy) and hashed is not None
        if ok and hashed is not None:
            with self._cache_lock:
                self._cache[self._key(user, password, hashed)] = None
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return ok

    def close(self) -> None:
        """Replaced by a reload: the pool's threads end once the checks already handed to them are
        answered (by these users: the requests came before the reload). Never waits for them."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    async def verify(self, header: str | None) -> bool:
        """Whether an Authorization header carries a known user and the right password."""
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user_b, sep, password = raw.partition(b":")
        if not sep:
            return False
        user = user_b.decode("utf-8", "replace")
        if self._cached(user, password):
            return True
        if self.pending >= self.max_pending:
            self.refusals.count("auth_queue")
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=AUTH_THREADS, thread_name_prefix="bcrypt")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._check, user, password)
        finally:
            self.pending -= 1


class WebConfig:
    """What the HTTP server applies: an optional TLS context, optional basic auth, extra headers."""

    def __init__(self, ssl_context: ssl.SSLContext | None, auth: BasicAuth | None,
                 headers: dict[str, str], cert_files: tuple[str, str] | None = None) -> None:
        self.ssl_context = ssl_context
        self.auth = auth
        self.headers = headers
        self.cert_files = cert_files

    def update_from(self, new: WebConfig) -> None:
        """Take a re-read file's users, headers and certificate (new connections use it). TLS
        settings other than the certificate and key stay as they were started."""
        if self.ssl_context is not None and new.cert_files is not None:
            self.ssl_context.load_cert_chain(*new.cert_files)
        old, self.auth = self.auth, new.auth
        self.headers = new.headers
        if old is not None and old is not new.auth:
            old.close()

    def middleware(self, ingest_token: str | None = None) -> Callable[..., Awaitable[web.StreamResponse]]:
        """An aiohttp middleware: basic auth on every path but `/healthz` and `/readyz`. On
        `/ingest`, a request that carries the right `Authorization: Bearer` token (when one is set)
        passes instead, since a client can send only one Authorization header."""
        token = ingest_token.encode() if ingest_token else None

        @web.middleware
        async def mw(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
            auth, headers = self.auth, self.headers  # read per request: a reload may replace them
            if auth is not None and request.path not in OPEN_PATHS:
                header = request.headers.get("Authorization")
                ok = False
                bearer = bool(header) and header is not None and header[:7].lower() == "bearer "
                if token is not None and request.path == "/ingest" and header is not None and bearer:
                    ok = hmac.compare_digest(header[7:].strip().encode("utf-8", "surrogateescape"), token)
                else:
                    ok = await auth.verify(header)
                if not ok:
                    return web.Response(status=401, text="401 Unauthorized\n",
                                        headers={"WWW-Authenticate": 'Basic realm="llm-exporter"', **headers})
            resp = await handler(request)
            for k, v in headers.items():
                resp.headers.setdefault(k, v)
            return resp

        return mw


def _path(p: str, base: Path) -> str:
    """`p` relative to the web-config file's folder `base` (an absolute `p` stays as it is)."""
    return str(base / p)


def _ssl_context(tls: TLSServerConfig, base: Path) -> ssl.SSLContext:
    def path(p: str) -> str:
        return _path(p, base)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version is not None:
        ctx.maximum_version = _VERSIONS[tls.max_version]
    try:
        ctx.load_cert_chain(path(tls.cert_file), path(tls.key_file))
    except (OSError, ssl.SSLError) as e:
        raise WebConfigError(f"cert_file/key_file: {e.strerror or e}") from None
    mode = tls.client_auth_type or ("RequireAndVerifyClientCert" if tls.client_ca_file else "NoClientCert")
    if mode in ("RequestClientCert", "RequireAnyClientCert"):
        raise WebConfigError(f"client_auth_type {mode}: unverified client certificates are not supported; "
                             "use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file")
    if mode != "NoClientCert":
        if not tls.client_ca_file:
            raise WebConfigError(f"client_auth_type {mode} needs client_ca_file")
        try:
            ctx.load_verify_locations(cafile=path(tls.client_ca_file))
        except (OSError, ssl.SSLError) as e:
            raise WebConfigError(f"client_ca_file: {e.strerror or e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if mode == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
    ignored = [k for k in _IGNORED_TLS_KEYS if getattr(tls, k) is not None]
    if ignored:
        log.warning("web-config: %s accepted but not applied (OpenSSL defaults are used)", ", ".join(ignored))
    return ctx


def load_web_config(path: Path, max_pending: int = 32, refusals: Refusals | None = None) -> WebConfig:
    """Read and validate a web-config file; raise WebConfigError with one line on any mistake.
    `max_pending` and `refusals`: see `BasicAuth`."""
    cfg = load_yaml_model(path, WebConfigFile, WebConfigError)
    try:
        ctx = _ssl_context(cfg.tls_server_config, path.parent) if cfg.tls_server_config else None
    except WebConfigError as e:
        raise WebConfigError(f"{path}: tls_server_config: {e}") from None
    auth = BasicAuth(cfg.basic_auth_users, max_pending=max_pending, refusals=refusals) \
        if cfg.basic_auth_users else None
    headers = cfg.http_server_config.headers if cfg.http_server_config else {}
    tls = cfg.tls_server_config
    files = (_path(tls.cert_file, path.parent), _path(tls.key_file, path.parent)) if tls else None
    return WebConfig(ctx, auth, headers, files)
