r"""The `--config` YAML file: custom JSON shapes mapped onto the canonical record, extra labels,
and custom metrics from numeric fields.

`load_config(path)` is a pure function: it reads the file and returns a validated `Config`, or
raises `ConfigError` whose message names the file and the line (`app.yaml:12: mappings[0].fields.
duration.unit: ...`). Nothing else is read or changed, so a reload can simply call it again.

```yaml
extra_labels: [src_lang, tgt_lang]     # labels read from application JSON lines (canonical names)
metrics:                               # custom metrics from numeric fields of any JSON line
  - {name: app_gpu_memory_bytes, type: gauge, path: gpu_memory_mb, scale: 1048576}
mappings:                              # shapes whose names are not the canonical ones
  - name: translator
    match: {service: translator}       # only lines whose fields have these values
    fields:
      request_id: meta.id
      model: meta.model
      duration: {path: timing.total, unit: ms}
      input_tokens: usage.in
    extra_labels: {src_lang: langs.src, tgt_lang: langs.tgt}
slo:                                   # service level objectives, judged per finished request
  - {name: chat-fast, model: "llama-*", ttft: 500ms, tpot: 50ms, target: 99%}
buckets:                               # histogram bucket bounds in seconds (SLO thresholds are added)
  ttft: [0.1, 0.25, 0.5, 1, 2.5]
accounting:                            # per-tenant requests, tokens and cost
  tenant: [auth.team]                  # dotted paths, before the built-in ones (user, metadata.team, ...)
  allow: [search, billing]             # optional: only these tenants are labels
  hash_keys: true                      # an API key alone is shown as key:<salted hash>, never as is
  key_salt: change-me-please
  currency: USD
  prices:                              # per million tokens; `default` for any other model
    llama-3-8b: {input: 0.05, output: 0.10, cached_input: 0.025}
    default: {input: 0.10, output: 0.20}
rules:                                 # text lines: named groups are application JSON field names
  - name: trtllm-done
    provider: trtllm
    pattern: 'request (?P<request_id>\S+) finished in (?P<duration_ms>[0-9.]+)ms status=(?P<status>\w+)'
    labels: {tenant: team}             # label <- group
  - name: lmdeploy-pair                # start/end lines paired by their request_id group
    start: '(?P<ts>\S+ \S+) .* session (?P<request_id>\d+) start'
    end: '(?P<ts>\S+ \S+) .* session (?P<request_id>\d+) end'
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llm_exporter.problems import ConfigError, StartupError
from llm_exporter.units import NAMED_UNIT_DIV, parse_duration

#: label names the request families already carry (an extra label cannot reuse them)
RESERVED_LABELS = frozenset({"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
                             "error_type", "outcome", "gen_ai_token_type", "gen_ai_response_finish_reason",
                             "le", "quantile", "engine", "method", "path", "code", "level", "source",
                             "llm_adapter"})
MAX_EXTRA_LABELS = 8
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")

DurationUnit = Literal["s", "ms", "us", "ns", "min", "h"]
#: units per second of each unit a mapping may name (seconds = `llm_exporter.units.to_seconds(value, div)`);
#: the table is `llm_exporter.units`', and `DurationUnit` lists its names (a test holds them equal)
UNIT_DIV = NAMED_UNIT_DIV
DURATION_FIELDS = ("duration", "queue_time", "inference_time", "ttft", "tpot")
PLAIN_FIELDS = ("request_id", "model", "operation", "outcome", "error_type", "input_tokens", "output_tokens",
                "finish_reason")


def _dotted(v: str) -> str:
    if not _PATH.fullmatch(v):
        raise ValueError(f"not a dotted field path: {v!r}")
    return v


#: a dotted field path into a JSON line (`usage.prompt_tokens`, `choices.0.finish_reason`)
DottedPath = Annotated[str, AfterValidator(_dotted)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """Where a canonical field comes from: a dotted path, and for durations the unit of a number."""

    path: DottedPath
    unit: DurationUnit | None = Field(None, description="unit of a numeric duration; strings like '735ms' "
                                                         "carry their own")


class MetricSpec(_Strict):
    """A custom metric fed from one numeric field of a JSON line."""

    name: str
    type: Literal["counter", "gauge", "histogram"]
    path: DottedPath
    help: str = ""
    scale: float = Field(1.0, gt=0, description="multiply the value (e.g. 1048576 for MiB -> bytes)")
    buckets: list[float] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _METRIC.fullmatch(v):
            raise ValueError(f"not a Prometheus metric name: {v!r}")
        if v.startswith(("llm_", "gen_ai_", "hw_", "llm_exporter_")):
            raise ValueError(f"{v!r}: the llm_, gen_ai_ and hw_ prefixes belong to the built-in metrics")
        return v

    @model_validator(mode="after")
    def _shape(self) -> MetricSpec:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"{self.type} {self.name!r} must not end in _total (counters only)")
        if self.buckets is not None:
            if self.type != "histogram":
                raise ValueError("buckets are for histograms only")
            if not self.buckets or sorted(set(self.buckets)) != self.buckets:
                raise ValueError("buckets must be strictly increasing")
        return self


def _labels(v: Any) -> Any:
    """`[a, b]` means `{a: a, b: b}` (the label named like its field)."""
    if isinstance(v, list):
        return {str(x): str(x) for x in v}
    return v


ExtraLabels = Annotated[dict[str, str], Field(default_factory=dict)]


class Mapping(_Strict):
    """One custom JSON shape: which lines it applies to and where their canonical fields are."""

    name: str
    match: dict[str, str | int | float | bool] = Field(default_factory=dict)
    provider: str = "app"
    fields: dict[str, FieldSpec]
    extra_labels: ExtraLabels
    metrics: list[MetricSpec] = Field(default_factory=list)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for k, spec in v.items():
            if k not in DURATION_FIELDS and k not in PLAIN_FIELDS:
                raise ValueError(f"unknown canonical field {k!r}; known: "
                                 f"{', '.join((*PLAIN_FIELDS, *DURATION_FIELDS))}")
            out[k] = {"path": spec} if isinstance(spec, str) else spec
            if k not in DURATION_FIELDS and isinstance(spec, dict) and spec.get("unit") is not None:
                raise ValueError(f"{k}: only durations take a unit")
        if not out:
            raise ValueError("a mapping needs at least one field")
        return out

    @field_validator("extra_labels", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        return _labels(v)

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if not _LABEL.fullmatch(v) or len(v) > 32:
            raise ValueError(f"provider must be a short identifier, got {v!r}")
        return v


# -- service level objectives and histogram buckets (`slo:`, `buckets:`) ----------------------

#: what an objective can put a threshold on, and the histogram each one's buckets belong to
SLO_FIELDS = ("ttft", "tpot", "duration", "queue")
#: histograms whose bucket bounds `buckets:` can set
BUCKET_HISTOGRAMS = ("duration", "ttft", "tpot", "queue", "inference")
MAX_SLOS = 20
MAX_BUCKETS = 40


def _seconds(v: Any) -> Any:
    """A threshold: a number of seconds or a duration string (`500ms`, `1.5s`, `2m`)."""
    if isinstance(v, bool):
        raise ValueError("expected seconds or a duration such as 500ms")
    if isinstance(v, int | float):
        secs: float | None = float(v)
    elif isinstance(v, str):
        secs = parse_duration(v)
    else:
        secs = None
    if secs is None or secs != secs or secs <= 0 or secs == float("inf"):
        raise ValueError(f"expected a positive number of seconds or a duration such as 500ms, got {v!r}")
    return secs


class Slo(_Strict):
    """One objective: requests of the selected models are good when they succeed within every
    threshold they can be judged on."""

    name: str
    model: list[str] = Field(default_factory=list, description="model names or globs; empty: every model")
    ttft: float | None = None
    tpot: float | None = None
    duration: float | None = None
    queue: float | None = None
    target: float = Field(0.99, gt=0, lt=1, description="the share of judged requests meant to be good "
                                                        "(0.99 or '99%'); the burn-rate alerts' error budget")

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                return float(v.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"target must be a ratio (0.99) or a percentage (99%), got {v!r}") from None
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", v):
            raise ValueError(f"slo name must be 1-64 letters, digits, _ . : - (a label value), got {v!r}")
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("ttft", "tpot", "duration", "queue", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        return None if v is None else _seconds(v)

    @model_validator(mode="after")
    def _some(self) -> Slo:
        if not self.thresholds:
            raise ValueError(f"slo {self.name!r} needs at least one of {', '.join(SLO_FIELDS)}")
        return self

    @property
    def thresholds(self) -> dict[str, float]:
        """field -> seconds, for the thresholds this objective sets."""
        return {f: v for f in SLO_FIELDS if (v := getattr(self, f)) is not None}


class Buckets(_Strict):
    """Bucket upper bounds (seconds) per request histogram; unset: the built-in bounds."""

    duration: list[float] | None = None
    ttft: list[float] | None = None
    tpot: list[float] | None = None
    queue: list[float] | None = None
    inference: list[float] | None = None

    @field_validator(*BUCKET_HISTOGRAMS, mode="before")
    @classmethod
    def _bounds(cls, v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, list) or not v:
            raise ValueError("expected a list of bucket bounds in seconds")
        out = [_seconds(x) for x in v]
        if sorted(set(out)) != out:
            raise ValueError("bucket bounds must be strictly increasing")
        if len(out) > MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} bounds per histogram")
        return out


# -- accounting: tenants, keys, prices ------------------------------------------------------------

def _price(v: Any) -> Any:
    """A price per million tokens, read from its decimal text (YAML 0.15 is exactly 0.15)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError("a price is a number")
    try:
        d = Decimal(repr(v) if isinstance(v, float) else str(v))
    except InvalidOperation:
        raise ValueError(f"not a number: {v!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"a price is a finite number >= 0, got {v!r}")
    if d > 10**9 or d != d.quantize(Decimal("0.000001")):
        raise ValueError(f"{v!r}: at most 6 decimals and 10^9 per million tokens")
    return d


PerMillion = Annotated[Decimal, BeforeValidator(_price)]


class Price(_Strict):
    """A model's prices, per million tokens, in the accounting currency."""

    input: PerMillion
    output: PerMillion
    cached_input: PerMillion | None = Field(None, description="prompt-cache reads (default: the input price)")


class AccountingConfig(_Strict):
    """`accounting:`: where the tenant is, which tenants may be labels, keys, prices."""

    tenant: list[DottedPath] = Field(default_factory=list, description="dotted paths, first found wins")
    allow: list[str] | None = Field(None, description="only these tenants are labels; others are _OTHER")
    max_tenants: int | None = Field(None, ge=1, le=100_000, description="distinct tenants (default: --label-limit)")
    hash_keys: bool = False
    key_salt: str | None = Field(None, min_length=8)
    currency: str = "USD"
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> AccountingConfig:
        if self.hash_keys and not self.key_salt:
            raise ValueError("hash_keys needs key_salt (8 characters or more, kept the same across restarts)")
        if not re.fullmatch(r"[A-Za-z]{3}|[A-Za-z_][A-Za-z0-9_]{0,15}", self.currency):
            raise ValueError(f"currency must be a short code such as USD, got {self.currency!r}")
        return self

    def describe(self) -> list[str]:
        from llm_exporter.accounting import DEFAULT_TENANT_PATHS

        out = ["tenant <- " + ", ".join([*self.tenant, *DEFAULT_TENANT_PATHS]) + " (first found)"]
        if self.allow is not None:
            out.append(f"  allowed tenants: {len(self.allow)}")
        out.append("  API keys: " + ("salted hash" if self.hash_keys else "not used"))
        for name, p in self.prices.items():
            out.append(f"price {name}: input {p.input}, output {p.output}, cached input "
                       f"{p.cached_input if p.cached_input is not None else p.input} {self.currency}/1M tokens")
        return out

# -- text-line rules (`rules:`) -----------------------------------------------------------------

MAX_RULES = 100


def _unique_names(names: list[str], what: str, cap: int, plural: str) -> None:
    """A named list of the config (rules, objectives): unique names, at most `cap` entries."""
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what} names must be unique: {', '.join(dup)}")
    if len(names) > cap:
        raise ValueError(f"at most {cap} {plural}")


