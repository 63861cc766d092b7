"""Who used the tokens: per-tenant requests, tokens and cost, and the identity and LoRA adapter
fields that JSON request lines carry.

Adapters call `identify(obj, paths)` on a decoded JSON line to find the tenant (or, as a last
resort, an API key) and `adapter_of(obj)` for a LoRA adapter name; they put the raw values on the
request record (`tenant`, `tenant_key`, `adapter`). `TenantAccounting` turns those into bounded
label values and counters:

- a tenant value is a label only if it is short (`MAX_TENANT_LEN`), printable, not shaped like a
  secret, on the allow-list when there is one, and within the tenant limit; anything else is
  `_OTHER`, counted in `llm_exporter_label_overflow_total{metric="llm_tenant_requests_total",
  label="tenant"}`;
- an API key is never a label: with `hash_keys` on it becomes `key:` + a salted 12-hex-digit hash,
  otherwise it is not used at all;
- cost is kept in integer pico-units (10^-12 of the currency), so sums of many small costs are
  exact: a price per million tokens with up to 6 decimals is a whole number of pico-units per
  token, and a gateway's logged spend is read from its decimal text, rounded to a pico-unit.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from llm_exporter.adapters.base import get_path as _get_path
from llm_exporter.labels import OTHER, LabelLimiter

#: one currency unit in the internal cost unit
PICO = 10**12
#: longest tenant value kept as a label (longer: `_OTHER`, counted)
MAX_TENANT_LEN = 64
#: longest adapter name kept as a label (a longer one is cut to this)
MAX_ADAPTER_LEN = 64
TENANT_METRIC = "llm_tenant_requests_total"
OUTCOMES = ("success", "error", "aborted")
SEEN_CACHE = 16384  # raw tenant values remembered as admitted (the limiter is asked once each)

#: where the tenant is found on an application's JSON line when the config names no path (first wins)
DEFAULT_TENANT_PATHS: tuple[str, ...] = (
    "tenant", "metadata.tenant", "team", "metadata.team", "user", "metadata.user",
)
#: LiteLLM's request and spend logs: key alias, team, end user, user (first wins)
LITELLM_TENANT_PATHS: tuple[str, ...] = (
    "metadata.user_api_key_alias", "metadata.user_api_key_team_alias", "metadata.user_api_key_team_id",
    "team_id", "end_user", "metadata.user_api_key_end_user_id", "metadata.user_api_key_user_id", "user",
)
#: where an API key (or a gateway's hash of one) is: used only with `hash_keys`, never shown as is
KEY_PATHS: tuple[str, ...] = ("metadata.user_api_key_hash", "api_key", "user_api_key", "metadata.user_api_key")
#: an application's LoRA adapter field names (first wins)
ADAPTER_NAMES: tuple[str, ...] = ("adapter", "lora", "lora_name", "adapter_id")

#: value starts that mark a credential, never a label
_SECRET_STARTS = ("sk-", "sk_", "hf_", "gsk_", "xai-", "ghp_", "github_pat_", "AIza", "Bearer ", "bearer ",
                  "Basic ", "eyJ")


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted path (`metadata.user`), or None. A JSON-encoded object met on the way
    (LiteLLM's spend logs carry `metadata` as a string) is decoded."""
    return _get_path(obj, path, decode_text=True)


def _text(v: Any) -> str | None:
    """A usable identity value: a non-empty string or an integer id; anything else None. An integer
    outside the 64-bit range is no id: orjson reads one as a float where the schema keeps an int, and
    both paths of the app-json reader must give the same tenant."""
    if type(v) is str:
        return v if v and v != "None" else None
    if type(v) is int and -(2**63) <= v < 2**64:
        return str(v)
    return None


