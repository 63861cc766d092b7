"""`llm-exporter healthcheck`: exit 0 when the exporter on this host answers, whatever its --web-config.

The container image's HEALTHCHECK runs it. It asks `GET /healthz` on the loopback address of
`--listen` (default: `LLM_EXPORTER_LISTEN`, else port 10060), first in plain HTTP; when the
server does not speak plain HTTP there, over TLS (the certificate is not verified: this checks
that the process answers, on this host, not who it is). `/healthz` needs no credentials under
basic auth. When the server demands a client certificate (`RequireAndVerifyClientCert`), it
completes the TLS handshake and then closes the session (or sends an alert): that is itself the
answer, since the exporter's event loop took the connection and ran the handshake, which is all
`/healthz` would have told.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys

from llm_exporter.flags import Parser
from llm_exporter.problems import StartupError

DEFAULT_LISTEN = "0.0.0.0:10060"
_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _target(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise StartupError(f"--listen: expected HOST:PORT, got {listen!r}")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def _status(sock: socket.socket) -> str:
    sock.sendall(_REQUEST)
    head = b""
    while b"\r\n" not in head and len(head) < 256:
        got = sock.recv(256)
        if not got:
            break
        head += got
    return head.split(b"\r\n", 1)[0].decode("latin-1")


def probe(host: str, port: int, timeout: float = 4.0) -> tuple[bool, str]:
    """(healthy, what was seen)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            line = _status(sock)
    except OSError as e:
        return False, f"{host}:{port}: {e.strerror or e}"
    if line.startswith("HTTP/"):
        return line.split(" ")[1:2] == ["200"], f"http: {line}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    shook = False
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as sock:
            shook = True
            line = _status(sock)
    except ssl.SSLError as e:
        if "ALERT" in (e.reason or ""):  # the server ran the handshake and refused us a session
            return True, f"https: answered with TLS alert {e.reason}"
        return False, f"https: {e.reason or e}"
    except OSError as e:
        if shook:  # reset after a full handshake: the server refused us a session, but answered
            return True, f"https: handshake answered, then {e.strerror or e} (client certificate required?)"
        return False, f"https: {e.strerror or e}"
    if line.startswith("HTTP/"):
        return line.split(" ")[1:2] == ["200"], f"https: {line}"
    if shook:
        return True, "https: handshake answered, then the session was closed (client certificate required)"
    return False, f"no HTTP answer on {host}:{port}"


def healthcheck(argv: list[str]) -> int:
    p = Parser(prog="llm-exporter healthcheck",
                description="Exit 0 when the exporter on this host answers /healthz (plain HTTP or TLS).")
    p.add_argument("--listen", metavar="HOST:PORT",
                   default=os.environ.get("LLM_EXPORTER_LISTEN") or DEFAULT_LISTEN,
                   help="the exporter's --listen (default: $LLM_EXPORTER_LISTEN, else 0.0.0.0:10060)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=4.0, help="per connection (4)")
    ns = p.parse_args(argv)
    host, port = _target(ns.listen)
    ok, seen = probe(host, port, ns.timeout)
    print(("healthy: " if ok else "unhealthy: ") + seen, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
