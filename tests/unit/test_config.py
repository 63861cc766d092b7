"""The --config file: custom JSON mappings, extra labels, custom metrics, check-config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.config import load_config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.problems import ConfigError
from tests.helpers import ROOT, exporter, parse_metrics, total

CONFIG = """\
# the translator app's languages as labels; a nested shape mapped by hand
extra_labels: [src_lang, tgt_lang]
metrics:
  - {name: app_gpu_memory_bytes, type: gauge, path: gpu_memory_mb, scale: 1048576}
mappings:
  - name: nested
    match: {kind: llm_call}
    fields:
      request_id: meta.id
      model: meta.model
      operation: meta.task
      outcome: result.ok
      error_type: result.error
      duration: {path: timing.total, unit: ms}
      input_tokens: tokens.in
      output_tokens: tokens.out
    extra_labels: {src_lang: langs.src}
    metrics:
      - {name: app_chars_total, type: counter, path: chars}
      - {name: app_cost_usd, type: histogram, path: cost, buckets: [0.001, 0.01, 0.1, 1]}
"""

LINES = [
    {"kind": "llm_call", "meta": {"id": "r1", "model": "m1", "task": "translate"}, "result": {"ok": True},
     "timing": {"total": 1500}, "tokens": {"in": 10, "out": 20}, "langs": {"src": "en"}, "chars": 300,
     "cost": 0.02},
    {"kind": "llm_call", "meta": {"id": "r2", "model": "m1", "task": "translate"},
     "result": {"ok": False, "error": "TimeoutError"}, "timing": {"total": 500}, "langs": {"src": "de"},
     "chars": 100, "cost": 0.005},
    {"kind": "llm_call", "meta": {"id": "r3", "model": "m1", "task": "translate"}, "result": {"ok": True},
     "timing": {"total": "2.5s"}, "langs": {"src": "en"}, "chars": 50},
    {"level": "INFO", "message": "translation_success", "src_lang": "zh", "tgt_lang": "en", "latency_ms": 812,
     "gpu_memory_mb": 1024},
    {"request_id": "x", "latency_ms": 100, "model": "q"},
]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def run(cfg_path: Path, lines: list[dict[str, object]], label_limit: int = 100) -> Samples:
    m = LLMMetrics(label_limit=label_limit)
    p = Pipeline(m, config=load_config(cfg_path))
    p.process("t", [json.dumps(o).encode() for o in lines])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return parse_metrics(generate_latest(reg).decode())


def test_mapping_turns_a_nested_shape_into_requests(tmp_path: Path) -> None:
    """Dotted paths, units (ms numbers and duration strings), outcome and error type from the line."""
    s = run(write(tmp_path, CONFIG), LINES)
    lbl = {"gen_ai_operation_name": "translate", "gen_ai_request_model": "m1"}
    # r1 and r3 succeeded, r2 failed with TimeoutError
    assert total(s, "llm_requests_total", outcome="success", **lbl) == 2
    assert total(s, "llm_request_errors_total", error_type="timeout", **lbl) == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum", **lbl) == pytest.approx(1.5 + 0.5 + 2.5)
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **lbl) == 20


@pytest.mark.parametrize(("unit", "values", "seconds"), [
    ("ms", [286, "250", "1.5s"], [0.286, 0.25, 1.5]),
    ("us", [955, "1200"], [0.000955, 0.0012]),
    ("min", [2, "0.5"], [120.0, 30.0]),
])
def test_mapped_duration_unit_applies_to_numbers_and_number_strings(
        tmp_path: Path, unit: str, values: list[object], seconds: list[float]) -> None:
    """A mapping's unit scales a number and a bare number string alike; a string with its own unit keeps it."""
    cfg = write(tmp_path, f"mappings:\n  - name: n\n    match: {{kind: c}}\n"
                          f"    fields:\n      duration: {{path: t, unit: {unit}}}\n")
    s = run(cfg, [{"kind": "c", "t": v} for v in values])
    assert total(s, "gen_ai_server_request_duration_seconds_count") == len(values)
    assert total(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx(sum(seconds), rel=1e-12)


def test_extra_labels_are_on_every_request_series_and_empty_when_absent(tmp_path: Path) -> None:
    """src_lang/tgt_lang from both the mapping and canonical app lines; "" where a line lacks them."""
    s = run(write(tmp_path, CONFIG), LINES)
    assert total(s, "llm_requests_total", src_lang="en", tgt_lang="") == 2  # r1, r3
    assert total(s, "llm_requests_total", src_lang="zh", tgt_lang="en") == 1  # the seed translator line
    assert total(s, "llm_requests_total", src_lang="", tgt_lang="", gen_ai_request_model="q") == 1
    request_families = ("gen_ai_", "llm_requests_total", "llm_request_")
    for (name, labels), _v in s.items():
        if name.startswith(request_families):
            assert {"src_lang", "tgt_lang"} <= dict(labels).keys(), name


def test_custom_metrics_from_numeric_fields(tmp_path: Path) -> None:
    """A counter adds, a gauge keeps the last value (scaled), a histogram observes."""
    s = run(write(tmp_path, CONFIG), LINES)
    assert total(s, "app_chars_total") == 300 + 100 + 50
    assert total(s, "app_chars_total", src_lang="de") == 100
    assert total(s, "app_gpu_memory_bytes") == 1024 * 1048576
    assert total(s, "app_cost_usd_count") == 2 and total(s, "app_cost_usd_sum") == pytest.approx(0.025)
    assert total(s, "app_cost_usd_bucket", le="0.01") == 1


def test_extra_label_values_stay_under_the_cardinality_limit(tmp_path: Path) -> None:
    """Past the limit, new values of an extra label fold into _OTHER and the fold is counted."""
    lines = [{"latency_ms": 5, "src_lang": f"l{i}"} for i in range(10)]
    s = run(write(tmp_path, "extra_labels: [src_lang]\n"), lines, label_limit=3)
    assert total(s, "llm_requests_total", src_lang="_OTHER") == 7
    assert total(s, "llm_exporter_label_overflow_total", metric="llm_requests_total", label="src_lang") == 7


def test_a_new_config_with_other_label_names_starts_the_request_series_over(tmp_path: Path) -> None:
    """Setting a config whose extra labels differ keeps the exposition consistent."""
    m = LLMMetrics()
    p = Pipeline(m, config=load_config(write(tmp_path, "extra_labels: [a]\n")))
    p.process("t", [b'{"latency_ms": 5, "a": "x"}'])
    p.config = load_config(write(tmp_path, "extra_labels: [b, c]\n", "d.yaml"))
    p.process("t2", [b'{"latency_ms": 5, "b": "y"}'])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    s = parse_metrics(generate_latest(reg).decode())
    assert total(s, "llm_requests_total") == 1 and total(s, "llm_requests_total", b="y", c="") == 1


@pytest.mark.parametrize(("text", "where"), [
    ("mappings:\n  - name: n\n    fields:\n      duration: {path: t, unit: fortnights}\n", ":4: mappings[0].fields"),
    ("mappings:\n  - name: n\n    fields:\n      latency: a.b\n", ":3: mappings[0].fields: unknown canonical field"),
    ("extra_labels: [ok]\nbogus: 1\n", ":2: bogus: unknown key"),
    ("extra_labels: [outcome]\n", ":1: "),
    ("metrics:\n  - {name: x_total, type: gauge, path: v}\n", ":2: metrics[0]"),
    ("extra_labels: [a\n  b: c\n", ":2: "),
    ("- just\n- a list\n", ":1: expected a mapping"),
])
def test_config_errors_name_the_line(tmp_path: Path, text: str, where: str) -> None:
    """Each mistake gives one message with the file and the YAML line where it is."""
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(str(p) + where.split(" ")[0])
    assert where.split(" ", 1)[-1] in str(e.value) and "\n" not in str(e.value)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llm_exporter", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_check_config_prints_what_the_file_defines(tmp_path: Path) -> None:
    """A good file: exit 0 and one line per definition; a bad one: exit 1 and one line on stderr."""
    r = cli("check-config", str(write(tmp_path, CONFIG)))
    assert r.returncode == 0, r.stderr
    assert "extra labels on every request metric: src_lang, tgt_lang" in r.stdout
    assert "metric app_chars_total (counter) <- chars" in r.stdout
    bad = cli("check-config", str(write(tmp_path, "extra_labels: [le]\n", "bad.yaml")))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "bad.yaml:1:" in bad.stderr


def test_replay_with_config_shows_the_mapped_metrics(tmp_path: Path) -> None:
    """`replay --config FILE samples...` prints the exposition with the mapping applied."""
    data = tmp_path / "lines.jsonl"
    data.write_text("".join(json.dumps(o) + "\n" for o in LINES))
    r = cli("replay", "--config", str(write(tmp_path, CONFIG)), str(data))
    assert r.returncode == 0, r.stderr
    s = parse_metrics(r.stdout)
    assert total(s, "llm_requests_total") == 5 and total(s, "app_chars_total") == 450


def test_daemon_reads_custom_json_with_its_config(tmp_path: Path) -> None:
    """The running daemon applies --config to stdin lines."""
    cfg = write(tmp_path, CONFIG)
    with exporter("--config", str(cfg), "--no-passthrough", "--gpu", "off") as e:
        e.wait_ready()
        e.stdin.write("".join(json.dumps(o) + "\n" for o in LINES).encode())
        e.stdin.flush()
        s = e.wait_lines(len(LINES))
        assert total(s, "llm_requests_total", src_lang="en") == 2
        assert total(s, "app_chars_total") == 450
        e.stdin.close()
        assert e.proc.wait(20) == 0


def test_custom_metrics_do_not_hide_server_lines(tmp_path: Path) -> None:
    """A vLLM JSON stats line that carries a custom metric's field still gives its vLLM gauges,
    app lines get the metric, and a JSON line no adapter knows still feeds it."""
    cfg = load_config(write(tmp_path, "metrics:\n  - {name: app_process, type: gauge, path: process}\n"))
    m = LLMMetrics()
    p = Pipeline(m, config=cfg)
    p.process("t", [
        b'{"asctime": "2025-05-19 10:13:31,418", "levelname": "INFO", "name": "vllm.v1.metrics.loggers",'
        b' "process": 7, "message": "Engine 000: Avg prompt throughput: 12068.8 tokens/s, Avg generation'
        b' throughput: 734.9 tokens/s, Running: 18 reqs, Waiting: 33 reqs, GPU KV cache usage: 87.7%,'
        b' Prefix cache hit rate: 0.0%"}',
        b'{"latency_ms": 5, "process": 9}',
        b'{"event": "heartbeat", "process": 11}',
    ])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    assert reg.get_sample_value("llm_requests_running", {
        "gen_ai_provider_name": "vllm", "gen_ai_request_model": "", "engine": "0"}) == 18
    assert total(parse_metrics(generate_latest(reg).decode()), "llm_requests_total") == 1
    assert reg.get_sample_value("app_process", {"gen_ai_provider_name": "app", "gen_ai_request_model": ""}) == 11


@pytest.mark.parametrize(("status", "outcome", "error_type"), [
    (429, "error", "overloaded"), (504, "error", "timeout"), (200, "success", ""), (False, "error", "_OTHER"),
    ("cancelled", "aborted", ""), ("failed", "error", "_OTHER"),
])
def test_mapped_lines_and_app_lines_agree_on_outcome(tmp_path: Path, status: object, outcome: str,
                                                      error_type: str) -> None:
    """A status read through a config mapping gives the same outcome and error type as app JSON."""
    from llm_exporter.adapters.app_json import AppJsonAdapter
    from llm_exporter.adapters.custom import CustomJsonAdapter

    cfg = load_config(write(tmp_path, "mappings:\n  - name: m\n    match: {kind: call}\n"
                                      "    fields: {outcome: res.status, duration: t}\n"))
    mapped = CustomJsonAdapter(cfg).parse_json(b"", {"kind": "call", "res": {"status": status}, "t": 1})
    assert (mapped[0]["outcome"], mapped[0]["error_type"]) == (outcome, error_type)
    if type(status) is not bool:  # app JSON's schema takes a word or an HTTP code
        app = AppJsonAdapter().parse_json(json.dumps({"status": status, "latency": 1}).encode(), None)
        assert (app["outcome"], app["error_type"]) == (outcome, error_type)


@pytest.mark.parametrize(("key", "flag"), [("limits", "--label-limit"), ("label_limit", "--label-limit"),
                                           ("max_line_bytes", "--max-line-bytes")])
def test_limits_in_the_file_point_to_their_options(tmp_path: Path, key: str, flag: str) -> None:
    """Limits are options: a `limits:`/`label_limit:`/`max_line_bytes:` key is refused with the line
    and the option that sets it, not a bare "unknown key"."""
    p = tmp_path / "c.yaml"
    value = "{label_limit: 5}" if key == "limits" else "5"
    p.write_text(f"mappings: []\n{key}: {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:2: {key}: unknown key") and flag in msg and "option" in msg, msg


def test_config_duration_units_are_the_units_table() -> None:
    """A mapping's `unit:` names are the units table's own (minutes spelled `min`), nothing apart."""
    from typing import get_args

    from llm_exporter.config import DurationUnit
    from llm_exporter.units import NAMED_UNIT_DIV, UNIT_DIV, parse_duration

    assert set(get_args(DurationUnit)) == set(NAMED_UNIT_DIV)
    for name, div in NAMED_UNIT_DIV.items():
        suffix = "m" if name == "min" else name
        assert UNIT_DIV[suffix] == div
        assert parse_duration(f"3{suffix}") == parse_duration("3", div)
    assert parse_duration("2m") == 120.0 and parse_duration("2min") is None  # strings: Go's `m`
