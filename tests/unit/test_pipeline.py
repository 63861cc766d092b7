"""The pipeline: one outcome per line, never raises, sums equal the input's."""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from llm_exporter import adapters
from llm_exporter.adapters import rules as rules_adapter
from llm_exporter.adapters.base import Adapter
from llm_exporter.config import load_config
from llm_exporter.framing import TooLong
from llm_exporter.metrics import LINE_OUTCOMES, LLMMetrics
from llm_exporter.pipeline import Pipeline


def outcomes(m: LLMMetrics, source: str = "t") -> Counter[str]:
    return Counter({o: n for (s, o), n in m.internal.lines.items() if s == source and n})


def test_each_line_lands_in_exactly_one_outcome(pipeline: Pipeline, metrics: LLMMetrics) -> None:
    """record, ignored, unparsed and invalid lines are told apart."""
    pipeline.process("t", [b'{"latency_ms": 5}', b"", b"plain text", b'{"a": 1}', b'{"latency_ms": -1}',
                           b"\x1b[32m\x1b[0m"])
    assert outcomes(metrics) == Counter(record=1, ignored=2, unparsed=2, invalid=1)


def test_rejected_lines_are_kept_with_their_reason(pipeline: Pipeline) -> None:
    """The last rejected lines are kept with line number, outcome and reason."""
    pipeline.process("t", [b'{"latency_ms": 5}', b"hello", b'{"input_tokens": -3}'])
    assert [(r.lineno, r.outcome, r.reason) for r in pipeline.rejects] == [
        (2, "unparsed", "no_adapter"), (3, "invalid", "bad_value")]


def test_ansi_colour_is_peeled_before_parsing(pipeline: Pipeline, metrics: LLMMetrics) -> None:
    """A coloured JSON line is still a record."""
    pipeline.process("t", [b'\x1b[2m{"latency_ms": 5}\x1b[0m'])
    assert outcomes(metrics) == Counter(record=1)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_any_bytes_give_one_outcome_per_line_and_never_raise(lines: list[bytes]) -> None:
    """Arbitrary bytes never raise; every line is counted exactly once."""
    m = LLMMetrics()
    p = Pipeline(m)
    lines = [ln.replace(b"\n", b"") for ln in lines]
    p.process("t", lines)
    assert sum(outcomes(m).values()) == len(lines)
    assert set(outcomes(m)) <= set(LINE_OUTCOMES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10)
known_keys = st.sampled_from(["latency_ms", "duration", "input_tokens", "output_tokens", "status", "model",
                              "error", "error_type", "usage", "ttft", "tpot", "path", "request_id", "id",
                              "queue_time_ms", "level", "finish_reason", "service", "task_type"])


@settings(max_examples=300)
@given(st.lists(st.dictionaries(known_keys | st.text(max_size=8), json_values, max_size=8), max_size=20))
def test_json_with_known_names_and_any_values_never_raises(objs: list[dict[str, object]]) -> None:
    """JSON objects mixing known names and arbitrary values are records, invalid or unparsed, never a crash."""
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("t", [json.dumps(o).encode() for o in objs])
    assert sum(outcomes(m).values()) == len(objs)
    assert "adapter_error" not in {r.reason for r in p.rejects}


request = st.fixed_dictionaries({
    "model": st.sampled_from(["a", "b", "c"]),
    "latency_ms": st.integers(min_value=0, max_value=100_000),
    "input_tokens": st.integers(min_value=0, max_value=10**6),
    "output_tokens": st.integers(min_value=0, max_value=10**5),
    "status": st.sampled_from(["success", "error", "aborted"]),
})


