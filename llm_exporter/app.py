"""Wiring and lifecycle: sources -> worker (pipeline) -> metrics -> HTTP server.

Start-up: build the registry and pipeline, bind the HTTP port (a port in use is a start-up
error), start the pipeline thread, attach the sources. Main loop: wait for a stop signal, or
for stdin's EOF when stdin is the only source. Graceful stop: stop reading, finish the lines in
hand, flush multi-line records, close the server; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import stat
import sys
import threading
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from llm_exporter import __version__, debug, logs
from llm_exporter.collectors.gpu import GpuCollector
from llm_exporter.config import load_config
from llm_exporter.connections import GuardedSite
from llm_exporter.limits import Refusals
from llm_exporter.metrics import LLMMetrics, checkpoint
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import ConfigError, StartupError
from llm_exporter.reload import Reloader
from llm_exporter.server import make_app
from llm_exporter.settings import Settings
from llm_exporter.sources import Source, build_sources
from llm_exporter.sources.command import CommandSource
from llm_exporter.state import checkpoint_every, open_state
from llm_exporter.webconfig import load_web_config
from llm_exporter.worker import Worker

log = logging.getLogger("llm_exporter")


def ingest_exposure_problem(s: Settings, basic_auth: bool) -> str | None:
    """Why `/ingest` may not start as configured: reachable beyond loopback with neither a token
    nor basic auth, and not explicitly allowed (None: fine)."""
    if s.http_ingest_token or basic_auth or s.loopback_only or s.http_ingest_allow_unauthenticated:
        return None
    return (f"--http-ingest on {s.listen} would accept pushes from anyone: set --http-ingest-token "
            "(non-empty), basic_auth_users in --web-config, a loopback --listen, or "
            "--http-ingest-allow-unauthenticated")


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


class App:
    """One daemon run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        # what every Python exporter serves: process_* (CPU, memory, open files, start time),
        # python_info and python_gc_*
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # The apply lock: held while metric values change or are read whole (a batch of lines
        # applied with its file offsets, a config swap, a scrape, a checkpoint, the page's reads);
        # see `llm_exporter.metrics` for who takes it.
        self.apply_lock = threading.Lock()
        self.metrics = LLMMetrics(label_limit=settings.label_limit, lock=self.apply_lock)
        self.metrics.file_labels = settings.file_labels
        self.registry.register(self.metrics)
        self.gpu: GpuCollector | None = None
        if settings.gpu != "off":
            self.gpu = GpuCollector(devices=settings.gpu_devices, interval=settings.gpu_interval,
                                    processes=settings.gpu_processes, server_pids=self._server_pids)
            self.registry.register(self.gpu)
        self.pipeline = Pipeline(self.metrics, fmt=settings.format, config=None)
        self.pipeline.file_labels = settings.file_labels
        self.worker = Worker(self.pipeline, max_chunks=settings.queue_chunks)
        self.refusals = Refusals()
        self.registry.register(self.refusals)
        self.reloader = Reloader(self.pipeline, settings.config, settings.web_config,
                                 on_pipeline=self.worker.call, loader=self._load_config)
        self.registry.register(self.reloader)
        # before the restore: the config's extra labels shape the request series restored
        self.reloader.load_initial()  # a bad file: ConfigError, a start-up error
        self.sources: list[Source] = []  # built once the web config is known (start_server)
        self.exit_code = 0
        self.state, self.saved = open_state(settings.state_dir)
        if self.state is not None:  # counters resume where the offsets saved beside them say
            checkpoint.restore(self.metrics, self.saved.get("metrics"))
            self.state.register("metrics", functools.partial(checkpoint.snapshot, self.metrics))
        self._stop = asyncio.Event()
        self._stop_now = asyncio.Event()  # a second SIGTERM/SIGINT cuts the --shutdown-grace short
        self.stopping = False
        self._runner: web.AppRunner | None = None

    def _server_pids(self) -> set[int] | None:
        """The wrapped server's processes, for GPU energy attribution: None when there is no
        child (not wrapper mode), empty until the child has started."""
        if not self.settings.command:
            return None
        for src in list(self.sources):
            if isinstance(src, CommandSource):
                return src.pids() or set()
        return set()

    def _load_config(self, path: Any) -> Any:
        """--config, held to --config-max-bytes (a refusal is counted)."""
        try:
            return load_config(path, max_bytes=self.settings.config_max_bytes)
        except ConfigError as e:
            if e.limit:
                self.refusals.count("config")
            raise

    def ready(self) -> bool:
        return not self.stopping and bool(self.sources) and all(s.attached for s in self.sources)

    def start_gpu(self) -> None:
        """Start NVML polling; with `--gpu on`, no NVML or an unknown device is a start-up error."""
        if self.gpu is None:
            return
        required = self.settings.gpu == "on"
        if not self.gpu.start() and required:
            raise StartupError(f"--gpu on: {self.gpu.reason}")
        if required and self.gpu.unmatched:
            self.gpu.stop()
            raise StartupError(f"--gpu-devices: no GPU matches {', '.join(self.gpu.unmatched)}")

    async def start_server(self) -> None:
        extra = debug.routes(self.pipeline) if self.settings.debug_endpoints else []
        if self.settings.web_enable_reload:
            extra.append(self.reloader.route())
        s = self.settings
        wc = None
        if s.web_config is not None:
            loader = functools.partial(load_web_config, max_pending=s.web_auth_queue, refusals=self.refusals)
            wc = loader(s.web_config)  # a bad file: WebConfigError, a start-up error
            self.reloader.web_config = wc
            self.reloader.web_config_loader = loader
        if s.http_ingest:
            problem = ingest_exposure_problem(s, wc is not None and wc.auth is not None)
            if problem is not None:
                raise StartupError(problem)
        self.sources = build_sources(s, self.worker, self.metrics.source, registry=self.registry,
                                     refusals=self.refusals, state=self.state, saved=self.saved,
                                     on_end=self._source_ended)
        for src in self.sources:
            extra += src.routes()
        # the page samples GPU readings from the GPU collector alone (an empty registry without one)
        gpu_source = self.gpu if self.gpu is not None else CollectorRegistry(auto_describe=False)
        app = make_app(self.registry, self.metrics, self.ready, extra_routes=extra, gpu_source=gpu_source,
                       pipeline=self.pipeline, show_reject_lines=self.settings.debug_endpoints)
        ssl_context = None
        if wc is not None:
            app.middlewares.append(wc.middleware(s.http_ingest_token))
            ssl_context = wc.ssl_context
        # aiohttp's keep-alive timeout closes idle connections (and slow heads) between requests
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=s.web_idle_timeout)
        await self._runner.setup()
        host, port = self.settings.host_port
        site = GuardedSite(self._runner, host, port, refusals=self.refusals, ssl_context=ssl_context,
                           max_connections=connection_cap(s.web_max_connections),
                           idle_timeout=s.web_idle_timeout)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise StartupError(f"--listen {self.settings.listen}: {e.strerror or e}") from None

    def _start_sources(self, loop: asyncio.AbstractEventLoop) -> None:
        s = self.settings
        if s.stdin is None and not s.read_stdin and _stdin_is_pipe():
            log.warning("stdin is a pipe but is not read (another source is given, so --stdin is off): "
                        "whatever writes into it blocks once 64 KiB are waiting; add --stdin to read it too")
        for src in self.sources:
            src.start(loop)

    def _source_ended(self, code: int | None) -> None:
        """A source ended the run (any thread): stdin at its end as the only source, or the wrapped
        command's exit, whose code becomes ours."""
        if code is not None:
            self.exit_code = code
        self._loop.call_soon_threadsafe(self._stop.set)

    def check_stdin(self) -> None:
        """With stdin as the only source, stdin must be something that can carry lines: /dev/null or
        a closed stdin (a container run without -i, a systemd unit, nohup) would end the daemon at
        once, and a restart policy would loop on it. Refuse that at start, saying what to do."""
        s = self.settings
        if not s.read_stdin or s.file or s.http_ingest or s.command:
            return
        try:
            st = os.fstat(0)
        except OSError:
            what = "closed"
        else:
            try:
                null = os.stat(os.devnull)
            except OSError:
                return
            if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev):
                return
            what = "/dev/null"
        raise StartupError(f"stdin is {what} and it is the only source, so there is nothing to read: pipe "
                           "the logs in (`app | llm-exporter`; `docker run -i`), or follow files (--file GLOB), "
                           "accept pushes (--http-ingest) or run the server under the exporter (-- COMMAND)")

    async def main(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        # SIGHUP through Python's own handler (it runs on this thread and wakes the loop), not
        # loop.add_signal_handler: removing that one resets the signal to its default action
        # (terminate) for a moment, and a SIGHUP in that moment would end us with the wrong code
        signal.signal(signal.SIGHUP, lambda _sig, _frame: loop.call_soon_threadsafe(self._on_sighup))
        await loop.run_in_executor(None, self.start_gpu)
        await self.start_server()
        self.check_stdin()  # after the flag, GPU and port checks, whose errors come first
        self.worker.start()
        self._start_sources(loop)
        host, port = self.settings.host_port
        log.info("listening", extra={"fields": {"listen": f"{host}:{port}", "version": __version__,
                                                 "sources": [x.name for x in self.sources]}})
        if self.gpu is not None:
            self.gpu.announce()
        checkpoints = loop.create_task(checkpoint_every(self.state, self.apply_lock))
        await self._stop.wait()
        checkpoints.cancel()
        await self.shutdown()
        return self.exit_code

    def _on_sighup(self) -> None:
        """Reload --config and --web-config; in wrapper mode the child gets its SIGHUP too."""
        if self._stop.is_set():  # queued just before shutdown ignored SIGHUP: no reload while stopping
            return
        self._reload_task = asyncio.ensure_future(self.reloader.reload("SIGHUP"))
        for src in self.sources:
            src.send_signal(signal.SIGHUP)

    def _on_stop_signal(self) -> None:
        (self._stop_now if self._stop.is_set() else self._stop).set()

    async def shutdown(self) -> None:
        log.info("stopping")
        loop = asyncio.get_running_loop()
        # no reload while stopping: SIGHUP is ignored from here to exit, in one step with no
        # moment at its default action (terminate), so a SIGHUP sent to the process group as the
        # child exits cannot turn our exit code into "killed by SIGHUP"
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # stop reading (all at once; what they queued is finished below), then answer /readyz 503:
        # a client that sees 503 there is sure to have its next push refused, not half counted
        await asyncio.gather(*(loop.run_in_executor(None, src.stop) for src in self.sources))
        self.stopping = True
        await loop.run_in_executor(None, self.worker.stop)
        if self.state is not None:  # every queued line is counted now: offsets and metrics agree
            try:
                await loop.run_in_executor(None, self.state.checkpoint, self.apply_lock)
            except OSError as e:  # a full or read-only --state-dir: say so, still stop cleanly
                log.error("final state checkpoint failed, the next start re-reads from the last saved "
                          "one: %s", e.strerror or e)
        if self.settings.shutdown_grace > 0:  # keep serving /metrics for a last scrape
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_now.wait(), self.settings.shutdown_grace)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.gpu is not None:
            await loop.run_in_executor(None, self.gpu.stop)


#: file descriptors kept for everything but HTTP connections (files followed, pipes, state, NVML)
FD_RESERVE = 128


def connection_cap(wanted: int) -> int:
    """The connection cap the file-descriptor limit allows: the soft limit is raised toward the
    hard one when `wanted` needs it; what still does not fit lowers the cap (logged)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    cap = max(8, soft - FD_RESERVE)
    log.warning("the open-file limit (%d) allows %d HTTP connections, not --web-max-connections %d",
                soft, cap, wanted)
    return cap


def run(settings: Settings) -> int:
    logs.setup(settings.log_level)
    # the GIL hand-off to a passthrough thread waits up to this long while the parser runs: 1 ms
    # instead of 5 keeps the watched app's writes from stalling (bench/overload.py, docs/sources.md)
    sys.setswitchinterval(0.001)
    app = App(settings)
    code = asyncio.run(app.main())
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    return code


if os.name != "posix":  # pragma: no cover
    raise RuntimeError("llm-exporter runs on POSIX systems")
