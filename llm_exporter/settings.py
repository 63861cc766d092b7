"""All options, from flags and `LLM_EXPORTER_<NAME>` environment variables (flags win)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Validated options of one daemon run."""

    model_config = SettingsConfigDict(env_prefix="LLM_EXPORTER_", extra="forbid", validate_default=True)

    listen: str = Field("0.0.0.0:10060", description="HOST:PORT of the HTTP server")
    web_config: Path | None = Field(None, description="TLS and basic auth (exporter-toolkit format)")
    stdin: bool | None = Field(None, description="read stdin; default: on when no other source is given")
    passthrough: bool = Field(True, description="copy every byte read to stdout (stderr)")
    file: Annotated[list[str], NoDecode] = Field(default_factory=list, description="globs of files to follow")
    file_start: Literal["end", "beginning"] = "end"
    file_labels: bool = Field(False, description="label requests with the pod or container a followed file's "
                                                 "path names")
    state_dir: Path | None = None
    http_ingest: bool = False
    http_ingest_token: str | None = None
    http_ingest_max_bytes: int = Field(8 << 20, gt=0)
    http_ingest_allow_unauthenticated: bool = False
    http_ingest_concurrency: int = Field(4, gt=0, description="pushes read and parsed at once")
    format: str = "auto"
    config: Path | None = None
    config_max_bytes: int = Field(1 << 20, gt=0, description="largest --config file read")
    gpu: Literal["auto", "on", "off"] = "auto"
    gpu_devices: Annotated[list[str], NoDecode] = Field(default_factory=list)
    gpu_interval: float = Field(5.0, gt=0)
    gpu_processes: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_line_bytes: int = Field(1 << 20, gt=0)
    label_limit: int = Field(100, gt=0)
    queue_chunks: int = Field(128, gt=0, description="parse queue bound, in read chunks of up to 64 KiB")
    shutdown_grace: float = Field(0.0, ge=0)
    debug_endpoints: bool = False
    web_enable_reload: bool = False
    web_max_connections: int = Field(512, gt=0, description="open connections; past it the least active closes")
    web_idle_timeout: float = Field(30.0, gt=0, description="seconds to send a request head; idle keep-alive")
    web_read_timeout: float = Field(60.0, gt=0, description="seconds to send a request body")
    web_auth_queue: int = Field(32, gt=0, description="password checks waiting for bcrypt; more get 401")
    command: list[str] = Field(default_factory=list, description="wrapper mode: the child's argv")
    command_kill_after: float = Field(30.0, gt=0, description="SIGKILL a child this long after SIGTERM")

    @field_validator("file", "gpu_devices", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("http_ingest_token", mode="before")
    @classmethod
    def _empty_token(cls, v: object) -> object:
        # `--http-ingest-token "$TOKEN"` with TOKEN unset is no token, never an empty one
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {v!r}")
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port {port} is out of range (0-65535)")
        return v

    @field_validator("http_ingest_max_bytes", "config_max_bytes", "max_line_bytes", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        from llm_exporter.units import parse_size

        return parse_size(v) if isinstance(v, str) else v

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        from llm_exporter.adapters import ADAPTERS

        if v != "auto" and v not in ADAPTERS:
            raise ValueError(f"unknown format {v!r}; known: auto, {', '.join(sorted(ADAPTERS))}")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    @property
    def loopback_only(self) -> bool:
        """Whether --listen binds a loopback address only (nothing beyond this host can connect)."""
        host = self.host_port[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def read_stdin(self) -> bool:
        if self.stdin is not None:
            return self.stdin
        return not (self.file or self.http_ingest or self.command)