class Rule(_Strict):
    """A text-line rule: one `pattern` whose match is a finished request, or `start` and `end`
    patterns paired by their `request_id` group. Named groups are application JSON field names."""

    name: str
    provider: str = "app"
    labels: ExtraLabels
    max_open: int = Field(10_000, ge=1, le=1_000_000, description="open requests a start/end rule tracks per "
                                                                  "stream; past it the oldest are evicted")
    pattern: str | None = None
    start: str | None = None
    end: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", v):
            raise ValueError(f"rule name must be 1-64 letters, digits, _ . : -, got {v!r}")
        return v

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if not _LABEL.fullmatch(v) or len(v) > 32:
            raise ValueError(f"provider must be a short identifier, got {v!r}")
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        return _labels(v)

    @field_validator("pattern", "start", "end")
    @classmethod
    def _pattern(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            from llm_exporter.rules import check_pattern
            check_pattern(v, info.data.get("labels") or {}, need_id=info.field_name != "pattern")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if (self.pattern is None) == (self.start is None and self.end is None):
            raise ValueError(f"rule {self.name!r} needs either pattern, or start and end")
        if self.pattern is None and (self.start is None or self.end is None):
            raise ValueError(f"rule {self.name!r}: start and end come together")
        if self.pattern is None:
            from llm_exporter.rules import compile_pattern
            groups = set(compile_pattern(self.start).groupindex) | set(compile_pattern(self.end).groupindex)
            for label, g in self.labels.items():
                if g not in groups:
                    raise ValueError(f"label {label!r} reads group {g!r}, which neither start nor end has")
        return self


class Config(_Strict):
    """The whole `--config` file."""

    extra_labels: ExtraLabels
    metrics: list[MetricSpec] = Field(default_factory=list)
    mappings: list[Mapping] = Field(default_factory=list)
    slo: list[Slo] = Field(default_factory=list)
    buckets: Buckets = Field(default_factory=Buckets)
    accounting: AccountingConfig | None = None
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: list[Rule]) -> list[Rule]:
        _unique_names([r.name for r in v], "rule", MAX_RULES, "rules")
        return v

    @field_validator("slo")
    @classmethod
    def _slos(cls, v: list[Slo]) -> list[Slo]:
        _unique_names([o.name for o in v], "slo", MAX_SLOS, "objectives")
        return v

    def bucket_bounds(self, histogram: str, default: Sequence[float]) -> tuple[float, ...]:
        """The bounds of one request histogram: `buckets:` (or the built-in ones) plus every SLO
        threshold on it, so the histogram has a bucket edge exactly at each threshold."""
        base = getattr(self.buckets, histogram, None) or list(default)
        extra = [s.thresholds[histogram] for s in self.slo if histogram in s.thresholds]
        return tuple(sorted({*base, *extra}))

    @field_validator("extra_labels", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        return _labels(v)

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = self.label_names
        for n in names:
            if not _LABEL.fullmatch(n) or n.startswith("__"):
                raise ValueError(f"extra label {n!r} is not a valid label name")
            if n in RESERVED_LABELS:
                raise ValueError(f"extra label {n!r} is a built-in label name")
        if len(names) > MAX_EXTRA_LABELS:
            raise ValueError(f"at most {MAX_EXTRA_LABELS} extra labels (each multiplies the series)")
        if len(self.all_metrics) > MAX_METRICS:
            raise ValueError(f"{len(self.all_metrics)} metrics: at most {MAX_METRICS} may be defined")
        seen: dict[str, MetricSpec] = {}
        for spec in self.all_metrics:
            old = seen.setdefault(spec.name, spec)
            if old.type != spec.type or old.buckets != spec.buckets:
                raise ValueError(f"metric {spec.name!r} is defined twice with different types or buckets")
        return self

    @property
    def label_names(self) -> tuple[str, ...]:
        """Every extra label name, in first-seen order: all request families carry all of them."""
        out = dict.fromkeys(self.extra_labels)
        for m in self.mappings:
            out.update(dict.fromkeys(m.extra_labels))
        for r in self.rules:
            out.update(dict.fromkeys(r.labels))
        return tuple(out)

    @property
    def wants_custom_adapter(self) -> bool:
        """Whether lines need the `custom-json` adapter (mappings, extra labels or metrics)."""
        return bool(self.mappings or self.extra_labels or self.metrics)

    @property
    def all_metrics(self) -> list[MetricSpec]:
        return [*self.metrics, *(s for m in self.mappings for s in m.metrics)]

    def describe(self) -> list[str]:
        """What the file defines, one line each (for `check-config`)."""
        out = [f"extra labels on every request metric: {', '.join(self.label_names) or '(none)'}"]
        if self.extra_labels:
            out.append("application JSON lines: " + ", ".join(f"{k} <- {v}" for k, v in self.extra_labels.items()))
        for m in self.mappings:
            when = ", ".join(f"{k} == {v!r}" for k, v in m.match.items()) or "any JSON line with these fields"
            fields = ", ".join(f"{k} <- {s.path}" + (f" ({s.unit})" if s.unit else "") for k, s in m.fields.items())
            out.append(f"mapping {m.name!r} (provider {m.provider}) when {when}: {fields}")
            if m.extra_labels:
                out.append("  labels: " + ", ".join(f"{k} <- {v}" for k, v in m.extra_labels.items()))
        for s in self.all_metrics:
            out.append(f"metric {s.name} ({s.type}) <- {s.path}" + (f" x {s.scale:g}" if s.scale != 1 else ""))
        for o in self.slo:
            th = ", ".join(f"{k} <= {v:g}s" for k, v in o.thresholds.items())
            out.append(f"slo {o.name!r} on {', '.join(o.model) or 'every model'}: good when it succeeds with {th}; "
                       f"target {o.target:.4g}")
        for r in self.rules:
            lab = (" labels: " + ", ".join(f"{k} <- {v}" for k, v in r.labels.items())) if r.labels else ""
            if r.pattern is not None:
                out.append(f"rule {r.name!r} (provider {r.provider}): a line matching {r.pattern!r} is a request"
                           + lab)
            else:
                out.append(f"rule {r.name!r} (provider {r.provider}): a request starts at {r.start!r}, ends at "
                           f"{r.end!r} with the same request_id (at most {r.max_open} open)" + lab)
        for h in BUCKET_HISTOGRAMS:
            given = getattr(self.buckets, h)
            extra = sorted({o.thresholds[h] for o in self.slo if h in o.thresholds})
            if given is not None:
                out.append(f"buckets {h}: {', '.join(f'{b:g}' for b in self.bucket_bounds(h, given))}"
                           + (" (with the SLO thresholds)" if extra else ""))
            elif extra:
                added = ", ".join(f"{b:g}" for b in extra)
                out.append(f"buckets {h}: the built-in bounds and the SLO thresholds {added}")
        if self.accounting is not None:
            out.extend("accounting: " + x if not x.startswith(" ") else x for x in self.accounting.describe())
        return out

    def field_paths(self) -> list[tuple[str, str]]:
        """(where in the file, dotted path) of every field the file reads from JSON lines."""
        out = [(f"extra_labels.{k}", v) for k, v in self.extra_labels.items()]
        out += [(f"metrics.{m.name}", m.path) for m in self.metrics]
        for m in self.mappings:
            out += [(f"mappings[{m.name}].fields.{k}", f.path) for k, f in m.fields.items()]
            out += [(f"mappings[{m.name}].extra_labels.{k}", v) for k, v in m.extra_labels.items()]
            out += [(f"mappings[{m.name}].metrics.{s.name}", s.path) for s in m.metrics]
        if self.accounting is not None:
            out += [("accounting.tenant", p) for p in self.accounting.tenant]
        return out


#: the largest --config file read (`--config-max-bytes`); a bigger one is refused unread
MAX_CONFIG_BYTES = 1 << 20
#: custom metrics one --config may define (each is a family of series)
MAX_METRICS = 500


#: limits people look for in the file: they are options (flags or LLM_EXPORTER_* variables)
_FLAG_ONLY = {
    "limits": ": limits are options, not --config keys: --label-limit N, --max-line-bytes N, --queue-chunks N",
    "label_limit": ": it is an option, not a --config key: --label-limit N (or LLM_EXPORTER_LABEL_LIMIT)",
    "max_line_bytes": ": it is an option, not a --config key: --max-line-bytes N (or LLM_EXPORTER_MAX_LINE_BYTES)",
    "queue_chunks": ": it is an option, not a --config key: --queue-chunks N (or LLM_EXPORTER_QUEUE_CHUNKS)",
}


def load_config(path: Path | str, max_bytes: int = MAX_CONFIG_BYTES) -> Config:
    """Read and validate a config file (ConfigError with a line number on any problem)."""
    return load_yaml_model(path, Config, ConfigError, max_bytes=max_bytes)


M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path | str, model: type[M], error: type[StartupError],
                    max_bytes: int = MAX_CONFIG_BYTES) -> M:
    """Read a YAML file into a pydantic model; any problem raises `error` with one line naming the
    file and, where there is one, the YAML line (shared by --config and --web-config). A file
    over `max_bytes` is refused unread; that error carries `limit = True`."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{p}: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        too_big = error(f"{p}: larger than {max_bytes} bytes (--config-max-bytes)")
        if isinstance(too_big, ConfigError):
            too_big.limit = True
        raise too_big
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{p}: not UTF-8 text") from None
    import yaml  # only a --config or --web-config file needs the YAML reader (a tenth of start-up)

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None)
        raise error(f"{p}{where}: not valid YAML" + (f" ({problem})" if problem else "")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{p}:1: expected a mapping (key: value) at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        loc = tuple(err["loc"])
        line = _line_of(node, loc)
        where = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in loc).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + (_FLAG_ONLY.get(str(loc[0]), "") if len(loc) == 1 and model is Config else "")
        raise error(f"{p}:{line}: {where + ': ' if where else ''}{msg}") from None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at `loc` (the deepest one that exists)."""
    import yaml

    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    line = k.start_mark.line + 1
                    nxt = v
                    break
            if nxt is None:
                return line
            node = nxt
            if not isinstance(nxt, yaml.ScalarNode):
                continue
            return nxt.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line
