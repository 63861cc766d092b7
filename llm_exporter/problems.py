"""A person's mistake, worded as one line: the `StartupError` family (a leaf: imports nothing).

`StartupError`: a bad flag or value, a port in use, a command that cannot run. `ConfigError`: a
`--config` file that cannot be used; `WebConfigError`: a `--web-config` file. Their messages name
the file and, where there is one, the YAML line (`app.yaml:3: metrics[0].type: ...`); `flag` says
which option the file was given to, and `line()` puts it in front (`--config app.yaml:3: ...`).
At start-up the command line prints `llm-exporter: error: <line()>` and exits 1; a reload that
meets one logs the same line and keeps what runs.
"""

from __future__ import annotations


class StartupError(Exception):
    """A person's mistake at start-up: one line on stderr, exit 1."""

    #: the option the mistake is in, put in front by `line()` ("" when the message names it)
    flag = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def line(self) -> str:
        """The one line a person reads: the flag, then the message."""
        return f"{self.flag} {self.message}" if self.flag else self.message


class ConfigError(StartupError, ValueError):
    """A `--config` file that cannot be used."""

    flag = "--config"
    #: True when the file was refused for its size (`--config-max-bytes`), counted as a refusal
    limit = False


class WebConfigError(StartupError, ValueError):
    """A `--web-config` file that cannot be used."""

    flag = "--web-config"
