"""Hot reload: SIGHUP, and `POST /-/reload` with `--web-enable-reload`.

A reload re-reads `--config` (and `--web-config`) while lines keep flowing. The new files are read
and validated first, off the event loop; only when both are good are they swapped in: the
pipeline's adapters are rebuilt with the new config under the metrics lock (multi-line records in
progress are flushed first), basic-auth users and response headers are replaced, and the TLS
certificate and key are re-read into the serving context (new connections get them). Metric
series are not touched, so every series that still exists keeps its value. A bad file changes
nothing: one log line, `llm_exporter_config_last_reload_successful 0`, and for `/-/reload` a 500
with that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from llm_exporter.config import load_config
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import ConfigError, StartupError, WebConfigError
from llm_exporter.webconfig import WebConfig, load_web_config

log = logging.getLogger("llm_exporter.reload")


async def _on_daemon_thread(fn: Callable[[], None]) -> None:
    """Run `fn` on a thread of its own that a stop does not wait for (a reload still parsing a
    large file must not delay exit, as the default executor's threads would)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def done(exc: BaseException | None) -> None:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def work() -> None:
        exc: BaseException | None = None
        try:
            fn()
        except BaseException as e:  # handed to the awaiting task
            exc = e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(done, exc)

    threading.Thread(target=work, name="reload", daemon=True).start()
    await fut


class Reloader:
    """Owns the running config; `load_initial()` at start-up, `reload()` on demand."""

    def __init__(self, pipeline: Pipeline, config_path: Path | None, web_config_path: Path | None = None,
                 web_config: WebConfig | None = None, loader: Callable[[Path], Any] | None = None,
                 on_pipeline: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.pipeline = pipeline
        # runs the config swap on the pipeline thread (Worker.call); directly when there is none
        self._on_pipeline: Callable[[Callable[[], None]], None] = on_pipeline or (lambda fn: fn())
        self.config_path = config_path
        self.web_config_path = web_config_path
        self.web_config = web_config
        self._loader = loader or load_config
        self.last_ok = True
        self.last_success = time.time()
        self.reloads = 0
        self._lock = asyncio.Lock()
        #: how --web-config is read (the app passes its limits in)
        self.web_config_loader: Callable[[Path], WebConfig] = load_web_config

    def _load(self) -> Any:
        if self.config_path is None:
            return None
        try:
            return self._loader(self.config_path)
        except ConfigError:
            raise
        except Exception as e:  # whatever the config loader raises: one line, never a crash
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if first.startswith(str(self.config_path)):  # the loader already named the file (and line)
                raise ConfigError(first) from None
            raise ConfigError(f"{self.config_path}: {first}") from None

    def load_initial(self) -> Any:
        """The config at start-up (ConfigError on a bad file: a start-up error)."""
        cfg = self._load()
        self.pipeline.config = cfg
        return cfg

    def _apply(self, cfg: Any, wc: WebConfig | None) -> None:
        self._on_pipeline(lambda: self.pipeline.reconfigure(cfg))
        if wc is not None and self.web_config is not None:
            self.web_config.update_from(wc)

    def _reload_sync(self) -> None:
        cfg = self._load()
        wc = None
        if self.web_config_path is not None and self.web_config is not None:
            wc = self.web_config_loader(self.web_config_path)
            if (wc.ssl_context is None) != (self.web_config.ssl_context is None):
                raise WebConfigError(f"{self.web_config_path}: turning TLS on or off needs a restart")
        self._apply(cfg, wc)

    async def reload(self, trigger: str) -> tuple[bool, str]:
        """Re-read the files; keep the running ones when anything is wrong. Returns (ok, message)."""
        async with self._lock:
            try:
                await _on_daemon_thread(self._reload_sync)
            except StartupError as e:  # --config or --web-config
                self.last_ok = False
                log.error("reload failed, keeping the running config: %s", e.line(),
                          extra={"fields": {"trigger": trigger}})
                return False, e.line()
            self.last_ok = True
            self.last_success = time.time()
            self.reloads += 1
            what = [str(p) for p in (self.config_path, self.web_config_path) if p is not None]
            log.info("reloaded", extra={"fields": {"trigger": trigger, "files": what}})
            return True, "reloaded " + (", ".join(what) if what else "(no --config or --web-config: nothing to read)")

    def route(self) -> web.RouteDef:
        """`POST /-/reload` (only registered with --web-enable-reload)."""

        async def handle(request: web.Request) -> web.Response:
            ok, msg = await self.reload("http")
            return web.Response(status=200 if ok else 500, text=msg + "\n")

        return web.post("/-/reload", handle)

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("llm_exporter_config_last_reload_successful",
                               "Whether the last configuration reload succeeded (1) or was refused (0).")
        ok.add_metric([], 1.0 if self.last_ok else 0.0)
        ts = GaugeMetricFamily("llm_exporter_config_last_reload_success_timestamp_seconds",
                               "When the configuration was last loaded successfully.", unit="seconds")
        ts.add_metric([], self.last_success)
        yield ok
        yield ts
