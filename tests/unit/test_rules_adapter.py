"""The `rules:` adapter line by line (in process): hits per rule, labels from groups, tenant and
LoRA adapter groups read as the JSON fields are, and a paired request's duration from the lines'
own times (a `ts` group or the envelope's timestamp) or, failing that, from when we read them.
Expected values are worked out by hand from the lines and the clock the test sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_exporter.adapters import rules as rules_adapter
from llm_exporter.adapters.base import Invalid
from llm_exporter.adapters.rules import RulesAdapter, rule_set
from llm_exporter.config import load_config
from llm_exporter.envelopes import Envelope

RULES = r"""
rules:
  - name: done
    provider: mysrv
    pattern: >-
      ^done id=(?P<request_id>\S+)(?: team=(?P<team>\w+))?(?: in=(?P<input_tokens>\d+))? took
      (?P<duration>\S+)(?: user=(?P<user>\w+))?(?: lora=(?P<lora>\S+))?(?: tier=(?P<tier>\w+))?$
    labels: {tier: tier}
  - name: paired
    provider: mysrv
    start: '^start id=(?P<request_id>\w+)(?: at=(?P<ts>\S+))?$'
    end: '^end id=(?P<request_id>\w+) out=(?P<output_tokens>\d+)(?: at=(?P<ts>\S+))?$'
"""


def config(tmp_path: Path, extra: str = "", name: str = "c.yaml") -> Any:
    p = tmp_path / name
    p.write_text(RULES + extra)
    return load_config(p)


class Clock:
    """Our receive time, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def adapter(cfg: Any, now: float = 100.0) -> tuple[RulesAdapter, Clock]:
    a = RulesAdapter(cfg)
    clock = Clock(now)
    a.clock = clock  # type: ignore[method-assign]
    return a, clock


def test_each_matching_line_is_one_hit_of_its_rule(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    a, _ = adapter(cfg)
    lines = ["done id=r1 took 1s", "done id=r2 took 2s", "start id=a", "end id=a out=3", "start id=b",
             "end id=c out=1", "done id=r3 took 3s", "something else"]
    out = [a.parse_text(line) for line in lines]
    assert out[-1] is None and all(o is not None for o in out[:-1])
    assert rule_set(cfg).hits() == {"done": 3, "paired": 4}  # 3 lines; 2 starts and 2 ends


def test_streams_of_one_config_count_into_one_rule_set_whatever_came_between(tmp_path: Path) -> None:
    cfg, other = config(tmp_path), config(tmp_path, name="d.yaml")
    first, _ = adapter(cfg)
    adapter(other)  # another config's stream in between (a reload, a second pipeline)
    second, _ = adapter(cfg)
    first.parse_text("done id=r1 took 1s")
    second.parse_text("done id=r2 took 1s")
    assert rule_set(cfg).hits() == {"done": 2, "paired": 0}
    assert rule_set(other).hits() == {"done": 0, "paired": 0}


def test_compiled_rules_are_kept_for_nine_configs_at_most(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules_adapter, "_SETS", {})
    cfgs = [config(tmp_path, name=f"c{i}.yaml") for i in range(10)]
    sets = [rule_set(c) for c in cfgs[:9]]
    assert rule_set(cfgs[0]) is sets[0]  # nine kept
    rule_set(cfgs[9])  # a tenth: the kept ones are dropped (compiled again when next asked for)
    assert rule_set(cfgs[0]) is not sets[0]
    assert len(rules_adapter._SETS) == 2


def test_labels_tenant_and_adapter_come_from_groups(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path))
    rec = a.parse_text("done id=r1 team=red took 1.5s user=bob lora=sql-lora tier=gold")
    assert (rec["duration_s"], rec["request_id"], rec["provider"]) == (1.5, "r1", "mysrv")
    # `team` before `user`, as in a JSON line; the LoRA adapter by its group
    assert (rec["tenant"], rec["tenant_key"], rec["adapter"], rec["extra_labels"]) == (
        "red", None, "sql-lora", {"tier": "gold"})
    rec = a.parse_text("done id=r2 took 250ms")  # no tenant or adapter group matched: none
    assert "adapter" not in rec and rec.get("tenant") is None


def test_groups_that_did_not_match_are_left_out_and_their_label_is_empty(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path))
    rec = a.parse_text("done id=r2 took 250ms")
    assert (rec["duration_s"], rec["extra_labels"]) == (0.25, {"tier": ""})
    assert "input_tokens" not in rec
    rec = a.parse_text("done id=r3 in=12 took 1s")
    assert (rec["input_tokens"], rec["extra_labels"]) == (12, {"tier": ""})


