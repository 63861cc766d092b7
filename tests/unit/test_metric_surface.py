"""The metric families a user reads in /metrics: every family's name, type, unit, HELP text and
label names, rendered in the OpenMetrics exposition (the one with `# UNIT` lines) from a small
input that gives every family at least one series, against the reviewed listing in
tests/fixtures/metric_surface.txt. Dashboards, alert rules and recording rules are written
against these; the listing changes only on purpose, with the README's metric table. Every family
in it is also named in the README's metric table, with the type stated there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from llm_exporter.config import load_config
from llm_exporter.metrics import LLMMetrics
from tests.helpers import FIXTURES, ROOT

LISTING = FIXTURES / "metric_surface.txt"

CONFIG = """\
metrics:
  - {name: app_chars_total, type: counter, path: chars, help: "Characters written."}
  - {name: app_queue_depth, type: gauge, path: queue.depth}
  - {name: app_step_seconds, type: histogram, path: step, buckets: [0.5, 1]}
accounting:
  tenant: [team]
slo:
  - name: chat
    ttft: 500ms
    target: 99%
"""

# one record of each kind, so that every family has a series (its label names show only there)
RECORDS: list[dict[str, Any]] = [
    {"kind": "request", "provider": "vllm", "operation": "chat", "model": "m", "outcome": "success",
     "error_type": "", "request_id": "r1", "finish_reason": "stop", "input_tokens": 10, "output_tokens": 5,
     "duration_s": 1.0, "queue_s": 0.1, "inference_s": 0.9, "ttft_s": 0.2, "tpot_s": 0.05,
     "prompt_tokens": 10, "cached_tokens": 4, "adapter": "sql-lora", "tenant": "t1", "cost_pico": 2_000_000},
    {"kind": "request", "provider": "vllm", "operation": "chat", "model": "m", "outcome": "error",
     "error_type": "oom", "duration_s": 0.5, "tenant": "t1"},
    {"kind": "stats", "provider": "vllm", "model": "m", "engine": "0", "running": 1, "waiting": 2, "swapped": 0,
     "kv_cache_usage": 0.5, "prefix_cache_hit": 0.25, "prompt_tps": 100.0, "generation_tps": 50.0},
    {"kind": "http", "provider": "vllm", "method": "POST", "path": "/v1/chat/completions", "code": "200"},
    {"kind": "log", "provider": "vllm", "level": "info"},
    {"kind": "server_error", "provider": "vllm", "error_type": "engine_dead"},
    {"kind": "tokens", "provider": "sglang", "model": "m", "engine": "0", "prompt_tokens": 7, "cached_tokens": 3},
    {"kind": "startup", "provider": "vllm", "start": True, "phases": {"weights": 12.5}, "kv_cache_tokens": 1000,
     "max_concurrency": 4.0, "memory_use": "weights", "memory_bytes": 1e9},
    {"kind": "evicted", "provider": "vllm", "n": 1},
    {"kind": "custom", "name": "app_chars_total", "value": 3.0, "labels": {}},
    {"kind": "custom", "name": "app_queue_depth", "value": 2.0, "labels": {}},
    {"kind": "custom", "name": "app_step_seconds", "value": 0.7, "labels": {}},
]


def surface(tmp_path: Path) -> str:
    """The listing as the exposition gives it: a family per block, label names in series order."""
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    m = LLMMetrics(clock=lambda: 1_000_000.0)
    m.configure(load_config(path))
    for r in RECORDS:
        m.apply(r)
    m.source("stdin")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    out = []
    for fam in text_string_to_metric_families(generate_openmetrics(reg).decode()):
        labels: list[str] = []
        for s in fam.samples:
            labels += [n for n in s.labels if n not in labels and n != "le"]
        name = fam.name + ("_total" if fam.type == "counter" else "")
        out.append(f"{name} {fam.type} unit={fam.unit or '-'}\n  labels: {' '.join(labels) or '-'}\n"
                   f"  help: {fam.documentation}\n")
    return "\n".join(out)


def test_every_family_keeps_its_name_type_unit_help_and_labels(tmp_path: Path) -> None:
    """The families' metadata as a scraper and a dashboard see it, line for line."""
    assert surface(tmp_path) == LISTING.read_text()


def test_every_family_of_the_listing_is_in_the_readme_table() -> None:
    """Each family of the listing has a row in the README's metric table, with the same type
    where the row states one type for all its metrics (the README is the user's reference)."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[1].startswith("`"):
            for name in re.findall(r"`([a-z_:*]+)`", cells[1]):
                rows[name] = cells[2]
    families = re.findall(r"^(\S+) (\S+) unit=", LISTING.read_text(), flags=re.M)
    assert len(families) > 40
    for name, typ in families:
        if name.startswith("app_"):  # the test's own --config metrics
            continue
        assert name in rows, f"{name} is not in the README's metric table"
        if rows[name] in ("counter", "gauge", "histogram"):
            assert rows[name] == typ, name
