"""Flags are defined once, by the Settings fields: every field is a flag with its default, and the
environment still fills what no flag gives."""

from __future__ import annotations

import pytest

from llm_exporter.cli import daemon_parser
from llm_exporter.flags import settings_from_args
from llm_exporter.problems import StartupError
from llm_exporter.settings import Settings


def test_every_setting_but_the_command_is_a_flag() -> None:
    opts = {a.dest for a in daemon_parser()._actions if a.option_strings} - {"help", "version"}
    assert opts == set(Settings.model_fields) - {"command"}


def test_help_shows_the_fields_defaults() -> None:
    text = daemon_parser().format_help()
    assert "(0.0.0.0:10060)" in text and "(8MiB)" in text and "NVML poll interval (5)" in text
    assert "{auto,on,off}" in text and "--no-passthrough" in text


def test_flags_left_out_take_the_field_default_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_EXPORTER_LABEL_LIMIT", "7")
    s = settings_from_args(daemon_parser().parse_args(["--gpu", "off", "--file", "a", "--file", "b"]))
    assert (s.gpu, s.file, s.label_limit, s.listen) == ("off", ["a", "b"], 7, "0.0.0.0:10060")
    s = settings_from_args(daemon_parser().parse_args(["--label-limit", "3", "--no-passthrough"]))
    assert (s.label_limit, s.passthrough) == (3, False)  # a flag wins over the environment


def test_a_bad_value_is_one_line_naming_the_flag() -> None:
    with pytest.raises(StartupError) as e:
        settings_from_args(daemon_parser().parse_args(["--format", "nope"]))
    assert e.value.line().startswith("--format: unknown format 'nope'")
    with pytest.raises(StartupError, match="invalid int value"):
        daemon_parser().parse_args(["--label-limit", "x"])
