"""Application JSON request logs: one object per request, field names from the canonical table.

The line is parsed and validated in one pydantic pass (`validate_json` against `AppLine`, a
TypedDict of only the names we know: prompts and outputs are skipped by the JSON parser, never
turned into Python strings). Which names are present is then resolved once per key shape into a
`_Plan` (which key feeds which canonical field, with which unit) and cached, so the per-line
work is a few dict reads. Units come from the name's suffix (`_ms`, `_s`, ...) or from a
duration string (`"735.2ms"`, `"8m44s"`); a bare name means seconds.

Fast path (measured: pydantic's pass was a third of the per-line cost): the line is first parsed
with orjson, and when every known field holds a value that pydantic would hand back unchanged (a
string, a non-negative int, a non-negative float where a number is allowed, null), that dict is
used as it is. Anything else (a nested error object, a float where a count belongs, a bool, a
line orjson refuses) goes through pydantic, which alone decides what is valid, so both paths give
the same result.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, NamedTuple

from pydantic import Field, StrictBool, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from llm_exporter import errors
from llm_exporter.accounting import ADAPTER_NAMES, adapter_of, identify
from llm_exporter.adapters.base import Adapter, Invalid, json_object
from llm_exporter.units import NAME_SUFFIX_DIV, parse_duration

Num = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Count = Annotated[int, Field(ge=0, strict=True)]
DurationValue = Num | str | None

# canonical field -> accepted base names, first found wins (../CONTRACT.md)
DURATION_NAMES: dict[str, tuple[str, ...]] = {
    "duration_s": ("duration", "latency", "total_time", "response_time", "elapsed"),
    "queue_s": ("queue_time",),
    "inference_s": ("inference_time",),
    "ttft_s": ("ttft", "time_to_first_token", "first_token_latency"),
    "tpot_s": ("tpot", "time_per_output_token", "time_per_token"),
}
TOKEN_NAMES: dict[str, tuple[str, ...]] = {
    "input_tokens": ("input_tokens", "prompt_tokens", "tokens_in"),
    "output_tokens": ("output_tokens", "completion_tokens", "generated_tokens", "tokens_out"),
}
REQUEST_ID_NAMES = ("request_id", "id", "trace_id")
MODEL_NAMES = ("model", "model_name", "service")
OPERATION_NAMES = ("operation", "task_type", "task")
PATH_NAMES = ("path", "endpoint")
ERROR_NAMES = ("error_type", "error", "exception")
FINISH_NAMES = ("finish_reason", "done_reason", "stop_reason")
SUFFIXES: dict[str, float] = {"": 1.0, **NAME_SUFFIX_DIV}

PATH_OPERATIONS: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
    "/v1/responses": "chat",
    "/generate": "text_completion",
    "/generate_stream": "text_completion",
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
    "/v1/messages": "chat",
}



class _Details(TypedDict, total=False):
    cached_tokens: Count | None


class _Usage(TypedDict, total=False):
    prompt_tokens: Count | None
    completion_tokens: Count | None
    input_tokens: Count | None
    output_tokens: Count | None
    prompt_tokens_details: _Details | None
    input_tokens_details: _Details | None


class _Choice(TypedDict, total=False):
    finish_reason: str | None


class _ErrorObj(TypedDict, total=False):
    type: str | StrictBool | None
    code: str | StrictBool | int | None  # a bool stays one: `"code": false` names no error, `0` does


_fields: dict[str, Any] = {}
for _bases in DURATION_NAMES.values():
    for _b in _bases:
        for _suffix in SUFFIXES:
            _fields[_b + _suffix] = DurationValue
for _names in TOKEN_NAMES.values():
    for _n in _names:
        _fields[_n] = Count | None
for _n in (*REQUEST_ID_NAMES,):
    _fields[_n] = str | int | None
for _n in (*MODEL_NAMES, *OPERATION_NAMES, *PATH_NAMES, *FINISH_NAMES, "level", "levelname"):
    _fields[_n] = str | None
_fields["status"] = str | int | None
_fields["error_type"] = str | None
_fields["error"] = str | StrictBool | _ErrorObj | None  # `"error": false` on a request that went well
_fields["exception"] = str | None
_fields["usage"] = _Usage | None
# OpenAI response objects: `object` names the operation, `choices[0].finish_reason` the finish
_fields["object"] = str | None
_fields["choices"] = list[_Choice] | None
# Names only a server's own objects carry (Ollama API responses): such lines are left to its adapter
FOREIGN_NAMES = ("eval_count", "prompt_eval_count", "eval_duration", "prompt_eval_duration")
# ... and the keys every Ollama response has: one with none of the names above (a model load or unload,
# `{"model", "created_at", "message", "done_reason": "load", "done": true}`) is its adapter's too
FOREIGN_SHAPE = ("done", "created_at", "model")
FOREIGN_KEYS = ("done", "created_at")  # the shape's keys that are no application field
for _n in (*FOREIGN_NAMES, *FOREIGN_KEYS):
    _fields[_n] = Any
# Who made the request, and with which LoRA adapter (read by llm_exporter.accounting, which judges
# the values); LiteLLM's request and spend logs (`call_type` with a cost) are left to its adapter.
IDENTITY_NAMES = ("tenant", "team", "user", "metadata", "api_key", "user_api_key")
LITELLM_NAMES = ("call_type", "response_cost", "spend")
for _n in (*IDENTITY_NAMES, *ADAPTER_NAMES, *LITELLM_NAMES):
    _fields[_n] = Any
OBJECT_OPERATIONS = {"chat.completion": "chat", "chat.completion.chunk": "chat",
                     "text_completion": "text_completion", "response": "chat", "embedding": "embeddings"}

#: The wire schema of an application's JSON request line: only the names we read, all optional.
AppLine = TypedDict("AppLine", _fields, total=False)  # type: ignore[misc]
APP_LINE: TypeAdapter[Any] = TypeAdapter(AppLine)
_KNOWN = frozenset(_fields)

# What the fast path accepts per field (None is always accepted: every field is optional).
_DURATION, _COUNT, _ID, _TEXT, _USAGE, _ANY, _SLOW = range(7)
_USAGE_KEYS = tuple(_Usage.__annotations__)
_DETAIL_KEYS = frozenset({"prompt_tokens_details", "input_tokens_details"})


def _kind(tp: Any) -> int:
    """The fast-path check of a field, from its declared type."""
    if tp == DurationValue:
        return _DURATION
    if tp == Count | None:
        return _COUNT
    if tp == str | int | None:
        return _ID
    if tp == _Usage | None:
        return _USAGE
    if tp is Any:
        return _ANY
    if tp == str | None or tp == str | StrictBool | _ErrorObj | None:  # an error object or a bool takes the slow path
        return _TEXT
    return _SLOW  # any other type: pydantic decides every line that has this field


_KINDS = {name: _kind(tp) for name, tp in _fields.items()}


def _plain(obj: dict[str, Any], checks: tuple[tuple[str, int], ...]) -> bool:
    """Whether pydantic would return each checked value of `obj` unchanged (ints in duration
    fields become floats there; `build` divides them, which gives the same float)."""
    for key, kind in checks:
        if kind >= _ANY:
            if kind == _SLOW:
                return False
            continue
        v = obj[key]
        t = type(v)
        if t is str:
            if kind in (_COUNT, _USAGE):
                return False
        elif v is None:
            continue
        elif t is int:
            if kind in (_TEXT, _USAGE) or (kind != _ID and v < 0):
                return False
        elif t is float:
            if kind != _DURATION or not v >= 0:
                return False
        elif t is dict and kind == _USAGE:
            for sub in _USAGE_KEYS:
                u = v.get(sub)
                if u is None:
                    continue
                if sub in _DETAIL_KEYS:
                    if type(u) is not dict:
                        return False
                    ct = u.get("cached_tokens")
                    if ct is not None and (type(ct) is not int or ct < 0):
                        return False
                elif type(u) is not int or u < 0:
                    return False
        else:
            return False
    return True


class _Plan(NamedTuple):
    """Where one key shape's canonical fields come from."""

    evidence: bool
    durations: tuple[tuple[str, str, float], ...]  # (canonical, key, units per second)
    tokens: tuple[tuple[str, str], ...]
    usage: bool
    request_id: str | None
    model: str | None
    operation: str | None
    path: str | None
    status: str | None
    level: str | None
    error: str | None
    finish: str | None
    identity: bool  # the line may name a tenant, key or adapter


