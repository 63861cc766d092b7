"""All options, from flags and `LLM_EXPORTER_<NAME>` environment variables (flags win)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def flag(default: Any = None, help: str = "", *, metavar: str | None = None, shown: str | None = None,
         repeat: bool = False, text: bool = False, default_factory: Any = None, **constraints: Any) -> Any:
    """A setting that is also a command-line flag `--name-with-dashes` (see `llm_exporter.flags`).

    `help` is the flag's help; the default is shown after it in brackets (`shown` replaces it, ""
    hides it; booleans never show it). `metavar` names the value; `repeat`: the flag may be given
    several times (a list); `text`: the value goes to the field as written (a size with its unit).
    """
    extra: dict[str, JsonValue] = {"flag": True, "metavar": metavar, "shown": shown, "repeat": repeat,
                                    "text": text}
    if default_factory is not None:
        return Field(default_factory=default_factory, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


class Settings(BaseSettings):
    """Validated options of one daemon run; every field but `command` is a flag, in this order."""

    model_config = SettingsConfigDict(env_prefix="LLM_EXPORTER_", extra="forbid", validate_default=True)

    listen: str = flag("0.0.0.0:10060", "where the HTTP server listens", metavar="HOST:PORT")
    web_config: Path | None = flag(None, "TLS and basic auth, exporter-toolkit format", metavar="FILE")
    stdin: bool | None = flag(None, "read stdin (default: on when no other source is given)")
    passthrough: bool = flag(True, "copy every byte read to stdout/stderr unchanged (default: on)")
    file: Annotated[list[str], NoDecode] = flag(help="follow files like tail -F (repeatable)", metavar="GLOB",
                                                repeat=True, default_factory=list)
    file_start: Literal["end", "beginning"] = flag("end", "where to start in a new file")
    file_labels: bool = flag(False, "add k8s_namespace_name, k8s_pod_name, k8s_container_name (from "
                             "/var/log/pods/... paths) or container_id (/var/lib/docker/containers/...) to the "
                             "request metrics (default: off)")
    state_dir: Path | None = flag(None, "keep read offsets and metric state here", metavar="DIR")
    http_ingest: bool = flag(False, "accept POST /ingest (NDJSON or a JSON array)")
    http_ingest_token: str | None = flag(None, "require Authorization: Bearer TOKEN", metavar="TOKEN")
    http_ingest_max_bytes: int = flag(8 << 20, "largest /ingest body", metavar="SIZE", shown="8MiB", text=True,
                                      gt=0)
    http_ingest_concurrency: int = flag(4, "/ingest bodies read and parsed at once; more wait their turn",
                                        metavar="N", gt=0)
    http_ingest_allow_unauthenticated: bool = flag(
        False, "accept /ingest without a token or basic auth on a non-loopback --listen (refused otherwise)")
    format: str = flag("auto", "auto (per line) or one adapter name", metavar="NAME", shown="")
    config: Path | None = flag(None, "YAML: field mappings, extra labels, custom metrics, objectives (slo:), "
                               "buckets", metavar="FILE")
    config_max_bytes: int = flag(1 << 20, "largest --config file read", metavar="SIZE", shown="1MiB", text=True,
                                 gt=0)
    gpu: Literal["auto", "on", "off"] = flag("auto", "NVML GPU readings")
    gpu_devices: Annotated[list[str], NoDecode] = flag(help="comma-separated GPU UUIDs or indices",
                                                       metavar="LIST", default_factory=list)
    gpu_interval: float = flag(5.0, "NVML poll interval", metavar="SECONDS", gt=0)
    gpu_processes: bool = flag(False, "per-process GPU memory (host pids); in wrapper mode, energy only from "
                               "the GPUs the server uses")
    log_level: Literal["debug", "info", "warning", "error"] = flag("info", "our own logs")
    max_line_bytes: int = flag(1 << 20, "longer lines count as too_long", metavar="SIZE", shown="1MiB",
                               text=True, gt=0)
    label_limit: int = flag(100, "distinct values per label", metavar="N", gt=0)
    queue_chunks: int = flag(128, "parse queue bound, in 64 KiB chunks", metavar="N", gt=0)
    command_kill_after: float = flag(30.0, "wrapper mode: SIGKILL the child if it still runs this long after "
                                     "SIGTERM", metavar="SECONDS", gt=0)
    shutdown_grace: float = flag(0.0, "serve /metrics after stop", metavar="SECONDS", ge=0)
    debug_endpoints: bool = flag(False, "enable /debug/rejects")
    web_enable_reload: bool = flag(False, "enable POST /-/reload (SIGHUP always reloads)")
    web_max_connections: int = flag(512, "open HTTP connections; at the cap the least recently active is "
                                    "closed", metavar="N", gt=0)
    web_idle_timeout: float = flag(30.0, "close a connection that sends no complete request head for this "
                                   "long", metavar="SECONDS", gt=0)
    web_read_timeout: float = flag(60.0, "time allowed to send a request body", metavar="SECONDS", gt=0)
    web_auth_queue: int = flag(32, "basic-auth password checks waiting at once; more get 401", metavar="N",
                               gt=0)
    #: not a flag: what follows `--` on the command line
    command: list[str] = Field(default_factory=list, description="wrapper mode: the child's argv")

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
