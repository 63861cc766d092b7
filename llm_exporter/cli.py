"""Command line: `llm-exporter [OPTIONS] [-- COMMAND...]`, `replay`, `check-config`, `schema`, `healthcheck`.

Start-up errors (a bad flag, a bad value, a port in use) are one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from pydantic import ValidationError

from llm_exporter import __version__
from llm_exporter.flags import Parser, bool_flag
from llm_exporter.problems import StartupError

SUBCOMMANDS = ("replay", "check-config", "schema", "healthcheck")


USAGE = """llm-exporter [OPTIONS]                        read stdin (and pass it through), or --file/--http-ingest
       llm-exporter [OPTIONS] -- COMMAND [ARG...]   wrapper mode: run COMMAND, read its stdout and stderr
       llm-exporter replay|check-config|schema|healthcheck ...   (see below)"""

EPILOG = """subcommands (each has its own --help):
  replay [--format NAME] [--openmetrics] FILE...   read files to their end, print the metrics, exit
  check-config FILE                                 validate a --config file and say what it defines
  schema                                            the JSON field names an application line may carry
  healthcheck [--listen HOST:PORT]                  exit 0 when the exporter on this host answers

Every option also reads LLM_EXPORTER_<NAME> from the environment (LLM_EXPORTER_LISTEN=...); flags
win. Sizes take units: 8MiB, 512KiB, 1GiB (or plain bytes)."""


def daemon_parser() -> argparse.ArgumentParser:
    p = Parser(prog="llm-exporter", usage=USAGE, description="Prometheus metrics for any LLM server, from its logs.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-exporter {__version__}")
    p.add_argument("--listen", metavar="HOST:PORT", help="where the HTTP server listens (0.0.0.0:10060)")
    p.add_argument("--web-config", metavar="FILE", help="TLS and basic auth, exporter-toolkit format")
    bool_flag(p, "stdin", "read stdin (default: on when no other source is given)")
    bool_flag(p, "passthrough", "copy every byte read to stdout/stderr unchanged (default: on)")
    p.add_argument("--file", metavar="GLOB", action="append", help="follow files like tail -F (repeatable)")
    p.add_argument("--file-start", choices=("end", "beginning"), help="where to start in a new file (end)")
    bool_flag(p, "file-labels", "add k8s_namespace_name, k8s_pod_name, k8s_container_name (from "
                                "/var/log/pods/... paths) or container_id (/var/lib/docker/containers/...) to the "
                                "request metrics (default: off)")
    p.add_argument("--state-dir", metavar="DIR", help="keep read offsets and metric state here")
    bool_flag(p, "http-ingest", "accept POST /ingest (NDJSON or a JSON array)")
    p.add_argument("--http-ingest-token", metavar="TOKEN", help="require Authorization: Bearer TOKEN")
    p.add_argument("--http-ingest-max-bytes", metavar="SIZE", help="largest /ingest body (8MiB)")
    p.add_argument("--http-ingest-concurrency", metavar="N", type=int,
                   help="/ingest bodies read and parsed at once; more wait their turn (4)")
    bool_flag(p, "http-ingest-allow-unauthenticated",
               "accept /ingest without a token or basic auth on a non-loopback --listen (refused otherwise)")
    p.add_argument("--format", metavar="NAME", help="auto (per line) or one adapter name")
    p.add_argument("--config", metavar="FILE",
                   help="YAML: field mappings, extra labels, custom metrics, objectives (slo:), buckets")
    p.add_argument("--config-max-bytes", metavar="SIZE", help="largest --config file read (1MiB)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), help="NVML GPU readings (auto)")
    p.add_argument("--gpu-devices", metavar="LIST", help="comma-separated GPU UUIDs or indices")
    p.add_argument("--gpu-interval", metavar="SECONDS", type=float, help="NVML poll interval (5)")
    bool_flag(p, "gpu-processes", "per-process GPU memory (host pids); in wrapper mode, energy only from the "
               "GPUs the server uses")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="our own logs (info)")
    p.add_argument("--max-line-bytes", metavar="SIZE", help="longer lines count as too_long (1MiB)")
    p.add_argument("--label-limit", metavar="N", type=int, help="distinct values per label (100)")
    p.add_argument("--queue-chunks", metavar="N", type=int, help="parse queue bound, in 64 KiB chunks (128)")
    p.add_argument("--command-kill-after", metavar="SECONDS", type=float,
                   help="wrapper mode: SIGKILL the child if it still runs this long after SIGTERM (30)")
    p.add_argument("--shutdown-grace", metavar="SECONDS", type=float, help="serve /metrics after stop (0)")
    bool_flag(p, "debug-endpoints", "enable /debug/rejects")
    bool_flag(p, "web-enable-reload", "enable POST /-/reload (SIGHUP always reloads)")
    p.add_argument("--web-max-connections", metavar="N", type=int,
                   help="open HTTP connections; at the cap the least recently active is closed (512)")
    p.add_argument("--web-idle-timeout", metavar="SECONDS", type=float,
                   help="close a connection that sends no complete request head for this long (30)")
    p.add_argument("--web-read-timeout", metavar="SECONDS", type=float,
                   help="time allowed to send a request body (60)")
    p.add_argument("--web-auth-queue", metavar="N", type=int,
                   help="basic-auth password checks waiting at once; more get 401 (32)")
    return p


def settings_from_args(ns: argparse.Namespace, command: list[str]) -> Any:
    from llm_exporter.settings import Settings

    kwargs = {k: v for k, v in vars(ns).items() if v is not None}
    if command:
        kwargs["command"] = command
    try:
        return Settings(**kwargs)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        env = f"LLM_EXPORTER_{field.upper()}"
        if field and field not in kwargs and env in os.environ:  # the value came from the environment
            raise StartupError(f"{env}={os.environ[env]!r}: {msg}") from None
        loc = "--" + field.replace("_", "-") if field else "options"
        raise StartupError(f"{loc}: {msg}") from None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS:
            from llm_exporter import commands

            return commands.run(args[0], args[1:])
        command: list[str] = []
        if "--" in args:
            i = args.index("--")
            args, command = args[:i], args[i + 1 :]
            if not command:
                raise StartupError("nothing to run after --")
        # until the daemon's own handler is installed, a SIGHUP (a reload request) must not end it
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        ns = daemon_parser().parse_args(args)
        settings = settings_from_args(ns, command)
        from llm_exporter.app import run

        return run(settings)
    except StartupError as e:
        print(f"llm-exporter: error: {e.line()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