@settings(max_examples=100)
@given(st.lists(request, max_size=60))
def test_sums_and_counts_equal_the_input(reqs: list[dict[str, object]]) -> None:
    """Request counts, latency sums and token sums equal a plain count of the generated lines."""
    m = LLMMetrics()
    p = Pipeline(m)
    p.process("t", [json.dumps(r).encode() for r in reqs])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    for model in "abc":
        mine = [r for r in reqs if r["model"] == model]
        for outcome in ("success", "error", "aborted"):
            got = reg.get_sample_value("llm_requests_total", {
                "gen_ai_operation_name": "", "gen_ai_provider_name": "app", "gen_ai_request_model": model,
                "llm_adapter": "", "outcome": outcome}) or 0
            assert got == sum(1 for r in mine if r["status"] == outcome)
        labels = {"gen_ai_operation_name": "", "gen_ai_provider_name": "app", "gen_ai_request_model": model,
                  "llm_adapter": ""}
        dur_sum = sum((reg.get_sample_value("gen_ai_server_request_duration_seconds_sum",
                                            {**labels, "error_type": et}) or 0) for et in ("", "_OTHER"))
        assert dur_sum == pytest.approx(sum(r["latency_ms"] for r in mine) / 1000)  # type: ignore[misc]
        for kind, field in (("input", "input_tokens"), ("output", "output_tokens")):
            got = reg.get_sample_value("gen_ai_client_token_usage_sum", {**labels, "gen_ai_token_type": kind}) or 0
            assert got == sum(r[field] for r in mine)  # type: ignore[misc]


def test_a_random_seed_mix_counts_exactly(pipeline: Pipeline, metrics: LLMMetrics) -> None:
    """200 random lines: the record/unparsed split matches how the lines were made."""
    rnd = random.Random(5)
    lines, n_json = [], 0
    for _ in range(200):
        if rnd.random() < 0.8:
            lines.append(json.dumps({"latency_ms": rnd.randint(0, 999), "model": "m"}).encode())
            n_json += 1
        else:
            lines.append(b"INFO: some text " + str(rnd.random()).encode())
    pipeline.process("t", lines)
    assert outcomes(metrics) == Counter(record=n_json, unparsed=200 - n_json)


class _Broken(Adapter):
    """Raises on `boom` lines, returns a record the metrics cannot apply for `bad` lines."""

    name = "broken"

    def parse_text(self, text: str) -> Any:
        if text == "boom":
            raise RuntimeError("adapter bug")
        if text == "bad":
            return {"kind": "no_such_kind"}
        return {"kind": "log", "provider": "x", "level": "INFO"}


