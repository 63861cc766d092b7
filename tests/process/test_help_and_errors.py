"""Help that matches behaviour, and errors that name the right thing, run as a user runs the
program: --help shows every subcommand and the wrapper form; a bad value names the flag or the
environment variable it came from; a port out of range says so; sizes are accepted as the docs
write them ("8MiB", "1 MiB")."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import ROOT, Exporter


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "llm_exporter", *args], input="", capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-exporter: error: "), r.stderr
    return lines[0].removeprefix("llm-exporter: error: ")


def test_help_lists_the_subcommands_and_the_wrapper_form() -> None:
    r = cli("--help")
    assert r.returncode == 0
    for word in ("replay", "check-config", "schema", "healthcheck", "-- COMMAND"):
        assert word in r.stdout, word
    assert "llm-exporter [OPTIONS] -- COMMAND" in r.stdout


def test_a_bad_environment_value_names_the_variable() -> None:
    msg = one_error(cli("--gpu", "off", env={"LLM_EXPORTER_LABEL_LIMIT": "lots"}))
    assert msg.startswith("LLM_EXPORTER_LABEL_LIMIT="), msg
    assert "--label-limit" not in msg.split(":")[0]
    msg = one_error(cli("--gpu", "off", "--label-limit", "lots"))
    assert "--label-limit" in msg and "LLM_EXPORTER" not in msg, msg
    # the flag wins over the variable, and a bad variable for a flag given is not reported
    assert cli("--gpu", "off", "--label-limit", "7", "--listen", "127.0.0.1:99999",
               env={"LLM_EXPORTER_LABEL_LIMIT": "lots"}).stderr.count("LLM_EXPORTER_LABEL_LIMIT") == 0


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", ":65536"])
def test_a_port_out_of_range_says_so(listen: str) -> None:
    msg = one_error(cli("--gpu", "off", "--listen", listen))
    assert msg.startswith("--listen") and "out of range" in msg and "0-65535" in msg, msg
    assert "expected HOST:PORT" not in msg


def test_a_listen_without_a_port_still_says_host_port() -> None:
    msg = one_error(cli("--gpu", "off", "--listen", "localhost"))
    assert msg.startswith("--listen") and "HOST:PORT" in msg, msg


@pytest.mark.parametrize(("flag", "value", "want"), [("--max-line-bytes", "1MiB", 1 << 20),
                                                     ("--max-line-bytes", "64 KiB", 64 << 10),
                                                     ("--config-max-bytes", "2MiB", 2 << 20)])
def test_sizes_are_accepted_as_the_docs_write_them(flag: str, value: str, want: int) -> None:
    from llm_exporter.cli import daemon_parser, settings_from_args

    s = settings_from_args(daemon_parser().parse_args([flag, value]), [])
    assert getattr(s, flag[2:].replace("-", "_")) == want


def test_http_ingest_max_bytes_8mib_is_the_limit_it_says() -> None:
    """`--http-ingest-max-bytes 8MiB` starts, and /ingest takes 8 MiB but refuses one byte more (413)."""
    with Exporter("--no-stdin", "--gpu", "off", "--http-ingest", "--http-ingest-max-bytes", "8MiB",
                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        line = b'{"note": "' + b"x" * 1000 + b'"}\n'
        body = line * ((8 << 20) // len(line))
        body += b" " * ((8 << 20) - len(body))

        def post(data: bytes) -> int:
            req = urllib.request.Request(e.url + "/ingest", data=data, method="POST",
                                         headers={"Content-Type": "application/x-ndjson"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return int(r.status)
            except urllib.error.HTTPError as err:
                return int(err.code)

        assert len(body) == 8 << 20
        assert post(body) == 204
        assert post(body + b" ") == 413


def test_a_bad_size_names_the_units() -> None:
    msg = one_error(cli("--gpu", "off", "--max-line-bytes", "8 parsecs"))
    assert msg.startswith("--max-line-bytes") and "MiB" in msg, msg


