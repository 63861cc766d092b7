"""Tenants, keys, prices and LoRA adapters: what the adapters read from real lines, and how
`TenantAccounting` bounds and counts it. Expected values are worked out by hand from the fixtures
(tests/fixtures/accounting/README.md says where each line comes from)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from llm_exporter.accounting import (
    MAX_TENANT_LEN,
    PICO,
    TenantAccounting,
    adapter_label,
    identify,
    key_hash,
    pico_of_decimal_text,
)
from llm_exporter.adapters.litellm import LitellmAdapter
from llm_exporter.adapters.tgi import TgiAdapter
from llm_exporter.adapters.vllm import VllmAdapter
from llm_exporter.config import AccountingConfig, ConfigError, load_config
from llm_exporter.labels import OTHER, LabelLimiter
from tests.helpers import FIXTURES

ACC = FIXTURES / "accounting"


def _requests(results: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in results:
        for rec in (r if isinstance(r, list) else [r]):
            if isinstance(rec, dict) and rec.get("kind") == "request":
                out.append(rec)
    return out


def _accounting(limit: int = 100, **cfg: Any) -> tuple[TenantAccounting, dict[tuple[str, str], LabelLimiter]]:
    lims: dict[tuple[str, str], LabelLimiter] = {}

    def limiter(metric: str, label: str) -> LabelLimiter:
        return lims.setdefault((metric, label), LabelLimiter(limit))

    acc = TenantAccounting(limiter, limit)
    acc.configure(AccountingConfig.model_validate(cfg) if cfg else None)
    return acc, lims


# -- LiteLLM ------------------------------------------------------------------------------------


def test_litellm_standard_logging_payload() -> None:
    """The published payload: gpt-4o, 10 prompt + 20 completion tokens, response_cost
    0.00022500000000000002 read as is (225 000 000 pico-units once rounded to a pico-unit),
    4.583 ms from startTime to endTime, streamed (first token at endTime), finish reason stop."""
    obj = json.loads((ACC / "litellm_standard_logging_payload.json").read_text())
    rec = LitellmAdapter().parse_json(b"", obj)
    assert rec["provider"] == "litellm" and rec["operation"] == "chat" and rec["model"] == "gpt-4o"
    assert rec["input_tokens"] == 10 and rec["output_tokens"] == 20
    assert rec["cost_pico"] == 225_000_000  # 0.000225 * 10^12
    assert rec["duration_s"] == pytest.approx(0.004583, abs=1e-6)
    assert rec["ttft_s"] == pytest.approx(0.004583, abs=1e-6)
    assert rec["finish_reason"] == "stop" and rec["outcome"] == "success"
    assert rec["request_id"] == "chatcmpl-2299b6a2-82a3-465a-b47c-04e685a2227f"
    assert rec["tenant"] is None and rec["tenant_key"] is None  # every identity field is null or ""


def test_litellm_spend_log_row_with_metadata_as_a_string() -> None:
    obj = json.loads((ACC / "litellm_spend_logs_payload.json").read_text())
    rec = LitellmAdapter().parse_json(b"", obj)
    assert rec["model"] == "gpt-4o" and rec["input_tokens"] == 10 and rec["output_tokens"] == 20
    assert rec["cost_pico"] == 225_000_000 and rec["outcome"] == "success"
    assert rec["request_id"] == "chatcmpl-2283081b-dc89-41f6-93e6-d4f914774027"
    assert "ttft_s" not in rec  # not a streamed payload


def _with_identity(**meta: Any) -> dict[str, Any]:
    """The published payload with identity values filled in (the field names are LiteLLM's)."""
    obj = json.loads((ACC / "litellm_standard_logging_payload.json").read_text())
    obj["metadata"].update(meta)
    return obj


def test_litellm_tenant_is_key_alias_then_team_then_end_user() -> None:
    a = LitellmAdapter()
    both = _with_identity(user_api_key_alias="payments-bot", user_api_key_team_alias="payments")
    assert a.parse_json(b"", both)["tenant"] == "payments-bot"
    assert a.parse_json(b"", _with_identity(user_api_key_team_alias="payments"))["tenant"] == "payments"
    end_user = _with_identity()
    end_user["end_user"] = "palantir"
    assert a.parse_json(b"", end_user)["tenant"] == "palantir"
    only_key = _with_identity(user_api_key_hash="88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b")
    rec = a.parse_json(b"", only_key)
    assert rec["tenant"] is None and rec["tenant_key"].startswith("88dc28d0")


def test_litellm_config_paths_come_first() -> None:
    cfg = load_config_text("accounting:\n  tenant: [metadata.spend_logs_metadata.project]\n")
    obj = _with_identity(user_api_key_alias="payments-bot", spend_logs_metadata={"project": "atlas"})
    assert LitellmAdapter(cfg).parse_json(b"", obj)["tenant"] == "atlas"


def test_litellm_failure_is_an_error_with_its_class() -> None:
    obj = _with_identity()
    obj["status"] = "failure"
    obj["error_information"] = {"error_code": "429", "error_class": "RateLimitError", "llm_provider": "openai",
                                "traceback": "", "error_message": "rate limited"}
    rec = LitellmAdapter().parse_json(b"", obj)
    assert (rec["outcome"], rec["error_type"]) == ("error", "overloaded")


def test_litellm_bad_cost_is_invalid_not_a_crash() -> None:
    from llm_exporter.adapters.base import Invalid

    obj = _with_identity()
    obj["response_cost"] = "lots"
    with pytest.raises(Invalid):
        LitellmAdapter().parse_json(b"", obj)


def test_app_json_leaves_litellm_lines_to_litellm() -> None:
    from llm_exporter.adapters.app_json import AppJsonAdapter

    line = (ACC / "litellm_spend_logs_payload.json").read_bytes()
    obj = json.loads(line)
    assert AppJsonAdapter().parse_json(json.dumps(obj).encode(), obj) is None


# -- LoRA adapters --------------------------------------------------------------------------------


def test_tgi_adapter_id_from_success_lines() -> None:
    """Line 1 has `adapter_id: None`; 2 and 3 predibase/customer_support, 4 predibase/dbpedia.
    Output tokens = round(inference_time / time_per_token): 3.625371193 / 0.038982485 = 93.0,
    and line 3's 1.559299400 / 0.038982485 = 40.0."""
    a = TgiAdapter()
    recs = _requests([a.parse_text(ln) for ln in (ACC / "tgi_adapter.reconstructed.log").read_text().splitlines()])
    got: dict[str, list[int]] = {}
    for r in recs:
        t = got.setdefault(r.get("adapter") or "", [0, 0])
        t[0] += 1
        t[1] += r["output_tokens"]
    assert got == {"": [1, 93], "predibase/customer_support": [2, 133], "predibase/dbpedia": [1, 93]}


def test_tgi_adapter_id_is_not_read_from_user_text() -> None:
    """A stop string that spells an adapter field is user text; only the field that closes the
    parameters counts."""
    line = (FIXTURES / "samples" / "tgi.log").read_text().splitlines()[4]
    fake = line.replace("stop: []", 'stop: ["adapter_id: Some(\\"evil\\") }"]')
    assert "evil" in fake
    recs = _requests([TgiAdapter().parse_text(fake)])
    assert len(recs) == 1 and "adapter" not in recs[0]


def test_tgi_json_success_reads_adapter_from_span_parameters() -> None:
    line = (FIXTURES / "samples" / "tgi.reconstructed.log").read_text().splitlines()[1]
    obj = json.loads(line)
    obj["span"]["parameters"] = obj["span"]["parameters"].replace(
        "top_n_tokens: None }", 'top_n_tokens: None, grammar: None, adapter_id: Some("predibase/dbpedia") }')
    recs = _requests([TgiAdapter().parse_json(json.dumps(obj).encode(), obj)])
    assert [r.get("adapter") for r in recs] == ["predibase/dbpedia"]


def test_vllm_lora_request_names_the_adapter_of_the_finished_request() -> None:
    """Request 1 has no LoRA and finishes; 2 (sql-lora) finishes; 3 (sql-lora) is aborted."""
    a = VllmAdapter()
    lines = (ACC / "vllm_lora.reconstructed.log").read_text().splitlines()
    recs = _requests([*(a.parse_text(ln) for ln in lines), a.flush()])  # an abort is held for a 5xx after it
    assert [(r.get("adapter"), r["outcome"]) for r in recs] == [
        (None, "success"), ("sql-lora", "success"), ("sql-lora", "aborted")]


def test_adapter_label_shows_a_path_by_its_last_part() -> None:
    assert adapter_label("/root/.cache/adapters/sql-lora/") == "sql-lora"
    assert adapter_label("predibase/customer_support") == "predibase/customer_support"
    assert adapter_label("x" * 500) == "x" * 64
    assert adapter_label("bad\nname") == OTHER


# -- tenants: identity, bounds, keys --------------------------------------------------------------


def test_identify_first_found_wins_and_keys_come_last() -> None:
    assert identify({"user": "alice", "metadata": {"tenant": "acme"}}, ()) == ("acme", None)
    assert identify({"user": "alice", "auth": {"org": "o1"}}, ("auth.org",)) == ("o1", None)
    assert identify({"api_key": "sk-abc"}, ()) == (None, "sk-abc")
    assert identify({"user": {"name": "x"}}, ()) == (None, None)  # not a string: no tenant
    assert identify({"user": 42}, ()) == ("42", None)


def test_tenant_values_unfit_for_a_label_are_other_and_counted() -> None:
    acc, lims = _accounting()
    lim = lims[("llm_tenant_requests_total", "tenant")]
    assert acc.tenant_label("team-a", None) == "team-a"
    assert acc.tenant_label("x" * (MAX_TENANT_LEN + 1), None) == OTHER  # a prompt by mistake
    assert acc.tenant_label("a\x00b", None) == OTHER  # binary
    assert acc.tenant_label("line\nbreak", None) == OTHER
    assert acc.tenant_label("sk-live-0123456789abcdef", None) == OTHER  # a raw key, no hash_keys
    assert acc.tenant_label(None, "sk-live-0123456789abcdef") is None  # a key alone: not used
    assert lim.overflow == 4


def test_hash_keys_shows_a_salted_short_hash_never_the_key() -> None:
    acc, _ = _accounting(hash_keys=True, key_salt="pepper-123")
    key = "sk-live-0123456789abcdef"
    label = acc.tenant_label(None, key)
    assert label == key_hash(key, "pepper-123")
    assert label is not None and label.startswith("key:") and len(label) == 16 and key not in label
    assert acc.tenant_label(key, None) == label  # a key where a tenant was expected: hashed too
    other, _ = _accounting(hash_keys=True, key_salt="another-salt")
    assert other.tenant_label(None, key) != label  # the salt matters


def test_allow_list_and_tenant_limit() -> None:
    acc, lims = _accounting(allow=["a", "b", "c"], max_tenants=2)
    assert [acc.tenant_label(t, None) for t in ("a", "b", "c", "zz", "a")] == ["a", "b", OTHER, OTHER, "a"]
    assert lims[("llm_tenant_requests_total", "tenant")].overflow == 2


def test_zero_config_counts_only_records_with_a_tenant() -> None:
    acc, _ = _accounting()
    rec = {"kind": "request", "model": "m", "input_tokens": 3, "output_tokens": 4}
    acc.apply(rec, "app", "m", 0)
    assert acc.series == {}
    acc.apply({**rec, "tenant": "t"}, "app", "m", 0)
    assert acc.series[("t", "app", "m")][:5] == [1, 0, 0, 3, 4]
    configured, _ = _accounting(currency="EUR")
    configured.apply(rec, "app", "m", 1)
    assert configured.series[("", "app", "m")][:2] == [0, 1]  # "": no tenant named


def test_cost_from_prices_is_exact_in_pico_units() -> None:
    """input 0.15/M, output 0.60/M, cached input 0.075/M: 1000 in (400 of them cached), 500 out:
    600*0.15 + 400*0.075 + 500*0.60 = 420 per million = 0.00042 currency = 420 000 000 pico."""
    acc, _ = _accounting(prices={"m": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
                                 "default": {"input": 1, "output": 2}})
    acc.apply({"model": "m", "tenant": "t", "input_tokens": 1000, "output_tokens": 500,
               "cached_tokens": 400}, "app", "m", 0)
    assert acc.series[("t", "app", "m")][6] == 420_000_000
    acc.apply({"model": "other", "tenant": "t", "input_tokens": 1, "output_tokens": 1}, "app", "other", 0)
    assert acc.series[("t", "app", "other")][6] == 3 * 10**6  # (1*1 + 1*2) per million
    acc.apply({"model": "m", "tenant": "t", "input_tokens": 1, "cost_pico": 7}, "app", "m", 0)
    assert acc.series[("t", "app", "m")][6] == 420_000_007  # a logged cost wins over prices


def test_logged_spend_is_read_from_its_decimal_text() -> None:
    assert pico_of_decimal_text(0.00022500000000000002) == 225_000_000
    assert pico_of_decimal_text(9.700000000000002e-06) == 9_700_000
    assert pico_of_decimal_text("1.5") == 15 * 10**11
    assert pico_of_decimal_text(-1.0) is None and pico_of_decimal_text(True) is None
    assert pico_of_decimal_text(float("nan")) is None and pico_of_decimal_text("x") is None
    assert Decimal(pico_of_decimal_text("0.1") or 0) / PICO == Decimal("0.1")


# -- config -------------------------------------------------------------------------------------


def load_config_text(text: str) -> Any:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    return load_config(f.name)


@pytest.mark.parametrize(("text", "needle"), [
    ("accounting:\n  hash_keys: true\n", "needs key_salt"),
    ("accounting:\n  prices:\n    m: {input: 0.0000001, output: 1}\n", "at most 6 decimals"),
    ("accounting:\n  prices:\n    m: {input: -1, output: 1}\n", ">= 0"),
    ("accounting:\n  prices:\n    m: {input: 1}\n", "output"),
    ("accounting:\n  currency: 'US Dollar'\n", "currency"),
    ("accounting:\n  tenant: ['a b']\n", "dotted"),
])
def test_config_mistakes_are_one_line_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text(text)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg
    assert re.search(r"\.yaml:\d+: accounting", msg), msg


# -- check-config --sample --------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    import subprocess
    import sys

    from tests.helpers import ROOT

    return subprocess.run([sys.executable, "-m", "llm_exporter", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_check_config_sample_names_paths_no_line_has(tmp_path: Any) -> None:
    """auth.org and the mapping's timing.ms never appear in the sample; auth.team, the extra label
    and the metric's path do (one line behind a container-name prefix, one not JSON at all)."""
    cfg = tmp_path / "app.yaml"
    cfg.write_text("extra_labels: {lang: req.lang}\n"
                   "metrics:\n  - {name: app_chars_total, type: counter, path: chars}\n"
                   "mappings:\n  - name: tr\n    match: {service: tr}\n    fields: {duration: timing.ms}\n"
                   "accounting:\n  tenant: [auth.team, auth.org]\n")
    sample = tmp_path / "app.log"
    sample.write_text('{"auth": {"team": "a"}, "req": {"lang": "en"}, "duration": 1}\n'
                      'app-1  | {"chars": 12, "latency": 0.5}\n'
                      "plain text line\n")
    r = _cli("check-config", str(cfg), "--sample", str(sample))
    assert r.returncode == 1, r.stderr
    missing = [ln for ln in r.stdout.splitlines() if ln.startswith("never found")]
    assert missing == ["never found in the sample: mappings[tr].fields.duration: timing.ms",
                       "never found in the sample: accounting.tenant: auth.org"]
    assert "sample: 2 JSON lines read" in r.stdout
    sample.write_text(sample.read_text() + '{"auth": {"org": "o"}, "timing": {"ms": 3}}\n')
    assert _cli("check-config", str(cfg), "--sample", str(sample)).returncode == 0
    gone = _cli("check-config", str(cfg), "--sample", str(tmp_path / "nope.log"))
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "nope.log" in gone.stderr


def test_llm_adapter_is_a_built_in_label_name() -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text("extra_labels: [llm_adapter]\n")
    assert "built-in label name" in str(e.value)