def test_adapter_bugs_and_unappliable_records_are_counted_and_processing_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A raising adapter or a malformed record is one invalid/adapter_error line; later lines still count."""
    monkeypatch.setitem(adapters.ADAPTERS, "broken", f"{__name__}:_Broken")
    m = LLMMetrics()
    p = Pipeline(m, fmt="broken")
    p.process("t", [b"ok", b"boom", b"bad", b"ok"])
    p.process("t", [b"ok"])
    assert outcomes(m) == Counter(record=3, invalid=2)
    assert [(r.source, r.lineno, r.outcome, r.reason, r.line) for r in p.rejects] == [
        ("t", 2, "invalid", "adapter_error", b"boom"), ("t", 3, "invalid", "adapter_error", b"bad")]
    assert m.engine.logs == {("x", "INFO"): 3}


def test_each_json_line_is_decoded_once(pipeline: Pipeline, metrics: LLMMetrics,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """App lines and server JSON lines (vLLM logging, Ollama objects) are decoded by orjson once each."""
    import orjson

    calls = []
    real = orjson.loads

    def counting(data: bytes | str) -> object:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)
    lines = [b'{"latency_ms": 5, "model": "m"}',
             b'{"asctime": "2026-11-22 03:41:09,721", "levelname": "INFO", "name": "vllm.x", "message": "hello"}',
             b'{"model": "llama3", "created_at": "2024-01-01T00:00:00Z", "done": true, "total_duration": 5000000,'
             b' "eval_count": 3, "prompt_eval_count": 2}']
    pipeline.process("t", lines)
    assert len(calls) == len(lines)
    assert sum(outcomes(metrics).values()) == 3


def test_worker_call_runs_on_the_pipeline_thread_between_batches(pipeline: Pipeline, metrics: LLMMetrics) -> None:
    """Worker.call waits its turn behind queued lines and runs on the pipeline thread."""
    import threading

    from llm_exporter.worker import Worker

    w = Worker(pipeline, max_chunks=8)
    w.start()
    try:
        w.put("t", [b'{"latency_ms": 5}'] * 100)
        seen: list[tuple[str, int]] = []
        w.call(lambda: seen.append((threading.current_thread().name, metrics.internal.lines[("t", "record")])))
        assert seen == [("pipeline", 100)]
        def fail() -> None:
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            w.call(fail)
        w.put("t", [b'{"latency_ms": 5}'])  # the thread survived the failing call
    finally:
        w.stop()
    assert metrics.internal.lines[("t", "record")] == 101


def _wrap(kind: str, stream: str, part: bytes, last: bool) -> bytes:
    """One physical line of a container runtime: a CRI line or a docker json-file entry."""
    if kind == "cri":
        return b"2024-05-12T06:47:18.123456789Z %s %s %s" % (stream.encode(), b"F" if last else b"P", part)
    return json.dumps({"log": part.decode() + ("\n" if last else ""), "stream": stream,
                       "time": "2024-05-12T06:47:18.123456789Z"}).encode()


@settings(max_examples=100)
@given(kind=st.sampled_from(["cri", "docker"]),
       lines=st.lists(st.tuples(request, st.sets(st.integers(1, 60), max_size=3),
                                st.sampled_from(["stdout", "stderr"])), min_size=1, max_size=12),
       open_at_eof=st.booleans())
def test_fragments_count_once_also_when_held_at_end_of_stream(
        kind: str, lines: list[tuple[dict[str, object], set[int], str]], open_at_eof: bool) -> None:
    """Lines split into CRI `P`/`F` or docker partial entries, the last one maybe left open at end of
    stream: each physical line has one outcome (a held fragment `ignored`, the closing one `record`),
    and each logical line is one request, the one still held at EOF included, never two."""
    m = LLMMetrics()
    p = Pipeline(m)
    physical: list[bytes] = []
    fragments = 0
    for i, (req, cuts, stream) in enumerate(lines):
        text = json.dumps(req).encode()
        edges = [0, *sorted(c for c in cuts if c < len(text)), len(text)]
        parts = [text[a:b] for a, b in itertools.pairwise(edges)]
        open_line = open_at_eof and i == len(lines) - 1
        for j, part in enumerate(parts):
            physical.append(_wrap(kind, stream, part, last=j == len(parts) - 1 and not open_line))
        fragments += len(parts) if open_line else len(parts) - 1
    p.process("t", physical)
    p.flush("t")
    p.flush()  # a second flush (another source's EOF, a reload) finds nothing held
    assert outcomes(m) == Counter({"ignored": fragments, "record": len(physical) - fragments} if fragments else
                                  {"record": len(physical)})
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    got = sum(s.value for fam in reg.collect() for s in fam.samples if s.name == "llm_requests_total")
    assert got == len(lines)
    out = sum(s.value for fam in reg.collect() for s in fam.samples
              if s.name == "gen_ai_client_token_usage_sum" and s.labels["gen_ai_token_type"] == "output")
    assert out == sum(r["output_tokens"] for r, _, _ in lines)  # type: ignore[misc]


# -- rejects, flushes and incidents, worked out by hand ------------------------------------------

APP_LINE = b'{"request_id":"r1","model":"m","status":"success","duration_ms":120,"output_tokens":7}'
APP_FAILED = b'{"request_id":"r2","model":"m","status":"error","duration_ms":80,"error_type":"timeout"}'
# tests/fixtures/corpus/ollama.log: Ollama's runner died while loading a model (one incident)
OLLAMA_CRASH = (b'time=2025-07-16T20:07:57.610+02:00 level=ERROR source=sched.go:489 msg="error loading llama'
                b' server" error="llama runner process has terminated: exit status 2"')
POD_LOG = "/var/log/pods/llm_vllm-0_0123abcd-0000-0000-0000-000000000000/vllm/0.log"


def rejects(p: Pipeline) -> list[tuple[str, int, str, str, bytes]]:
    return [(r.source, r.lineno, r.outcome, r.reason, r.line) for r in p.rejects]


def server_errors(m: LLMMetrics) -> float:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return sum(s.value for fam in reg.collect() for s in fam.samples if s.name == "llm_server_errors_total")


def test_rejects_name_the_source_line_outcome_reason_and_first_200_bytes(pipeline: Pipeline) -> None:
    """Each rejected line is kept with where it was read, its number, outcome, reason and at most 200
    bytes of it; blank and recognised lines are no rejects."""
    long_text = b"y" * 300
    pipeline.process("stdin", [b"hello world", b"", b'{"x": 1}', TooLong(b"x" * 300), long_text,
                               b'{"input_tokens": -3}', APP_LINE])
    assert rejects(pipeline) == [
        ("stdin", 1, "unparsed", "no_adapter", b"hello world"),
        ("stdin", 3, "unparsed", "json_unknown_shape", b'{"x": 1}'),
        ("stdin", 4, "too_long", "line_too_long", b"x" * 200),
        ("stdin", 5, "unparsed", "no_adapter", b"y" * 200),
        ("stdin", 6, "invalid", "bad_value", b'{"input_tokens": -3}'),
    ]


def test_a_followed_files_rejects_name_its_path_or_else_its_source() -> None:
    """A stream with a name (a followed file's path) is named by it; one without, by its source."""
    p = Pipeline(LLMMetrics())
    p.stream_names["/var/log/llm/b.log"] = "/var/log/llm/b.log"
    p.process("files", [b"hello"], stream="/var/log/llm/a.log")
    p.process("files", [b"hello", b"again"], stream="/var/log/llm/b.log")
    assert rejects(p) == [("files", 1, "unparsed", "no_adapter", b"hello"),
                          ("/var/log/llm/b.log", 1, "unparsed", "no_adapter", b"hello"),
                          ("/var/log/llm/b.log", 2, "unparsed", "no_adapter", b"again")]


def test_only_the_last_50_rejects_are_kept(pipeline: Pipeline) -> None:
    pipeline.process("t", [b"line %d" % i for i in range(1, 61)])
    assert [r.lineno for r in pipeline.rejects] == list(range(11, 61))


def test_a_flush_keeps_the_line_count_and_a_forgetting_flush_starts_it_again(pipeline: Pipeline) -> None:
    """Lines are numbered on across an idle flush; a flush that forgets (a file gone) starts over,
    also for a source never seen or never named."""
    pipeline.process("t", [b"one"])
    pipeline.flush("t")
    pipeline.process("t", [b"two"])
    pipeline.flush()
    pipeline.process("t", [b"three"])
    pipeline.flush("t", forget=True)
    pipeline.flush("never seen", forget=True)
    pipeline.process("t", [b"four"])
    assert [(r.lineno, r.line) for r in pipeline.rejects] == [(1, b"one"), (2, b"two"), (3, b"three"),
                                                              (1, b"four")]


def test_fragments_held_at_end_of_stream_are_counted_with_their_records(pipeline: Pipeline,
                                                                         metrics: LLMMetrics) -> None:
    """At a flush, CRI fragments still held are parsed: a crash line's incident, a request, and plain
    text (no record) on a followed pod log with --file-labels."""
    pipeline.file_labels = True
    pipeline.stream_names[POD_LOG] = POD_LOG
    pipeline.process("files", [b"2026-01-01T00:00:00.1Z stdout P " + APP_LINE,
                               b"2026-01-01T00:00:00.2Z stderr P plain words"], stream=POD_LOG)
    pipeline.process("files", [b"2026-01-01T00:00:00.3Z stderr P " + OLLAMA_CRASH], stream=POD_LOG + ".1")
    pipeline.flush()
    assert outcomes(metrics, "files") == Counter(ignored=3)
    assert server_errors(metrics) == 1
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics)  # type: ignore[arg-type]
    assert sum(s.value for fam in reg.collect() for s in fam.samples if s.name == "llm_requests_total") == 1


