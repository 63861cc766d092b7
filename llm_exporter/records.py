"""The canonical records that adapters produce and the metrics consume, in base units.

Records are TypedDicts so the hot path builds plain dicts, while pydantic validates them
(`validate_record`) and describes them (`llm-exporter schema`). Every adapter output is one of:

- `RequestRecord`: one finished request (seconds, tokens);
- `StatsRecord`: a server's periodic stats line (gauges);
- `HttpRecord`: one access-log line;
- `LogRecord`: one log record of the server's own, by level;
- `CustomRecord`: one value for a metric the `--config` file defines;
- `StartupRecord`: what one start-up line says (phase durations, capacity, memory).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True, description="seconds")]
Tokens = Annotated[int, Field(ge=0, strict=True, description="tokens")]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Outcome = Literal["success", "error", "aborted"]


class RequestRecord(TypedDict):
    """One finished request, whatever server or application logged it."""

    kind: Literal["request"]
    provider: Annotated[str, Field(description="gen_ai_provider_name: vllm, tgi, ..., or app")]
    operation: Annotated[str, Field(description="gen_ai_operation_name: chat, text_completion, ...")]
    model: Annotated[str, Field(description="gen_ai_request_model; empty when unknown")]
    outcome: Outcome
    error_type: Annotated[str, Field(description="empty on success; a bounded class otherwise")]
    request_id: NotRequired[str | None]
    finish_reason: NotRequired[str | None]
    input_tokens: NotRequired[Tokens | None]
    output_tokens: NotRequired[Tokens | None]
    duration_s: NotRequired[Seconds | None]
    queue_s: NotRequired[Seconds | None]
    inference_s: NotRequired[Seconds | None]
    ttft_s: NotRequired[Seconds | None]
    tpot_s: NotRequired[Seconds | None]
    extra_labels: NotRequired[dict[str, str]]


class StatsRecord(TypedDict):
    """A periodic stats line: instantaneous gauges and interval averages."""

    kind: Literal["stats"]
    provider: str
    model: str
    engine: str
    running: NotRequired[NonNeg | None]
    waiting: NotRequired[NonNeg | None]
    swapped: NotRequired[NonNeg | None]
    kv_cache_usage: NotRequired[Ratio | None]
    prefix_cache_hit: NotRequired[Ratio | None]
    prompt_tps: NotRequired[NonNeg | None]
    generation_tps: NotRequired[NonNeg | None]


class HttpRecord(TypedDict):
    """One HTTP access-log line (uvicorn, GIN, llama.cpp)."""

    kind: Literal["http"]
    provider: str
    method: str
    path: str
    code: str
    duration_s: NotRequired[Seconds | None]


class LogRecord(TypedDict):
    """One log record of the server's own (a traceback is one record)."""

    kind: Literal["log"]
    provider: str
    level: str
    error_type: NotRequired[str | None]


class CustomRecord(TypedDict):
    """One value of a metric defined in the `--config` file (`metrics:`)."""

    kind: Literal["custom"]
    name: str
    value: Annotated[float, Field(allow_inf_nan=False)]
    labels: dict[str, str]


class StartupRecord(TypedDict):
    """What one start-up line of a server says (see `llm_exporter.startup`)."""

    kind: Literal["startup"]
    provider: str
    start: NotRequired[bool]
    ready: NotRequired[bool]
    phases: NotRequired[dict[str, Seconds]]
    kv_cache_tokens: NotRequired[Tokens]
    max_concurrency: NotRequired[NonNeg]
    memory_use: NotRequired[str]
    memory_bytes: NotRequired[NonNeg]


Record = RequestRecord | StatsRecord | HttpRecord | LogRecord | CustomRecord | StartupRecord

_RECORD: TypeAdapter[Record] = TypeAdapter(
    Annotated[Record, Field(discriminator="kind")]
)
REQUEST_ADAPTER: TypeAdapter[RequestRecord] = TypeAdapter(RequestRecord)


def validate_record(obj: Any) -> Record:
    """Validate any record built by an adapter (raises pydantic.ValidationError)."""
    return _RECORD.validate_python(obj)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the canonical request record."""
    return REQUEST_ADAPTER.json_schema()
