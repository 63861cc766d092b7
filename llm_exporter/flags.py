"""Command-line flags, defined once: built from the `Settings` fields (name, type, default, help).

`add_settings_flags()` adds `--name-with-dashes` for each field (the daemon: all; `replay`: the
few it uses); `settings_from_args()` turns what was given into validated `Settings`, where
`LLM_EXPORTER_<NAME>` fills what a flag did not. A flag left out is None here, so the field's own
default applies. Mistakes are `StartupError`s: one line, exit 1 (not argparse's usage dump).
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, NoReturn

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from llm_exporter.problems import StartupError
from llm_exporter.settings import Settings


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag or value raised as a `StartupError`."""

    def error(self, message: str) -> NoReturn:
        raise StartupError(message)


def _plain(annotation: Any) -> Any:
    """The type under `X | None` and `Annotated[X, ...]`."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    return annotation


def _shown(info: FieldInfo, extra: dict[str, Any]) -> str:
    if extra.get("shown") is not None:
        return str(extra["shown"])
    d = info.default
    if d is None or info.default_factory is not None:
        return ""
    return f"{d:g}" if isinstance(d, float) else str(d)


def add_settings_flags(p: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Add the flags of the `Settings` fields `names` (all flags when None), in field order."""
    wanted = set(names) if names is not None else None
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("flag") or (wanted is not None and name not in wanted):
            continue
        opt = "--" + name.replace("_", "-")
        help_ = info.description or ""
        kind = _plain(info.annotation)
        if kind is bool:
            p.add_argument(opt, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
            continue
        shown = _shown(info, extra)
        if shown:
            help_ = f"{help_} ({shown})"
        kw: dict[str, Any] = {"dest": name, "default": None, "help": help_}
        if typing.get_origin(kind) is Literal:
            kw["choices"] = typing.get_args(kind)
        else:
            kw["metavar"] = extra.get("metavar")
            if kind in (int, float) and not extra.get("text"):
                kw["type"] = kind
        if extra.get("repeat"):
            kw["action"] = "append"
        p.add_argument(opt, **kw)


def settings_from_args(ns: argparse.Namespace, command: list[str] | None = None) -> Settings:
    """Validated settings from parsed flags (None: not given) and LLM_EXPORTER_<NAME>."""
    kwargs = {k: v for k, v in vars(ns).items() if v is not None and k in Settings.model_fields}
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