def identify(obj: dict[str, Any], paths: Sequence[str], defaults: Sequence[str] = DEFAULT_TENANT_PATHS,
             ) -> tuple[str | None, str | None]:
    """(tenant, key) of one JSON line: the first configured path found, else the first default one;
    the key (for `hash_keys`) only when no tenant is found."""
    for p in (*paths, *defaults):
        t = _text(obj.get(p) if "." not in p else get_path(obj, p))
        if t is not None:
            return t, None
    for p in KEY_PATHS:
        k = _text(obj.get(p) if "." not in p else get_path(obj, p))
        if k is not None:
            return None, k
    return None, None


def adapter_of(obj: dict[str, Any]) -> str | None:
    """The LoRA adapter an application's JSON line names (`adapter`, `lora`, `lora_name`), or None."""
    for n in ADAPTER_NAMES:
        v = obj.get(n)
        if type(v) is str and v:
            return v
        if type(v) is dict:  # {"lora": {"name": ...}}
            name = v.get("name") or v.get("lora_name")
            if type(name) is str and name:
                return name
    return None


def adapter_label(name: str) -> str:
    """A LoRA adapter's label value: a filesystem path is shown by its last part (the directory
    name), a hub id (`org/name`) as it is; cut to `MAX_ADAPTER_LEN`."""
    if name[:1] in ("/", ".", "~") or "\\" in name:
        name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if not name.isprintable():
        return OTHER
    return name[:MAX_ADAPTER_LEN]


def looks_secret(v: str) -> bool:
    """Whether a value looks like a credential (a known key prefix, a bearer token, a JWT)."""
    return v.startswith(_SECRET_STARTS)


def key_hash(key: str, salt: str) -> str:
    """The label shown for an API key: `key:` + 12 hex digits of HMAC-SHA256(salt, key)."""
    return "key:" + hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()[:12]


def pico_of_decimal_text(v: Any) -> int | None:
    """A logged amount of money (a JSON number or numeric string) in pico-units, read from its
    decimal text; None for anything that is not a finite, non-negative amount."""
    if type(v) is bool or type(v) not in (int, float, str):
        return None
    try:
        d = Decimal(repr(v) if type(v) is float else str(v))
    except InvalidOperation:
        return None
    if not d.is_finite() or d < 0:
        return None
    return int((d * PICO).to_integral_value(ROUND_HALF_EVEN))


def price_pico(per_million: Decimal) -> int:
    """A price per million tokens as whole pico-units per token (exact for up to 6 decimals)."""
    return int(per_million * 1_000_000)


class Prices:
    """Per-model prices in pico-units per token: (input, output, cached input)."""

    __slots__ = ("_default", "_models")

    def __init__(self, prices: dict[str, Any] | None) -> None:
        self._models: dict[str, tuple[int, int, int]] = {}
        self._default: tuple[int, int, int] | None = None
        for name, p in (prices or {}).items():
            cached = p.cached_input if p.cached_input is not None else p.input
            t = (price_pico(p.input), price_pico(p.output), price_pico(cached))
            if name == "default":
                self._default = t
            else:
                self._models[name] = t

    def __bool__(self) -> bool:
        return bool(self._models) or self._default is not None

    def of(self, model: str) -> tuple[int, int, int] | None:
        return self._models.get(model, self._default)


