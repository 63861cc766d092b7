"""Command line: `llm-exporter [OPTIONS] [-- COMMAND...]`, `replay`, `check-config`, `schema`, `healthcheck`.

Start-up errors (a bad flag, a bad value, a port in use) are one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import signal
import sys

from llm_exporter import __version__
from llm_exporter.flags import Parser, add_settings_flags, settings_from_args
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
    """`llm-exporter [OPTIONS]`: one flag per `Settings` field."""
    p = Parser(prog="llm-exporter", usage=USAGE, description="Prometheus metrics for any LLM server, from its logs.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"llm-exporter {__version__}")
    add_settings_flags(p)
    return p


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