def _first(keys: frozenset[str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in keys:
            return n
    return None


def make_plan(keys: frozenset[str]) -> _Plan:
    durations = []
    for canon, bases in DURATION_NAMES.items():
        found = next(((b + s, sc) for b in bases for s, sc in SUFFIXES.items() if b + s in keys), None)
        if found is not None:
            durations.append((canon, found[0], found[1]))
    tokens = []
    for canon, names in TOKEN_NAMES.items():
        k = _first(keys, names)
        if k is not None:
            tokens.append((canon, k))
    request_id = _first(keys, REQUEST_ID_NAMES)
    status = "status" if "status" in keys else None
    error = _first(keys, ERROR_NAMES)
    finish = _first(keys, FINISH_NAMES)
    usage = "usage" in keys
    # A request line carries a measurement, an error, a finish reason, or a status with an id;
    # a JSON log line with none of these is not a request (it falls through to other adapters).
    evidence = bool(durations or tokens or usage or error or finish or (status and request_id))
    if evidence and (any(n in keys for n in FOREIGN_NAMES) or all(n in keys for n in FOREIGN_SHAPE)):
        evidence = False
    if evidence and "call_type" in keys and ("response_cost" in keys or "spend" in keys):
        evidence = False  # LiteLLM's request or spend log
    identity = any(n in keys for n in (*IDENTITY_NAMES, *ADAPTER_NAMES))
    return _Plan(evidence, tuple(durations), tuple(tokens), usage, request_id,
                 _first(keys, MODEL_NAMES), _first(keys, OPERATION_NAMES), _first(keys, PATH_NAMES),
                 status, _first(keys, ("level", "levelname")), error, finish, identity)


def text_fields(groups: dict[str, Any]) -> dict[str, Any]:
    """Named values cut from a text line (the groups that matched), typed as a JSON line would carry
    them: a count that is all digits becomes an int, an HTTP status code an int; anything else stays
    as it is (so a count of "12k" is refused as the same JSON value would be). A duration stays a
    string: the duration parser reads "735.2" in the name's unit exactly as the number 735.2."""
    out: dict[str, Any] = {}
    for k, v in groups.items():
        if _KINDS.get(k) == _COUNT:
            out[k] = int(v) if v.isascii() and v.isdigit() else v
        elif k == "status" and v.isascii() and v.isdigit():
            out[k] = int(v)
        else:
            out[k] = v
    return out


#: names a text rule's group may not take: JSON objects and lists, and server-only names
NOT_TEXT = frozenset({"usage", "choices", *FOREIGN_NAMES, *FOREIGN_KEYS})
#: group names read as a count or a duration (check-config refuses a group that never matches a number)
NUMERIC_NAMES = frozenset(k for k, kind in _KINDS.items() if kind in (_COUNT, _DURATION))
KNOWN_NAMES = _KNOWN


def operation_from_path(path: str) -> str:
    p = path.split("?", 1)[0].rstrip("/")
    return PATH_OPERATIONS.get(p, "")


class AppJsonAdapter(Adapter):
    """Reads the JSON request lines that applications write (the four seed shapes and kin)."""

    name = "app-json"
    provider = "app"
    wants_obj = False
    _plans: ClassVar[dict[tuple[str, ...], _Plan]] = {}  # shared: shapes are few, and plans are pure
    # the fast path's cache: every key of a line (known or not) -> known keys to check, and the plan
    _shapes: ClassVar[dict[tuple[str, ...], tuple[tuple[tuple[str, int], ...], _Plan]]] = {}

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        raw = obj if obj is not None else json_object(line)  # the pipeline hands the decoded line in
        if raw is not None:
            keys = tuple(raw)
            shape = self._shapes.get(keys)
            if shape is None:
                known = tuple(k for k in keys if k in _KNOWN)
                shape = (tuple((k, _KINDS[k]) for k in known), make_plan(frozenset(known)))
                if len(self._shapes) < 4096:
                    self._shapes[keys] = shape
            if _plain(raw, shape[0]):
                plan = shape[1]
                return self.build(raw, plan, raw) if plan.evidence else None
        return self._validated(line, raw)  # unusual values, or not JSON to orjson: pydantic decides

    def _validated(self, line: bytes, raw: dict[str, Any] | None = None) -> Any:
        """The line judged by the pydantic schema alone (the authority the fast path agrees with)."""
        try:
            d = APP_LINE.validate_json(line)
        except ValidationError as e:
            first = e.errors(include_url=False, include_context=False, include_input=False)[0]
            if first["type"] in ("json_invalid", "dict_type"):  # not JSON, or not an object
                return None
            raise Invalid("bad_value") from None
        plan = self._plan(d)
        if not plan.evidence:
            return None
        return self.build(d, plan, raw if raw is not None else d)

    def _plan(self, d: dict[str, Any]) -> _Plan:
        keys = tuple(d)
        plan = self._plans.get(keys)
        if plan is None:
            plan = make_plan(frozenset(keys))
            if len(self._plans) < 4096:
                self._plans[keys] = plan
        return plan

    def read_fields(self, fields: dict[str, Any], provider: str) -> dict[str, Any]:
        """A request record from named values that are not a JSON line (a text rule's groups, as
        `text_fields` typed them), judged exactly as the same names in a JSON line: the same schema,
        plan and build, the tenant and LoRA adapter included (a `team` or `lora` group names them as
        the JSON field does). Always a request (the rule said so); `Invalid` names the first bad field."""
        try:
            d = APP_LINE.validate_python(fields)
        except ValidationError as e:
            first = e.errors(include_url=False, include_context=False, include_input=False)[0]
            raise Invalid(f"bad_value: {first['loc'][0]}") from None
        rec = self.build(d, self._plan(d), d)
        rec["provider"] = provider
        return rec

    @property
    def tenant_paths(self) -> tuple[str, ...]:
        """The `--config` file's `accounting.tenant` paths (looked at before the built-in names)."""
        acc = getattr(self.config, "accounting", None)
        return tuple(acc.tenant) if acc is not None else ()

    def build(self, d: dict[str, Any], plan: _Plan, raw: dict[str, Any]) -> dict[str, Any]:
        # one unpack instead of a NamedTuple attribute read per field (this runs for every line)
        _, durations, tokens, usage, request_id, model, operation, path, _, _, _, finish, identity = plan
        rec: dict[str, Any] = {"kind": "request", "provider": self.provider}
        for canon, key, div in durations:
            v = d[key]
            if v is None:
                continue
            if type(v) is str:
                v = parse_duration(v, div)
                if v is None:
                    raise Invalid("bad_duration")
            else:
                v = v / div  # a float even for an int and div 1, as pydantic's float would be
            rec[canon] = v
        for canon, key in tokens:
            v = d[key]
            if v is not None:
                rec[canon] = v
        if usage and (u := d["usage"]):
            if "input_tokens" not in rec:
                t = u.get("prompt_tokens", u.get("input_tokens"))
                if t is not None:
                    rec["input_tokens"] = t
            if "output_tokens" not in rec:
                t = u.get("completion_tokens", u.get("output_tokens"))
                if t is not None:
                    rec["output_tokens"] = t
            det = u.get("prompt_tokens_details") or u.get("input_tokens_details")
            if det and (ct := det.get("cached_tokens")) is not None:
                rec["cached_tokens"] = ct
        if "input_tokens" in rec:
            rec["prompt_tokens"] = rec["input_tokens"]  # an application's input tokens are its whole prompt
        if request_id is not None and (rid := d[request_id]) is not None:
            rec["request_id"] = str(rid)
        rec["model"] = (d[model] or "") if model else ""
        op = (d[operation] or "") if operation else ""
        if not op and path and (p := d[path]):
            op = PATH_OPERATIONS.get(p) or operation_from_path(p)
        if not op and (ob := d.get("object")):
            op = OBJECT_OPERATIONS.get(ob, "")
        rec["operation"] = op
        fr = d[finish] if finish else None
        if not fr and usage and (ch := d.get("choices")):
            fr = ch[0].get("finish_reason")
        if fr:
            rec["finish_reason"] = fr
        rec["outcome"], rec["error_type"] = self.outcome(d, plan)
        if identity or self.config is not None:
            paths = self.tenant_paths
            if identity or paths:
                rec["tenant"], rec["tenant_key"] = identify(raw, paths)
                if (a := adapter_of(raw)) is not None:
                    rec["adapter"] = a
        return rec

    @staticmethod
    def outcome(d: dict[str, Any], plan: _Plan) -> tuple[str, str]:
        err_name = errors.error_name(d[plan.error]) if plan.error is not None else ""
        status = d[plan.status] if plan.status else None
        level = d[plan.level] if plan.level is not None else None
        return errors.outcome_of(status, err_name, level)


_DURATION_MEANING = {"duration_s": "request duration, end to end", "queue_s": "time waiting before inference",
                     "inference_s": "inference time (prefill and decode)", "ttft_s": "time to the first token",
                     "tpot_s": "time per output token after the first"}
_UNIT_WORDS = {"": "seconds, or a duration string such as \"735.2ms\" or \"8m44s\"", "_ms": "milliseconds",
               "_millis": "milliseconds", "_us": "microseconds", "_ns": "nanoseconds"}


def _describe(name: str) -> str:
    for canon, bases in DURATION_NAMES.items():
        for base in bases:
            if name.startswith(base) and name[len(base):] in SUFFIXES:
                unit = _UNIT_WORDS.get(name[len(base):], "seconds")
                return f"{_DURATION_MEANING[canon]}, in {unit}"
    for canon, names in TOKEN_NAMES.items():
        if name in names:
            return f"{canon.replace('_', ' ')} of the request"
    for names, what in ((REQUEST_ID_NAMES, "request id (an exemplar, never a label)"),
                        (MODEL_NAMES, "model: gen_ai_request_model"),
                        (OPERATION_NAMES, "operation: gen_ai_operation_name (chat, text_completion, ...)"),
                        (PATH_NAMES, "HTTP path the operation is taken from (/v1/chat/completions: chat)"),
                        (FINISH_NAMES, "finish reason (stop, length, ...)")):
        if name in names:
            return what
    return {"status": "outcome: success/ok, error/failed, aborted, or an HTTP status code",
            "error_type": "error type (a short class name; folded into oom, timeout, validation, ... when known)",
            "error": "error: a type string, an object with type and code, or true/false",
            "exception": "exception name: the request failed",
            "level": "log level: ERROR marks a failed request", "levelname": "log level (Python logging)",
            "usage": "OpenAI usage object: prompt_tokens/input_tokens, completion_tokens/output_tokens",
            "object": "OpenAI object type (chat.completion, text_completion, embedding): the operation",
            "choices": "OpenAI choices: with usage, the first one's finish_reason",
            "tenant": "tenant: who made the request (llm_tenant_* metrics; bounded, never a secret)",
            "team": "tenant, when no `tenant` field",
            "user": "tenant (the OpenAI request's `user`), when no tenant or team",
            "metadata": "an object whose tenant, team or user names the tenant",
            "api_key": "an API key: with accounting.hash_keys, the tenant is its salted hash; never shown",
            "user_api_key": "an API key: with accounting.hash_keys, the tenant is its salted hash; never shown",
            "adapter": "LoRA adapter: llm_adapter", "lora": "LoRA adapter: llm_adapter",
            "lora_name": "LoRA adapter: llm_adapter", "adapter_id": "LoRA adapter: llm_adapter"}[name]


def line_schema() -> dict[str, Any]:
    """The JSON Schema of what this adapter reads from an application's request line: every field
    name it accepts (all optional; other fields are ignored), with what it feeds and its unit."""
    schema: dict[str, Any] = APP_LINE.json_schema()
    props = {k: v for k, v in schema["properties"].items()
             if k not in FOREIGN_NAMES and k not in FOREIGN_KEYS and k not in LITELLM_NAMES}
    for name, prop in props.items():
        prop.pop("title", None)
        prop["description"] = _describe(name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Application JSON request line",
        "description": (
            "One JSON object per line and per request, as an application logs it. Every field is optional "
            "and any other field is ignored (prompt and output text is never read). Among names for the same "
            "thing the first listed wins. A line counts as a request when it has a duration, a token count, "
            "usage, an error, a finish reason, or a status together with a request id; otherwise it is "
            "`unparsed`. A known field with a bad value (negative, wrong type) makes the line `invalid`."),
        "type": "object",
        "properties": props,
        "additionalProperties": True,
        "$defs": schema["$defs"],  # the usage, details, error and choice objects
    }
