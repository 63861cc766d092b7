"""--config text rules: groups read as application JSON fields, start/end pairing, the bounded
open-request table, timestamps, check-config's explanations, and the linear-time engine."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import re2
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.adapters.app_json import AppJsonAdapter
from llm_exporter.adapters.base import Invalid
from llm_exporter.adapters.rules import RulesAdapter, rule_set
from llm_exporter.config import ConfigError, load_config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pairing import OpenTable, timestamp
from llm_exporter.pipeline import Pipeline
from tests.helpers import parse_metrics, total

RULES = r"""
rules:
  - name: trtllm-done
    provider: trtllm
    pattern: >-
      request (?P<request_id>\S+) finished in (?P<duration_ms>[0-9.]+)ms prompt=(?P<input_tokens>\S+)
      gen=(?P<output_tokens>\d+) status=(?P<status>\w+)(?: team=(?P<team>\w+))?
    labels: {tenant: team}
  - name: paired
    provider: mysrv
    max_open: 2
    start: '^start id=(?P<request_id>\w+) model=(?P<model>\S+) in=(?P<input_tokens>\d+)(?: at=(?P<ts>\S+))?'
    end: '^end id=(?P<request_id>\w+) out=(?P<output_tokens>\d+) reason=(?P<finish_reason>\w+)(?: at=(?P<ts>\S+))?'
  - name: vllm-override
    provider: mine
    pattern: 'Engine 000: .*Running: (?P<output_tokens>\d+) reqs'
