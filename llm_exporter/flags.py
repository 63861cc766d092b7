"""Command-line parsing shared by the daemon and the subcommands: a parser whose mistakes are
start-up errors (one line, exit 1) instead of argparse's usage dump and exit 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from llm_exporter.problems import StartupError


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or value raised as a `StartupError`."""

    def error(self, message: str) -> NoReturn:
        raise StartupError(message)


def bool_flag(p: argparse.ArgumentParser, name: str, help_: str) -> None:
    """`--name` / `--no-name`, None when neither is given."""
    p.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction,
                   default=None, help=help_)
