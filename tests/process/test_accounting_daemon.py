"""Accounting on a real daemon: LiteLLM's spend-log rows pushed to /ingest as the JSON array its
`/spend/logs` answers with, and application lines on stdin, under a `--config` with prices and
key hashing; the tenant totals are worked out by hand below."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import orjson

from tests.helpers import FIXTURES, Exporter, total

ACC = FIXTURES / "accounting"
TOKEN = "tenant-test-token"
CONFIG = """\
accounting:
  hash_keys: true
  key_salt: pepper-and-salt
  prices:
    llama-8b: {input: 0.05, output: 0.10}
"""


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url + "/ingest", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def test_spend_rows_and_app_lines_give_tenant_totals(tmp_path: Path) -> None:
    """Pushed: the published spend-log row 3 times, for users alice, alice and bob (cost 0.000225
    each, logged); a row known only by its hashed key. On stdin: 2 lines of team "search" on
    llama-8b, 1000 + 3000 input and 100 + 300 output tokens: (4000 x 0.05 + 400 x 0.10) / 10^6 =
    0.00024; one line with no tenant ("" under an accounting section)."""
    cfg = tmp_path / "acc.yaml"
    cfg.write_text(CONFIG)
    row = json.loads((ACC / "litellm_spend_logs_payload.json").read_text())
    rows = []
    for user in ("alice", "alice", "bob", ""):
        r = dict(row, user=user)
        if not user:
            r["api_key"] = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        rows.append(r)
    app = [{"model": "llama-8b", "team": "search", "input_tokens": 1000, "output_tokens": 100, "duration_ms": 5},
           {"model": "llama-8b", "team": "search", "input_tokens": 3000, "output_tokens": 300, "duration_ms": 5},
           {"model": "llama-8b", "input_tokens": 10, "output_tokens": 10, "duration_ms": 5}]
    with Exporter("--config", str(cfg), "--http-ingest", "--http-ingest-token", TOKEN, "--stdin",
                  "--no-passthrough") as e:
        e.wait_ready()
        assert _post(e.url, orjson.dumps(rows)) == 204
        e.stdin.write(b"".join(orjson.dumps(o) + b"\n" for o in app))
        e.stdin.flush()
        s = e.wait_lines(len(rows) + len(app))
        text = e.scrape()
    assert total(s, "llm_tenant_requests_total", tenant="alice") == 2
    assert total(s, "llm_tenant_requests_total", tenant="bob") == 1
    assert abs(total(s, "llm_tenant_cost_total", tenant="alice") - 0.00045) < 1e-15
    assert total(s, "llm_tenant_tokens_total", tenant="alice", gen_ai_token_type="output") == 40
    assert total(s, "llm_tenant_tokens_total", tenant="search", gen_ai_token_type="input") == 4000
    assert abs(total(s, "llm_tenant_cost_total", tenant="search") - 0.00024) < 1e-15
    assert total(s, "llm_tenant_requests_total", tenant="") == 1  # the app line with no tenant
    keyed = {dict(labels)["tenant"] for (name, labels), _ in s.items() if name == "llm_tenant_requests_total"}
    hashed = [t for t in keyed if t.startswith("key:")]
    assert len(hashed) == 1 and len(hashed[0]) == 16
    assert "88dc28d0" not in text  # the key itself never shows