"""


def _cfg(tmp_path: Path, text: str = RULES) -> object:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return load_config(p)


def _run(cfg: object, lines: list[bytes]) -> tuple[Pipeline, dict]:  # type: ignore[type-arg]
    m = LLMMetrics()
    pipe = Pipeline(m, config=cfg)
    pipe.process("file", lines)
    pipe.flush()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return pipe, parse_metrics(generate_latest(reg).decode())


def test_groups_read_exactly_as_json_fields(tmp_path: Path) -> None:
    """The rule's record equals the application JSON adapter's for the same names and values."""
    a = RulesAdapter(_cfg(tmp_path))
    rec = a.parse_text("request r1 finished in 120.5ms prompt=12 gen=30 status=500 team=red")
    same = AppJsonAdapter().parse_json(json.dumps({"request_id": "r1", "duration_ms": 120.5, "input_tokens": 12,
                                                   "output_tokens": 30, "status": 500}).encode(), None)
    same["provider"] = "trtllm"
    extra = rec.pop("extra_labels")
    assert rec == same
    # and against the hand-computed truth: 120.5 ms, 12 and 30 tokens, HTTP 500 is a server error
    assert (rec["duration_s"], rec["input_tokens"], rec["output_tokens"]) == (0.1205, 12, 30)
    assert (rec["outcome"], rec["error_type"]) == ("error", "_OTHER")  # a bare 500 names no class
    assert extra == {"tenant": "red"}


@pytest.mark.parametrize(("pattern", "line", "field", "want"), [
    (r"took (?P<duration>\S+)", "took 8m44s", "duration_s", 524.0),
    (r"took (?P<latency_us>\d+)", "took 2500", "duration_s", 0.0025),
    (r"ttft=(?P<time_to_first_token_ms>[\d.]+)", "ttft=35.5", "ttft_s", 0.0355),
    (r"prompt_tokens=(?P<prompt_tokens>\d+)", "prompt_tokens=7", "input_tokens", 7),
    (r"done (?P<done_reason>\w+) (?P<completion_tokens>\d+)", "done length 9", "finish_reason", "length"),
    (r"(?P<status>\w+) (?P<error_type>\w+) (?P<duration_s>[\d.]+)", "failed OutOfMemoryError 1", "error_type", "oom"),
    (r"(?P<status>\w+) (?P<duration_s>[\d.]+)", "aborted 1", "outcome", "aborted"),
])
def test_aliases_units_and_status(tmp_path: Path, pattern: str, line: str, field: str, want: object) -> None:
    cfg = _cfg(tmp_path, f"rules:\n  - name: r\n    pattern: '{pattern}'\n")
    rec = RulesAdapter(cfg).parse_text(line)
    assert rec[field] == pytest.approx(want) if isinstance(want, float) else rec[field] == want


def test_bad_values_are_invalid_with_the_field_and_rule(tmp_path: Path) -> None:
    a = RulesAdapter(_cfg(tmp_path))
    with pytest.raises(Invalid) as e:
        a.parse_text("request r2 finished in 20ms prompt=1x gen=30 status=ok")
    assert e.value.reason == "bad_value: input_tokens (rule trtllm-done)"
    cfg = _cfg(tmp_path, "rules:\n  - name: d\n    pattern: 'took (?P<duration>\\S+)'\n")
    with pytest.raises(Invalid) as e:
        RulesAdapter(cfg).parse_text("took soon")
    assert e.value.reason == "bad_duration (rule d)"


def test_pipeline_outcomes_rule_order_and_hits(tmp_path: Path) -> None:
    """Lines counted by hand: 2 trtllm matches (one invalid), a vLLM stats line the third rule takes
    before the built-in vLLM adapter, one unmatched line."""
    cfg = _cfg(tmp_path)
    stats = (b"INFO 05-01 10:00:00 [loggers.py:116] Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation "
             b"throughput: 0.0 tokens/s, Running: 3 reqs, Waiting: 0 reqs, GPU KV cache usage: 0.0%")
    pipe, s = _run(cfg, [b"request r1 finished in 120.5ms prompt=12 gen=30 status=ok team=red",
                         b"request r2 finished in 20ms prompt=1x gen=30 status=ok", stats, b"hello world"])
    assert total(s, "llm_exporter_lines_total", outcome="record") == 2
    assert total(s, "llm_exporter_lines_total", outcome="invalid") == 1
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == 1
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_provider_name="mine") == 3
    assert total(s, "gen_ai_server_request_duration_seconds_count", gen_ai_provider_name="trtllm", tenant="red") == 1
    assert total(s, "llm_server_num_requests_running") == 0  # the built-in vLLM adapter never saw it
    assert rule_set(cfg).hits() == {"trtllm-done": 2, "paired": 0, "vllm-override": 1}
    assert next(r.reason for r in pipe.rejects) == "bad_value: input_tokens (rule trtllm-done)"


def test_pairing_by_line_times_then_receive_time_and_eviction(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    m = LLMMetrics()
    pipe = Pipeline(m, config=cfg)
    now = [100.0]
    RulesAdapter.clock = staticmethod(lambda: now[0])  # type: ignore[assignment]
    recs: list[dict] = []  # type: ignore[type-arg]
    real_apply = m.apply
    m.apply = lambda r, t=None: (recs.append(r), real_apply(r, t))  # type: ignore[method-assign]
    try:
        # leading timestamps (peeled by the envelope, Python logging's comma fraction; then CRI's)
        pipe.process("f", [b"2024-05-01 10:00:00,100 start id=a model=m1 in=5",
                           b"2024-05-01 10:00:02,600 end id=a out=7 reason=stop",
                           b"2024-05-01T10:00:00.000000001Z stdout F start id=k model=m1 in=1",
                           b"2024-05-01T10:00:00.750000000Z stdout F end id=k out=1 reason=stop",
                           # a ts group inside the line
                           b"start id=g model=m1 in=1 at=2024-05-01T10:00:00Z",
                           b"end id=g out=1 reason=length at=2024-05-01T10:00:04Z"])
        # 10:00:02.600 - 10:00:00.100 = 2.5 s; 0.75 s; 4 s: the lines' own times (the clock did not move)
        reqs = [r for r in recs if r["kind"] == "request"]
        assert [r["duration_s"] for r in reqs] == pytest.approx([2.5, 0.75, 4.0])
        assert (reqs[0]["model"], reqs[0]["input_tokens"], reqs[0]["output_tokens"], reqs[0]["finish_reason"]) == \
            ("m1", 5, 7, "stop")
        # no time on the lines: our receive times, 4 s apart
        pipe.process("f", [b"start id=b model=m1 in=1"])
        now[0] = 104.0
        pipe.process("f", [b"end id=b out=1 reason=stop"])
        assert recs[-1]["duration_s"] == 4.0
        # max_open 2: the third open id evicts the oldest, whose end then has no duration
        recs.clear()
        pipe.process("f", [f"2024-05-01 10:00:0{i},000 start id={rid} model=m in=1".encode()
                           for i, rid in enumerate(("c", "d", "e"))])
        assert recs == [{"kind": "evicted", "provider": "mysrv", "n": 1}]
        pipe.process("f", [b"2024-05-01 10:00:09,000 end id=c out=1 reason=stop",
                           b"2024-05-01 10:00:09,000 end id=e out=1 reason=stop"])
        assert "duration_s" not in recs[1] and recs[2]["duration_s"] == 7.0
    finally:
        RulesAdapter.clock = staticmethod(time.monotonic)  # type: ignore[assignment]
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    s = parse_metrics(generate_latest(reg).decode())
    assert total(s, "llm_exporter_open_requests_evicted_total", gen_ai_provider_name="mysrv") == 1
    assert total(s, "llm_exporter_lines_total", outcome="record") == 13
    assert total(s, "gen_ai_server_request_duration_seconds_count", gen_ai_provider_name="mysrv") == 5


def test_open_table_bound() -> None:
    t: OpenTable[int] = OpenTable(3)
    for i in range(10):
        t[str(i)] = i
        list(t.evict())
    assert list(t) == ["7", "8", "9"] and t.evicted == 7


@pytest.mark.parametrize(("a", "b", "secs"), [
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:01.250Z", 1.25),
    ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:03Z", 3.0),
    ("2024-05-01 10:00:00,100", "2024-05-01 10:00:00,600", 0.5),
    ("2024/05/01 10:00:00", "2024/05/01 10:01:00", 60.0),
    ("05-01 10:00:00", "05-01 10:00:05", 5.0),  # vLLM's header
    ("May  1 10:00:00", "May  1 10:00:02", 2.0),  # syslog
    ("23:59:59.500", "00:00:00.500", 1.0),  # time of day across midnight (see pairing.elapsed)
    ("1714557600", "1714557601.5", 1.5),
    ("1714557600000", "1714557600250", 0.25),
    ("2024-05-01T10:00:00.123456789Z", "2024-05-01T10:00:00.623456Z", 0.5),
])
def test_timestamps(a: str, b: str, secs: float) -> None:
    from llm_exporter.pairing import elapsed
    ta, tb = timestamp(a), timestamp(b)
    assert ta is not None and tb is not None
    assert elapsed(ta, tb) == pytest.approx(secs)


def test_timestamp_refuses_garbage() -> None:
    assert all(timestamp(x) is None for x in ("", "soon", "99:99:99", "2024-13-45 10:00:00", "x" * 100))


@pytest.mark.parametrize(("body", "line", "says"), [
    ("    pattern: 'x (?P<duration>\\d+('\n", 3, "not a valid regular expression at character"),
    ("    pattern: 'x (?P<tokens>\\d+)'\n", 3, "unknown group name 'tokens'"),
    ("    pattern: 'x (?P<input_tokens>[a-z]+)'\n", 3, "can never match a number"),
    ("    pattern: 'x (?P<duration_ms>ms)'\n", 3, "can never match a number"),
    ("    pattern: '(a)\\1 (?P<duration>\\d+)'\n", 3, "linear-time engine (RE2)"),
    ("    pattern: 'x (?P<duration>\\d+)'\n    labels: {tenant: team}\n", 3, "reads group 'team'"),
    ("    start: 'x (?P<ts>\\S+)'\n    end: 'y (?P<request_id>\\d+)'\n", 3, "(?P<request_id>...)"),
    ("    start: 'x (?P<request_id>\\S+)'\n", 2, "start and end come together"),
    ("    provider: x\n", 2, "needs either pattern, or start and end"),
])
def test_check_config_explains_by_line(tmp_path: Path, body: str, line: int, says: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("rules:\n  - name: r\n" + body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: rules[0]"), msg
    assert says in msg
    assert "\n" not in msg


def test_hostile_pattern_is_linear(tmp_path: Path) -> None:
    """Nested quantifiers that take a backtracking engine exponential time on a near-miss line. The
    rule runs on RE2 (the engine guarantees time linear in the line), and the only way to make a
    pattern backtrack (backreferences, lookaround) is refused by check-config."""
    hostile = r"^(?P<request_id>(a+)+)+(b|a+a)+c (?P<duration>\d+)$"
    cfg = _cfg(tmp_path, f"rules:\n  - name: evil\n    pattern: '{hostile}'\n")
    prog = rule_set(cfg).rules[0].pattern
    assert type(prog).__module__.startswith("re2")
    # a backtracking engine tries every split of the a's among the nested groups (2**(n-1) for
    # n a's) before failing at the missing "c"; RE2 reads the line once
    line = "a" * 200_000 + "x 5"
    _, s = _run(cfg, [line.encode(), b"aaac 5"])
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum") == 5
    with pytest.raises(ConfigError):
        _cfg(tmp_path, "rules:\n  - name: evil\n    pattern: '(?P<request_id>a)(?=b) (?P<duration>\\d+)'\n")
    assert re.compile(hostile)  # Python accepts it; only RE2 keeps it linear


def test_re2_is_the_engine() -> None:
    assert re2.compile(r"(?P<x>\d+)").search("a 12").group("x") == "12"


@pytest.mark.parametrize(("path", "want"), [
    (f"/var/log/pods/kube-system_kube-apiserver-node1_{'a' * 32}/kube-apiserver/0.log",
     {"k8s_namespace_name": "kube-system", "k8s_pod_name": "kube-apiserver-node1",
      "k8s_container_name": "kube-apiserver"}),
    ("/var/log/pods/llm_vllm-0_3f9a1d2e-5c4b-4e7a-9b1c-2d3e4f5a6b7c/vllm/12.log.20240501-100000",
     {"k8s_namespace_name": "llm", "k8s_pod_name": "vllm-0", "k8s_container_name": "vllm"}),
    (f"/var/log/containers/vllm-0_llm_vllm-{'0f' * 32}.log",
     {"k8s_namespace_name": "llm", "k8s_pod_name": "vllm-0", "k8s_container_name": "vllm"}),
    (f"/var/lib/docker/containers/{'ab' * 32}/{'ab' * 32}-json.log.1", {"container_id": "ab" * 32}),
    (f"/var/lib/docker/containers/{'ab' * 32}/{'cd' * 32}-json.log", {}),
    ("/srv/logs/app.log", {}),
])
def test_file_labels_from_paths(path: str, want: dict[str, str]) -> None:
    from llm_exporter.file_labels import path_labels
    assert path_labels(path) == want


def test_vllm_pairing_uses_the_same_table_and_counts_evictions(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM's request-id table is an OpenTable: 120 `Received` ids into a table of 50 evict 70, and
    the adapter hands out records saying so (llm_exporter_open_requests_evicted_total)."""
    import llm_exporter.adapters.vllm as vllm_mod
    monkeypatch.setattr(vllm_mod, "MAX_TRACKED", 50)
    a = vllm_mod.VllmAdapter()
    assert isinstance(a.requests, OpenTable)
    out: list[dict] = []  # type: ignore[type-arg]
    for i in range(120):
        res = a.parse_text(f"INFO 04-10 03:44:50 [logger.py:39] Received request chatcmpl-{i:032x}: prompt: 'x', "
                           "params: SamplingParams(n=1), prompt_token_ids: [1, 2], lora_request: None.")
        out += res if isinstance(res, list) else []
    assert sum(r["n"] for r in out if r.get("kind") == "evicted") == 70 == a.evicted
