"""The canonical records that adapters produce and the metrics consume, in base units.

Records are TypedDicts so the hot path builds plain dicts, while pydantic validates them
(`validate_record`) and describes them (`llm-exporter schema`). Every adapter output is one of:

- `RequestRecord`: one finished request (seconds, tokens);
- `StatsRecord`: a server's periodic stats line (gauges);
- `HttpRecord`: one access-log line;
- `LogRecord`: one log record of the server's own, by level;
- `ServerErrorRecord`: one engine-level incident (engine death, a crashed runner or shard), never a
  failed request;
- `TokensRecord`: prompt tokens a server reports per batch (not per request);
- `CustomRecord`: one value for a metric the `--config` file defines;
- `StartupRecord`: what one start-up line says (phase durations, capacity, memory);
- `HintRecord`: why a metric is missing (a key of `llm_exporter.hints.HINTS`);
- `EvictedRecord`: open requests a start/end pairing table dropped (`llm_exporter.pairing`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from llm_exporter.label_rules import sanitize

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
    prompt_tokens: NotRequired[Annotated[int | None, Field(
        ge=0, strict=True, description="the whole prompt, cached part included, where the source states it")]]
    cached_tokens: NotRequired[Annotated[int | None, Field(
        ge=0, strict=True, description="the part of the prompt served from a prefix cache")]]
    extra_labels: NotRequired[dict[str, str]]
    tenant: NotRequired[Annotated[str | None, Field(description="who made the request (a label after bounding)")]]
    tenant_key: NotRequired[Annotated[str | None, Field(description="an API key, shown only as a salted hash")]]
    adapter: NotRequired[Annotated[str | None, Field(description="llm_adapter: the LoRA adapter used")]]
    cost_pico: NotRequired[Annotated[int | None, Field(ge=0, strict=True,
                                                       description="logged cost, 1e-12 currency units")]]


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


class ServerErrorRecord(TypedDict):
    """One engine-level incident: engine death, a fatal scheduler or shard error, a runner crash."""

    kind: Literal["server_error"]
    provider: str
    error_type: str


class TokensRecord(TypedDict):
    """Prompt tokens a server reports for a batch (SGLang's `Prefill batch` lines)."""

    kind: Literal["tokens"]
    provider: str
    model: str
    engine: str
    prompt_tokens: Tokens
    cached_tokens: NotRequired[Tokens | None]


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


class HintRecord(TypedDict):
    """A server's log cannot give some metric; `hint` names the advice (`llm_exporter.hints`)."""

    kind: Literal["hint"]
    provider: str
    hint: str


class EvictedRecord(TypedDict):
    """Open requests dropped from a start/end pairing table (full) before their end line came."""

    kind: Literal["evicted"]
    provider: str
    n: Tokens


Record = (RequestRecord | StatsRecord | HttpRecord | LogRecord | ServerErrorRecord | TokensRecord | CustomRecord
          | StartupRecord | HintRecord | EvictedRecord)

_RECORD: TypeAdapter[Record] = TypeAdapter(
    Annotated[Record, Field(discriminator="kind")]
)
REQUEST_ADAPTER: TypeAdapter[RequestRecord] = TypeAdapter(RequestRecord)


#: the largest number of seconds or tokens one record may carry; beyond, the line is `invalid`
#: (a year of seconds, 2**53 tokens: larger is a unit mistake or an attack, and sums of such
#: values could overflow a histogram's float sum to +Inf)
MAX_SECONDS = 3.2e7
MAX_TOKENS = 1 << 53
#: the largest magnitude of a gauge or custom value
MAX_VALUE = 1e18
_SECOND_FIELDS = ("duration_s", "queue_s", "inference_s", "ttft_s", "tpot_s")
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "prompt_tokens", "cached_tokens")
#: the largest logged cost of one request, in pico-units (10^9 currency units)
MAX_COST_PICO = 10**21
_STATS_FIELDS = ("running", "waiting", "swapped", "kv_cache_usage", "prefix_cache_hit", "prompt_tps",
                 "generation_tps")


def _bad_number(v: Any, hi: float) -> bool:
    t = type(v)
    if t is not int and t is not float:
        return True
    return not 0 <= v <= hi  # also NaN (every comparison with NaN is False)


def problem(rec: Any) -> str | None:
    """Why a record may not be applied (None: it may), checked before any of a line's records is
    applied, so a line counts whole or not at all. Label values are also made safe here
    (`label_rules.sanitize`)."""
    if type(rec) is not dict:
        return None  # not ours to judge: applying it fails and is counted (adapter_error)
    kind = rec.get("kind")
    if kind == "request":
        for f in _SECOND_FIELDS:
            v = rec.get(f)
            if v is not None and _bad_number(v, MAX_SECONDS):
                return "bad_value"
        for f in _TOKEN_FIELDS:
            v = rec.get(f)
            if v is not None and (type(v) is not int or not 0 <= v <= MAX_TOKENS):
                return "bad_value"
        v = rec.get("cost_pico")
        if v is not None and (type(v) is not int or not 0 <= v <= MAX_COST_PICO):
            return "bad_value"
    elif kind == "stats":
        for f in _STATS_FIELDS:
            v = rec.get(f)
            if v is not None and _bad_number(v, MAX_VALUE):
                return "bad_value"
    elif kind == "tokens":
        for f in ("prompt_tokens", "cached_tokens"):
            v = rec.get(f)
            if v is not None and (type(v) is not int or not 0 <= v <= MAX_TOKENS):
                return "bad_value"
    elif kind == "custom":
        v = rec.get("value")
        if type(v) is not int and type(v) is not float:
            return "bad_value"
        if not -MAX_VALUE <= float(v) <= MAX_VALUE:
            return "bad_value"
    elif kind == "evicted":
        n = rec.get("n")
        return None if type(n) is int and n >= 0 else "bad_value"
    elif kind not in ("http", "log", "server_error"):
        return None  # not ours to judge: applying it fails and is counted (adapter_error)
    sanitize(rec)
    return None


def validate_record(obj: Any) -> Record:
    """Validate any record built by an adapter (raises pydantic.ValidationError)."""
    return _RECORD.validate_python(obj)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the canonical request record."""
    return REQUEST_ADAPTER.json_schema()
