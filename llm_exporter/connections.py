"""The HTTP listener's connection limits: a cap on open connections and a deadline for the first
request head, in front of aiohttp's own per-request handling.

- `max_connections`: at the cap, a new connection closes the least recently active one (an idle
  or trickling client, never one that just sent bytes), so a flood of idle connections can
  neither exhaust file descriptors nor lock scrapes out.
- `idle_timeout`: a connection must send a complete request head (up to the blank line) within
  this many seconds of connecting; between requests aiohttp's keep-alive timeout (the same value)
  closes idle connections and slow heads. A TLS handshake gets the same time.
- Request bodies have their own deadline where they are read (`/ingest`).

Refusals are counted in `Refusals` and logged at most once a minute per kind.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from llm_exporter.limits import RateLimitedLog, Refusals

log = logging.getLogger("llm_exporter.http")
_HEAD_END = b"\r\n\r\n"


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, times its first request head."""

    def __init__(self, inner: Any, site: GuardedSite) -> None:
        self.inner = inner
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.last_active = 0.0
        self._head_seen = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.last_active = loop.time()
        self.site.admit(self)
        if self.site.idle_timeout > 0:
            self._timer = loop.call_later(self.site.idle_timeout, self._head_deadline)
        self.inner.connection_made(transport)

    def _head_deadline(self) -> None:
        self._timer = None
        if not self._head_seen and self.transport is not None and not self.transport.is_closing():
            self.site.refused("header_timeout", "a connection sent no complete request head in %.0f s; closed",
                              self.site.idle_timeout)
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        if not self._head_seen:
            buf = self._tail + data
            if _HEAD_END in buf:
                self._head_seen = True
                self._tail = b""
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                self._tail = buf[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.site.release(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site (like aiohttp's `TCPSite`) whose connections are capped and timed."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, refusals: Refusals,
                 max_connections: int = 512, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self.refusals = refusals
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.open: set[_Guarded] = set()
        self._log = RateLimitedLog(log)

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    def refused(self, limit: str, msg: str, *args: object) -> None:
        self.refusals.count(limit)
        self._log(limit, msg, *args)

    def admit(self, conn: _Guarded) -> None:
        """Take a new connection; at the cap, close the least recently active one first."""
        if len(self.open) >= self.max_connections:
            victim = min(self.open, key=lambda c: c.last_active)
            self.open.discard(victim)
            if victim.transport is not None:
                victim.transport.abort()
            self.refused("connections", "%d connections open (--web-max-connections): closed the least "
                         "recently active one", self.max_connections)
        self.open.add(conn)

    def release(self, conn: _Guarded) -> None:
        self.open.discard(conn)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: _Guarded(server(), self)  # noqa: E731
        kw: dict[str, Any] = {}
        if self._ssl_context is not None and self.idle_timeout > 0:
            kw["ssl_handshake_timeout"] = self.idle_timeout
        self._server = await loop.create_server(factory, self._host, self._port, ssl=self._ssl_context,
                                                backlog=self._backlog, reuse_address=True, **kw)