def test_the_config_tenant_path_is_looked_at_first(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path, "accounting:\n  tenant: [user]\n"))
    rec = a.parse_text("done id=r1 team=red took 1.5s user=bob")
    assert rec["tenant"] == "bob"


def test_a_bad_group_value_names_the_field_and_the_rule(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path))
    with pytest.raises(Invalid) as e:
        a.parse_text("done id=r1 took soon")
    assert e.value.reason == "bad_duration (rule done)"


def test_a_pair_without_times_of_its_own_takes_our_receive_times(tmp_path: Path) -> None:
    a, clock = adapter(config(tmp_path), now=100.0)
    assert a.parse_text("start id=a") == []
    clock.now = 100.25
    rec = a.parse_text("end id=a out=3")
    assert (rec["duration_s"], rec["output_tokens"], rec["request_id"]) == (0.25, 3, "a")


@pytest.mark.parametrize(("start", "end"), [
    ("start id=a at=2024-05-01T10:00:00Z", "end id=a out=3"),
    ("start id=a", "end id=a out=3 at=2024-05-01T10:00:09Z"),
])
def test_a_pair_with_only_one_lines_time_takes_our_receive_times(tmp_path: Path, start: str, end: str) -> None:
    a, clock = adapter(config(tmp_path), now=5.0)
    a.parse_text(start)
    clock.now = 7.5
    assert a.parse_text(end)["duration_s"] == 2.5


def test_a_pair_with_both_times_takes_their_difference(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path), now=5.0)  # the clock does not move: only the lines' times count
    a.parse_text("start id=a at=2024-05-01T10:00:00.250Z")
    assert a.parse_text("end id=a out=3 at=2024-05-01T10:00:01Z")["duration_s"] == 0.75


@pytest.mark.parametrize(("start", "end", "seconds"), [
    ("[2024-05-01 10:00:00] start id=a", "[2024-05-01 10:00:02.250] end id=a out=3", 2.25),
    ("2024-05-01 10:00:00,100 - start id=a", "2024-05-01 10:00:01,000 - end id=a out=3", 0.9),
    ("2024-05-01T10:00:01.5Z | start id=a", "2024-05-01T10:00:04Z | end id=a out=3", 2.5),
])
def test_a_pair_takes_the_timestamps_the_envelope_peeled(tmp_path: Path, start: str, end: str,
                                                         seconds: float) -> None:
    a, _ = adapter(config(tmp_path), now=5.0)
    a.envelope = env = Envelope()
    a.parse_text(env.peel(start.encode()).decode())  # type: ignore[union-attr]
    rec = a.parse_text(env.peel(end.encode()).decode())  # type: ignore[union-attr]
    assert rec["duration_s"] == pytest.approx(seconds, abs=1e-6)  # epoch seconds: float steps of 2.4e-7


def test_a_syslog_stamp_in_another_language_falls_back_to_receive_times(tmp_path: Path) -> None:
    """journald on a French system writes `déc.`: the stamp is not ASCII and no time is read from
    it, so the pair's duration is our receive times' difference (and nothing fails)."""
    a, clock = adapter(config(tmp_path), now=10.0)
    a.envelope = env = Envelope()
    a.parse_text(env.peel("déc. 5 10:00:00 host srv[1]: start id=a".encode()).decode())  # type: ignore[union-attr]
    clock.now = 13.0
    rec = a.parse_text(env.peel("déc. 5 10:00:02 host srv[1]: end id=a out=3".encode()).decode())  # type: ignore[union-attr]
    assert rec["duration_s"] == 3.0


def test_an_end_with_no_start_is_a_request_without_duration(tmp_path: Path) -> None:
    a, _ = adapter(config(tmp_path))
    rec = a.parse_text("end id=zz out=4")
    assert rec["output_tokens"] == 4 and "duration_s" not in rec


def test_an_end_line_with_an_empty_id_closes_no_open_request(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_text("rules:\n  - name: ids\n    start: '^s (?P<request_id>\\w*)$'\n"
                 "    end: '^e (?P<request_id>\\w*) out=(?P<output_tokens>\\d+)$'\n")
    a, clock = adapter(load_config(p), now=1.0)
    assert a.parse_text("s XXXX") == [] and a.parse_text("s ") == []  # an empty id opens nothing
    clock.now = 4.0
    rec = a.parse_text("e  out=2")
    assert rec["output_tokens"] == 2 and "duration_s" not in rec
    assert a.parse_text("e XXXX out=1")["duration_s"] == 3.0  # the open one is still there