def test_an_incident_is_counted_again_only_after_a_successful_request(pipeline: Pipeline,
                                                                      metrics: LLMMetrics) -> None:
    """The same death logged twice is one incident; a failed request shows no life, a successful one
    does, and the next death is a second incident."""
    pipeline.process("t", [OLLAMA_CRASH, OLLAMA_CRASH])
    assert server_errors(metrics) == 1
    pipeline.process("t", [APP_FAILED, OLLAMA_CRASH])
    assert server_errors(metrics) == 1
    pipeline.process("t", [APP_LINE, OLLAMA_CRASH, OLLAMA_CRASH])
    assert server_errors(metrics) == 2


def test_a_byte_order_mark_and_the_indentation_after_it_are_skipped(pipeline: Pipeline,
                                                                    metrics: LLMMetrics) -> None:
    pipeline.process("t", [b"\xef\xbb\xbf  " + APP_LINE])
    assert outcomes(metrics) == Counter(record=1)


def test_a_line_that_is_not_utf8_is_read_with_replacement_characters(pipeline: Pipeline) -> None:
    """Latin-1 text is plain text no adapter knows, never an adapter error."""
    pipeline.process("t", [b"caf\xe9 ouvert"])
    assert rejects(pipeline) == [("t", 1, "unparsed", "no_adapter", b"caf\xe9 ouvert")]