class TenantAccounting:
    """Per (tenant, provider, model) counters: requests by outcome, tokens by type, cost.

    Each series is one list `[success, error, aborted, input, output, cached_input, cost_pico,
    has_cost]`; the series count is bounded by the tenant limit times the model limit.
    """

    def __init__(self, limiter: Callable[[str, str], LabelLimiter], label_limit: int) -> None:
        self._limiter_of = limiter
        self.label_limit = label_limit
        self.series: dict[tuple[str, str, str], list[int]] = {}
        self.enabled = False  # `accounting:` is configured: every request counts, "" = unattributed
        self.allow: frozenset[str] | None = None
        self.salt: str | None = None
        self.prices = Prices(None)
        self.currency = "USD"
        self.paths: tuple[str, ...] = ()
        self._lim = limiter(TENANT_METRIC, "tenant")
        self._seen: dict[str, str] = {}  # raw value -> label value, for values already judged

    def configure(self, acc: Any) -> None:
        """Take an `accounting:` config section (None: zero config)."""
        self.enabled = acc is not None
        self.allow = frozenset(acc.allow) if acc is not None and acc.allow is not None else None
        self.salt = acc.key_salt if acc is not None and acc.hash_keys else None
        self.prices = Prices(acc.prices if acc is not None else None)
        self.currency = acc.currency if acc is not None else "USD"
        self.paths = tuple(acc.tenant) if acc is not None else ()
        limit = acc.max_tenants if acc is not None and acc.max_tenants is not None else self.label_limit
        self._lim.set_limit(limit)
        self._seen.clear()

    def tenant_label(self, tenant: str | None, key: str | None) -> str | None:
        """The label value of a record's identity; None: the record has none (not accounted)."""
        raw = tenant
        if raw is None:
            if key is None or self.salt is None:
                return None
            raw = key_hash(key, self.salt)
        else:
            hit = self._seen.get(raw)
            if hit is not None:
                return hit
            if looks_secret(raw):
                if self.salt is None:
                    self._lim.overflow += 1
                    return OTHER
                raw = key_hash(raw, self.salt)
        if len(raw) > MAX_TENANT_LEN or not raw.isprintable() or raw.strip() != raw or \
                (self.allow is not None and raw not in self.allow):
            self._lim.overflow += 1
            return OTHER
        label = self._lim(raw)
        if label != OTHER and tenant is not None and len(self._seen) < SEEN_CACHE:
            self._seen[tenant] = label
        return label

    def apply(self, rec: Any, provider: str, model: str, oi: int) -> None:
        """Count one request record (`oi`: index into OUTCOMES); `model` is the bounded label."""
        get = rec.get
        tenant = self.tenant_label(get("tenant"), get("tenant_key"))
        if tenant is None:
            if not self.enabled:
                return
            tenant = ""
        key = (tenant, provider, model)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0, 0, 0, 0, 0, 0, 0, 0]
        s[oi] += 1
        tin = get("input_tokens") or 0
        tout = get("output_tokens") or 0
        cached = get("cached_tokens") or 0
        if cached > tin:
            cached = tin
        s[3] += tin
        s[4] += tout
        s[5] += cached
        cost = get("cost_pico")
        if cost is None and self.prices:
            p = self.prices.of(rec["model"])
            if p is not None:
                cost = (tin - cached) * p[0] + tout * p[1] + cached * p[2]
        if cost is not None:
            s[6] += cost
            s[7] = 1

    def families(self) -> Iterator[Metric]:
        req = CounterMetricFamily("llm_tenant_requests", "Finished requests by tenant and outcome.",
                                  labels=("tenant", "gen_ai_provider_name", "gen_ai_request_model", "outcome"))
        tok = CounterMetricFamily("llm_tenant_tokens",
                                  "Tokens by tenant and type (cached_input is the part of input read from "
                                  "the prompt cache).",
                                  labels=("tenant", "gen_ai_provider_name", "gen_ai_request_model",
                                          "gen_ai_token_type"))
        cost = CounterMetricFamily("llm_tenant_cost",
                                   f"Cost by tenant, in {self.currency}: the gateway's logged spend where "
                                   "present, else tokens times the configured prices.",
                                   labels=("tenant", "gen_ai_provider_name", "gen_ai_request_model"))
        for (tenant, provider, model), s in self.series.items():
            labels = [tenant, provider, model]
            for oi, name in enumerate(OUTCOMES):
                if s[oi]:
                    req.add_metric([*labels, name], s[oi])
            tok.add_metric([*labels, "input"], s[3])
            tok.add_metric([*labels, "output"], s[4])
            if s[5]:
                tok.add_metric([*labels, "cached_input"], s[5])
            if s[7]:
                cost.add_metric(labels, s[6] / PICO)
        yield from (req, tok, cost)
