"""Tenant and adapter metrics end to end: lines through the pipeline, read back from the
exposition, against counts worked out by hand or by a separate simple counter (never our own
output); the tenant label stays bounded under a million distinct values; cost sums are exact."""

from __future__ import annotations

import json
import random
import resource
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from llm_exporter.config import Config, load_config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.metrics.checkpoint import restore, snapshot
from llm_exporter.pipeline import Pipeline
from tests.helpers import FIXTURES

ACC = FIXTURES / "accounting"


def _registry(m: LLMMetrics) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return reg


def _samples(m: LLMMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for fam in _registry(m).collect():
        for s in fam.samples:
            if s.name == name:
                out.append((dict(s.labels), s.value))
    return out


def _sum(m: LLMMetrics, name: str, **match: str) -> float:
    return sum(v for labels, v in _samples(m, name) if all(labels.get(k) == x for k, x in match.items()))


def _run(lines: list[bytes], config: Any = None, label_limit: int = 100) -> LLMMetrics:
    m = LLMMetrics(label_limit=label_limit)
    p = Pipeline(m, config=config)
    p.process("file", lines)
    p.flush()
    return m


def _config(text: str, tmp_path: Path) -> Config:
    f = tmp_path / "acc.yaml"
    f.write_text(text)
    return load_config(f)


def _compact(path: Path) -> bytes:
    """A pretty-printed JSON file as the one line a logger writes (same object, no newlines)."""
    return json.dumps(json.loads(path.read_text()), separators=(",", ":")).encode()


# -- real lines ---------------------------------------------------------------------------------


def test_litellm_payloads_give_hand_checked_tenant_totals(tmp_path: Path) -> None:
    """The two published LiteLLM payloads name no tenant: with zero config they are in the request
    metrics but not the tenant ones; with `accounting:` they are the unattributed tenant "",
    2 requests, 20 input and 40 output tokens, cost 2 x 0.000225 = 0.00045."""
    lines = [_compact(ACC / "litellm_standard_logging_payload.json"), _compact(ACC / "litellm_spend_logs_payload.json")]
    m = _run(lines)
    assert _sum(m, "llm_requests_total", gen_ai_provider_name="litellm", gen_ai_request_model="gpt-4o") == 2
    assert _samples(m, "llm_tenant_requests_total") == []
    m = _run(lines, _config("accounting: {currency: USD}\n", tmp_path))
    base = {"tenant": "", "gen_ai_provider_name": "litellm", "gen_ai_request_model": "gpt-4o"}
    assert _sum(m, "llm_tenant_requests_total", outcome="success", **base) == 2
    assert _sum(m, "llm_tenant_tokens_total", gen_ai_token_type="input", **base) == 20
    assert _sum(m, "llm_tenant_tokens_total", gen_ai_token_type="output", **base) == 40
    assert abs(_sum(m, "llm_tenant_cost_total", **base) - 0.00045) < 1e-15


def test_litellm_tenants_from_key_alias_team_and_end_user() -> None:
    """The published payload with identity fields filled in: key alias payments-bot twice (one a
    failure), team alias payments once (no key alias), end user palantir once; a key alone (no
    hash_keys) is not a tenant. Hand totals per tenant below."""
    base = json.loads((ACC / "litellm_standard_logging_payload.json").read_text())

    def line(status: str = "success", end_user: str = "", **meta: Any) -> bytes:
        o = json.loads(json.dumps(base))
        o["metadata"].update(meta)
        o["end_user"] = end_user
        o["status"] = status
        return json.dumps(o).encode()

    lines = [line(user_api_key_alias="payments-bot", user_api_key_team_alias="payments"),
             line("failure", user_api_key_alias="payments-bot"),
             line(user_api_key_team_alias="payments"),
             line(end_user="palantir"),
             line(user_api_key_hash="88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b")]
    m = _run(lines)
    got = {(lb["tenant"], lb["outcome"]): v for lb, v in _samples(m, "llm_tenant_requests_total")}
    assert got == {("payments-bot", "success"): 1, ("payments-bot", "error"): 1, ("payments", "success"): 1,
                   ("palantir", "success"): 1}
    tokens = {(lb["tenant"], lb["gen_ai_token_type"]): v for lb, v in _samples(m, "llm_tenant_tokens_total")}
    assert tokens[("payments-bot", "input")] == 20 and tokens[("payments-bot", "output")] == 40
    assert tokens[("palantir", "output")] == 20
    cost = {lb["tenant"]: v for lb, v in _samples(m, "llm_tenant_cost_total")}
    assert cost == {"payments-bot": 0.00045, "payments": 0.000225, "palantir": 0.000225}


def test_tgi_lines_give_per_adapter_totals() -> None:
    """Hand count (tests/fixtures/accounting/tgi_adapter.reconstructed.log): base model 1 request,
    93 output tokens; predibase/customer_support 2 requests, 93 + 40; predibase/dbpedia 1, 93."""
    m = _run((ACC / "tgi_adapter.reconstructed.log").read_bytes().splitlines())
    req = {lb["llm_adapter"]: v for lb, v in _samples(m, "llm_requests_total")}
    assert req == {"": 1, "predibase/customer_support": 2, "predibase/dbpedia": 1}
    out = {lb["llm_adapter"]: v for lb, v in _samples(m, "gen_ai_client_token_usage_sum")
           if lb["gen_ai_token_type"] == "output"}
    assert out == {"": 93, "predibase/customer_support": 133, "predibase/dbpedia": 93}
    dur = {lb["llm_adapter"]: v for lb, v in _samples(m, "gen_ai_server_request_duration_seconds_count")}
    assert dur == {"": 1, "predibase/customer_support": 2, "predibase/dbpedia": 1}
    # families without the adapter label add the adapters up
    tpot = [v for lb, v in _samples(m, "gen_ai_server_time_per_output_token_seconds_count")]
    assert tpot == [4]
    assert all("llm_adapter" not in lb for lb, _ in _samples(m, "llm_request_queue_duration_seconds_count"))


def test_vllm_lines_give_per_adapter_totals() -> None:
    """Hand count (vllm_lora.reconstructed.log): base 1 success; sql-lora 1 success, 1 aborted."""
    m = _run((ACC / "vllm_lora.reconstructed.log").read_bytes().splitlines())
    req = {(lb["llm_adapter"], lb["outcome"]): v for lb, v in _samples(m, "llm_requests_total")}
    assert req == {("", "success"): 1, ("sql-lora", "success"): 1, ("sql-lora", "aborted"): 1}


def test_app_json_tenants_and_adapters(tmp_path: Path) -> None:
    lines = [json.dumps(o).encode() for o in (
        {"model": "llama", "user": "alice", "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "lora": "sql"},
        {"model": "llama", "metadata": {"team": "search"}, "input_tokens": 7, "output_tokens": 3, "status": 500},
        {"model": "llama", "user": "alice", "input_tokens": 1, "output_tokens": 1, "adapter": "/models/sql/"},
        {"model": "llama", "auth": {"org": "acme"}, "input_tokens": 2, "output_tokens": 2},
    )]
    m = _run(lines, _config("accounting:\n  tenant: [auth.org]\n", tmp_path))
    req = {(lb["tenant"], lb["outcome"]): v for lb, v in _samples(m, "llm_tenant_requests_total")}
    assert req == {("alice", "success"): 2, ("search", "error"): 1, ("acme", "success"): 1}
    adapters: dict[str, float] = defaultdict(float)
    for lb, v in _samples(m, "llm_requests_total"):
        adapters[lb["llm_adapter"]] += v
    assert adapters == {"sql": 2, "": 2}  # "/models/sql/" is shown by its last part


# -- bounds -------------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_million_distinct_tenants_keep_series_and_memory_bounded(capsys: Any) -> None:
    """1,000,000 requests, each from a new tenant: the tenant label takes the first 100 values and
    folds the rest into _OTHER (counted), so the series count stays 101 and memory stays flat."""
    m = LLMMetrics(label_limit=100)
    rec: dict[str, Any] = {"kind": "request", "provider": "app", "operation": "chat", "model": "llama",
                           "outcome": "success", "error_type": "", "input_tokens": 3, "output_tokens": 2}
    rss0 = 0
    with m.lock:
        for i in range(1_000_000):
            if i == 50_000:
                rss0 = _rss_kib()
            rec["tenant"] = f"tenant-{i}"
            m.apply(rec, 1000.0)
    rss1 = _rss_kib()
    series = _samples(m, "llm_tenant_requests_total")
    assert len(series) == 101
    assert {lb["tenant"] for lb, _ in series} == {f"tenant-{i}" for i in range(100)} | {"_OTHER"}
    assert sum(v for _, v in series) == 1_000_000
    assert _sum(m, "llm_tenant_requests_total", tenant="_OTHER") == 999_900
    assert _sum(m, "llm_exporter_label_overflow_total", metric="llm_tenant_requests_total", label="tenant") == 999_900
    assert len(m.accounting.series) == 101
    with capsys.disabled():
        print(f"\n  RSS after 50k tenants {rss0 / 1024:.1f} MiB, after 1M {rss1 / 1024:.1f} MiB "
              f"(+{(rss1 - rss0) / 1024:.1f} MiB)")
    assert rss1 - rss0 < 16 * 1024, (rss0, rss1)


def test_unfit_tenant_values_never_become_labels() -> None:
    lines = [json.dumps({"model": "m", "input_tokens": 1, "user": u}).encode() for u in (
        "x" * 5000, "two\nlines", "\x00\x01binary", "sk-proj-abcdefghijklmnop", "ok-user")]
    m = _run(lines)
    tenants = {lb["tenant"]: v for lb, v in _samples(m, "llm_tenant_requests_total")}
    assert tenants == {"_OTHER": 4, "ok-user": 1}
    assert _sum(m, "llm_exporter_label_overflow_total", metric="llm_tenant_requests_total", label="tenant") == 4


# -- exact cost ---------------------------------------------------------------------------------

PRICES = {"llama-8b": (Decimal("0.05"), Decimal("0.10"), Decimal("0.025")),
          "qwen-72b": (Decimal("0.90"), Decimal("0.90"), Decimal("0.45")),
          "default": (Decimal("0.15"), Decimal("0.60"), Decimal("0.15"))}
PRICES_YAML = """accounting:
  currency: USD
  prices:
    llama-8b: {input: 0.05, output: 0.10, cached_input: 0.025}
    qwen-72b: {input: 0.90, output: 0.90, cached_input: 0.45}
    default: {input: 0.15, output: 0.60}
"""


def test_cost_over_100k_lines_equals_a_decimal_computation_to_the_cent(tmp_path: Path) -> None:
    """100,000 application lines (random tenants, models, token counts, cached prompt tokens) and
    LiteLLM spend rows (random logged spend): per-tenant cost equals an independent `Decimal` sum."""
    rnd = random.Random(15)
    tenants = [f"team-{i}" for i in range(20)]
    want: dict[str, Decimal] = defaultdict(Decimal)
    pico: dict[str, int] = defaultdict(int)
    lines = []
    for i in range(100_000):
        t = rnd.choice(tenants)
        if i % 5 == 4:  # a LiteLLM spend row: its own logged spend, read as is
            spend = rnd.random() / 1000
            lines.append(json.dumps({"request_id": f"r{i}", "call_type": "acompletion", "spend": spend,
                                     "model": "gpt-4o", "model_group": "gpt-4o", "prompt_tokens": 5,
                                     "completion_tokens": 7, "user": t, "status": "success"}).encode())
            want[t] += Decimal(repr(spend))
            pico[t] += int(Decimal(repr(spend)).scaleb(12).quantize(Decimal(1)))  # kept to a pico-unit
            continue
        model = rnd.choice(["llama-8b", "qwen-72b", "mistral"])
        tin, tout = rnd.randint(1, 8000), rnd.randint(0, 2000)
        cached = rnd.randint(0, tin) if rnd.random() < 0.3 else 0
        usage: dict[str, Any] = {"prompt_tokens": tin, "completion_tokens": tout}
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        lines.append(json.dumps({"model": model, "user": t, "usage": usage, "duration_ms": 12}).encode())
        pin, pout, pcached = PRICES.get(model, PRICES["default"])
        cost = ((tin - cached) * pin + cached * pcached + tout * pout) / Decimal(1_000_000)
        want[t] += cost
        pico[t] += int(cost.scaleb(12))  # whole pico-units: prices have at most 6 decimals
    m = _run(lines, _config(PRICES_YAML, tmp_path))
    got: dict[str, float] = defaultdict(float)
    for lb, v in _samples(m, "llm_tenant_cost_total"):
        got[lb["tenant"]] += v
    assert set(got) == set(tenants)
    for t in tenants:
        assert abs(Decimal(repr(got[t])) - want[t]) < Decimal("0.005"), (t, got[t], want[t])
    # and the internal sums are exact, not merely within a cent
    internal: dict[str, int] = defaultdict(int)
    for (tenant, _, _), series in m.accounting.series.items():
        internal[tenant] += series[6]
    assert internal == pico


# -- restarts -----------------------------------------------------------------------------------


def test_tenant_counters_and_adapters_survive_a_restart(tmp_path: Path) -> None:
    cfg = _config(PRICES_YAML, tmp_path)
    lines = [json.dumps({"model": "llama-8b", "user": "alice", "lora": "sql", "input_tokens": 1000,
                         "output_tokens": 10}).encode()] * 3
    m = _run(lines, cfg)
    data = json.loads(json.dumps(snapshot(m)))
    fresh = LLMMetrics(label_limit=100)
    Pipeline(fresh, config=cfg)
    assert restore(fresh, data)
    for name in ("llm_tenant_requests_total", "llm_tenant_tokens_total", "llm_tenant_cost_total",
                 "llm_requests_total"):
        assert sorted(map(repr, _samples(fresh, name))) == sorted(map(repr, _samples(m, name))), name
    assert _sum(fresh, "llm_tenant_cost_total", tenant="alice") == 3 * (1000 * 0.05 + 10 * 0.10) / 1e6


# -- any value, no crash, no unfit label ------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={
    "user": _json_values, "team": _json_values, "tenant": _json_values, "metadata": _json_values,
    "lora": _json_values, "adapter": _json_values, "api_key": _json_values}), min_size=1, max_size=20))