class _HandsOutBadLists(Adapter):
    """An adapter with bugs: a list holding a record of no known kind, or a list of no records."""

    name = "bad-lists"

    def parse_text(self, text: str) -> Any:
        if text == "unknown kind":
            return [{"kind": "log", "provider": "x", "level": "INFO"}, {"kind": "no_such_kind"}]
        if text == "no record":
            return ["not a record"]
        return None


def test_an_adapter_handing_out_bad_lists_is_an_adapter_error_logged_with_what_it_handed_out(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(adapters.ADAPTERS, "bad-lists", f"{__name__}:_HandsOutBadLists")
    p = Pipeline(LLMMetrics(), fmt="bad-lists")
    with caplog.at_level(logging.ERROR, logger="llm_exporter.pipeline"):
        p.process("t", [b"unknown kind", b"no record"])
    assert rejects(p) == [("t", 1, "invalid", "adapter_error", b"unknown kind"),
                          ("t", 2, "invalid", "adapter_error", b"no record")]
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [str(e) for e in errors if isinstance(e, TypeError)] == ["an adapter handed out str, not a record"]


def test_a_json_line_orjson_cannot_read_still_reaches_the_application_reader_behind_text_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `rules:` in --config the rules come first in the chain and want decoded JSON; a line
    Python's json.dumps wrote with a NaN is no JSON to orjson, and app-json (which judges such
    lines) still gets it after them: its NaN duration is a bad value."""
    monkeypatch.setattr(rules_adapter, "_SETS", {})  # the compiled rules of other tests' configs stay as they are
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  - name: done\n    provider: mysrv\n"
                   "    pattern: '^done id=(?P<request_id>\\S+) took (?P<duration>\\S+)$'\n")
    p = Pipeline(LLMMetrics(), config=load_config(cfg))
    line = b'{"request_id": "r1", "model": "m", "status": "success", "duration_ms": NaN, "output_tokens": 7}'
    p.process("t", [line])
    assert rejects(p) == [("t", 1, "invalid", "bad_value", line)]