def test_any_identity_value_is_counted_and_only_fit_values_become_labels(extra: list[dict[str, Any]]) -> None:
    """Whatever the identity and adapter fields hold, each line is one request, and every tenant
    and adapter label is short and printable (or _OTHER)."""
    lines = [json.dumps({"model": "m", "input_tokens": 1, **e}).encode() for e in extra]
    m = _run(lines, label_limit=5)
    assert _sum(m, "llm_requests_total") == len(lines)
    for lb, _ in _samples(m, "llm_tenant_requests_total"):
        t = lb["tenant"]
        assert t == "_OTHER" or (0 < len(t) <= 64 and t.isprintable() and not t.startswith("sk-")), t
    for lb, _ in _samples(m, "llm_requests_total"):
        a = lb["llm_adapter"]
        assert len(a) <= 64 and (a.isprintable() or a == "_OTHER"), a


def test_real_vllm_with_lora_names_the_served_model_and_the_adapter() -> None:
    """vllm_cpu_lora.log (real vLLM 0.32 output), by hand from its `Received request` lines: two
    completions with `lora_name='sql-lora'`, one with `lora_request: None`, one chat to sql-lora;
    each ends (its access line, or the chat's `Generated response`). The model is the served name
    tiny-llama, not the weights directory."""
    m = _run((ACC / "vllm_cpu_lora.log").read_bytes().splitlines())
    req = sorted((lb["gen_ai_operation_name"], lb["gen_ai_request_model"], lb["llm_adapter"], lb["outcome"], v)
                 for lb, v in _samples(m, "llm_requests_total"))
    assert req == [("chat", "tiny-llama", "sql-lora", "success", 1),
                   ("text_completion", "tiny-llama", "", "success", 1),
                   ("text_completion", "tiny-llama", "sql-lora", "success", 2)]
    assert _sum(m, "llm_exporter_lines_total", outcome="unparsed") == 0
