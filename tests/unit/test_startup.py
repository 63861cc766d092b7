"""Start-up lines of real servers give the phase, capacity and memory figures worked out by hand.

The lines are in tests/fixtures/startup (sources in its README) and tests/fixtures/samples; each
expected value is written out from the lines themselves, with the line it comes from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.framing import LineFramer
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from llm_exporter.records import validate_record
from llm_exporter.startup import StartupScanner, line_time
from tests.helpers import FIXTURES, parse_metrics, total

STARTUP = FIXTURES / "startup"
GiB = 1 << 30
MiB = 1 << 20
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def replay(path: Path, fmt: str = "auto") -> tuple[Samples, dict[str, int]]:
    m = LLMMetrics()
    p = Pipeline(m, fmt=fmt)
    framer = LineFramer(1 << 20)
    lines, _ = framer.feed(path.read_bytes())
    rest, _ = framer.flush()
    p.process("f", [*lines, *rest])
    p.flush("f")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return parse_metrics(generate_latest(reg).decode()), {o: n for (_s, o), n in m.internal.lines.items() if n}


def phases(s: Samples, provider: str) -> dict[str, float]:
    return {dict(lb)["phase"]: v for (n, lb), v in s.items()
            if n == "llm_server_startup_duration_seconds" and dict(lb)["gen_ai_provider_name"] == provider}


def memory(s: Samples, provider: str) -> dict[str, float]:
    return {dict(lb)["use"]: v for (n, lb), v in s.items()
            if n == "llm_server_memory_bytes" and dict(lb)["gen_ai_provider_name"] == provider}


def starts(s: Samples, provider: str) -> float:
    return total(s, "llm_server_starts_total", gen_ai_provider_name=provider)


# -- vLLM ----------------------------------------------------------------------------------------

def test_vllm_one_start_compile_kv_graphs_engine_and_ready() -> None:
    s, out = replay(STARTUP / "vllm_runai67.log")
    assert starts(s, "vllm") == 1
    assert phases(s, "vllm") == {
        "compile": 45.81,  # line 2: torch.compile takes 45.81 s in total
        "cuda_graphs": 37.0,  # line 5: Graph capturing finished in 37 secs
        "engine_init": 90.84,  # line 6: init engine (...) took 90.84 seconds
        "ready": 39.0,  # line 11 (11:03:56) minus line 2 (11:03:17), the first start-up line read
    }
    assert total(s, "llm_server_kv_cache_tokens", gen_ai_provider_name="vllm") == 1131008  # line 3
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="vllm") == 8.63  # line 4
    assert memory(s, "vllm") == {"cuda_graphs": pytest.approx(0.45 * GiB)}  # line 5: took 0.45 GiB
    # "Compiling a graph for general shape takes 36.76 s" (line 1) is one graph, not a phase
    assert out == {"record": 12}


def test_vllm_tensor_parallel_ranks_keep_the_slowest_phase_and_sum_memory() -> None:
    s, _ = replay(STARTUP / "vllm_tp2.log")
    assert starts(s, "vllm") == 1
    assert phases(s, "vllm") == {"weights": max(2.63, 2.60),  # lines 8, 9
                                 "model_init": max(3.106979, 3.001256)}  # lines 10, 11
    assert memory(s, "vllm") == {"weights": pytest.approx(2 * 11.0802 * GiB)}  # both ranks' weights


@pytest.mark.parametrize(("lineno", "facts"), [
    (1, {"phases": {"weights": 26.93}}),
    (2, {"phases": {"model_init": 32.969258}, "memory_use": "weights", "memory_bytes": 7.64 * GiB}),
    (3, {"phases": {"weights": 24.84}}),
    (4, {"phases": {"model_init": 31.657031}, "memory_use": "weights", "memory_bytes": 12.66 * GiB}),
    (5, {"phases": {"compile": 3.70}}),
    (6, {"memory_use": "kv_cache", "memory_bytes": 18.38 * GiB}),
    (7, {"memory_use": "kv_cache", "memory_bytes": 6.01 * GiB}),
    (8, {"kv_cache_tokens": 569878}),
    (9, {"max_concurrency": 4.35}),
    (10, {"start": True}),
    (11, {"start": True}),
    (12, None),  # a report that wrapped the line: no figure left on it
])
def test_vllm_lines_of_many_versions(lineno: int, facts: dict[str, object] | None) -> None:
    line = (STARTUP / "vllm_lines.log").read_text().splitlines()[lineno - 1]
    rec = StartupScanner().scan(line, 0.0)
    if facts is None:
        assert rec is None
        return
    assert rec is not None
    validate_record(rec)
    got = {k: v for k, v in rec.items() if k not in ("kind", "provider")}
    if "memory_bytes" in facts:
        assert got.pop("memory_bytes") == pytest.approx(facts["memory_bytes"])
        facts = {k: v for k, v in facts.items() if k != "memory_bytes"}
    assert got == facts
    assert rec["provider"] == "vllm"


def test_vllm_samples_concurrency_and_no_false_positives() -> None:
    """samples/vllm.log mixes stats, request and error lines of many versions: only line 9
    (`Maximum concurrency for 8192 tokens per request: 11.12x`) is a start-up line."""
    s, _ = replay(FIXTURES / "samples" / "vllm.log")
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="vllm") == 11.12
    assert phases(s, "vllm") == {} and memory(s, "vllm") == {}
    assert starts(s, "vllm") == 1


# -- TGI -----------------------------------------------------------------------------------------

def test_tgi_shards_ready_keeps_the_slowest_rank() -> None:
    s, _ = replay(STARTUP / "tgi_shards.log")
    assert phases(s, "tgi") == {"model_init": 218.658884257}  # rank 2, line 11
    assert starts(s, "tgi") == 1


def test_tgi_json_warmup_and_ready_from_the_lines_timestamps() -> None:
    s, _ = replay(FIXTURES / "samples" / "tgi_json.log")
    assert starts(s, "tgi") == 1  # line 1: Args { ... }
    p = phases(s, "tgi")
    assert p["warmup"] == pytest.approx(60 - 58.311499 + 1.304586)  # line 15 (10:01.304586) - 13 (09:58.311499)
    assert p["ready"] == pytest.approx(14.48963)  # line 15 (05:10:01.304586) - line 1 (05:09:46.814956)


def test_tgi_text_samples_count_three_starts() -> None:
    """tgi.log: line 1 `Connected` (a start read from its end), line 4 `Connected` after line 3's
    `Warming up model` (a second start), line 21 `Connected` (no figure: the same start) and
    line 26 `Args {` (a third start, nothing printed after it)."""
    s, _ = replay(FIXTURES / "samples" / "tgi.log")
    assert starts(s, "tgi") == 3
    assert phases(s, "tgi") == {}


# -- SGLang --------------------------------------------------------------------------------------

def test_sglang_weights_and_kv_cache() -> None:
    s, _ = replay(STARTUP / "sglang_gemma3.log")
    assert total(s, "llm_server_kv_cache_tokens", gen_ai_provider_name="sglang") == 834615  # line 2
    assert memory(s, "sglang") == {"weights": pytest.approx(8.13 * GiB),  # line 1: mem usage=8.13 GB
                                   "kv_cache": pytest.approx((54.12 + 54.12) * GiB)}  # line 2: K + V


def test_sglang_ranks_graph_capture_and_pool() -> None:
    s, _ = replay(STARTUP / "sglang_dp.log")
    assert phases(s, "sglang") == {"cuda_graphs": max(12.96, 12.96, 13.67, 13.63)}  # lines 3, 4, 12, 13
    assert total(s, "llm_server_kv_cache_tokens", gen_ai_provider_name="sglang") == 935444  # line 5
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="sglang") == 4097  # max_running_requests


def test_sglang_two_line_weight_load_is_timed_by_the_lines() -> None:
    """SGLang before its `elapsed=` field: `Load weight begin.` and `Load weight end.` of one rank."""
    sc = StartupScanner()
    assert sc.scan("[2025-03-08 12:28:51 TP0] Load weight begin. avail mem=21.63 GB", 0.0) is None
    rec = sc.scan("[2025-03-08 12:29:21 TP0] Load weight end. type=Qwen2ForCausalLM, dtype=torch.bfloat16, "
                  "avail mem=6.09 GB, mem usage=15.54 GB.", 0.0)
    assert rec == {"kind": "startup", "provider": "sglang", "phases": {"weights": 30.0},
                   "memory_use": "weights", "memory_bytes": pytest.approx(15.54 * GiB)}


def test_sglang_ready_line_of_the_samples() -> None:
    s, _ = replay(FIXTURES / "samples" / "sglang.log")
    assert starts(s, "sglang") == 1  # line 10: The server is fired up and ready to roll!


# -- llama.cpp and Ollama ------------------------------------------------------------------------

def test_llamacpp_weight_buffers_skip_the_mapped_file() -> None:
    s, _ = replay(STARTUP / "llamacpp_server.log")
    assert memory(s, "llamacpp") == {"weights": pytest.approx(8148.38 * MiB)}  # CPU_Mapped 417.66 left out


def test_llamacpp_kv_and_compute_buffers_and_json_model_loaded() -> None:
    s, _ = replay(STARTUP / "llamacpp_json.log")
    assert memory(s, "llamacpp") == {"kv_cache": pytest.approx(160.00 * MiB),  # line 4
                                     "compute": pytest.approx((108.25 + 5.00) * MiB)}  # lines 7, 8
    # line 12, {"message":"model loaded"}, carries epoch seconds while line 4 carries no time: two
    # clocks, so no model_init figure rather than a wrong one
    assert phases(s, "llamacpp") == {}


def test_llamacpp_slots_are_the_concurrency() -> None:
    s, _ = replay(STARTUP / "llamacpp_slots.log")
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="llamacpp") == 4


def test_ollama_runner_starts_each_count() -> None:
    s, _ = replay(STARTUP / "ollama_runner.log")
    assert starts(s, "ollama") == 3
    assert phases(s, "ollama") == {"ready": 30.45}  # the last line's figure


def test_ollama_memory_by_device_and_load_request() -> None:
    s, _ = replay(STARTUP / "ollama_memory.log")
    assert total(s, "llm_server_kv_cache_tokens", gen_ai_provider_name="ollama") == 128000  # KvSize:128000
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="ollama") == 2  # Parallel:2
    assert memory(s, "ollama") == {
        "weights": pytest.approx(680.0 * MiB + 14.8 * GiB + 8.6 * GiB),  # lines 6, 7, 8
        "compute": pytest.approx(9.1 * GiB),  # line 9 (lines 1, 2 are 0 B)
    }


def test_llamacpp_lines_inside_ollama_belong_to_ollama() -> None:
    s, _ = replay(STARTUP / "ollama_llamacpp.log")
    assert memory(s, "ollama") == {"kv_cache": pytest.approx((384.00 + 6784.00) * MiB),
                                   "compute": pytest.approx((268.25 + 76.01) * MiB)}
    assert memory(s, "llamacpp") == {}


# -- the parts ---------------------------------------------------------------------------------

def test_line_times() -> None:
    assert line_time("INFO 06-02 11:03:56 [api_server.py:1336] x") is not None
    a = line_time("2024-05-07T12:39:21.278450Z  INFO text_generation_router")
    b = line_time("2024-05-07T12:39:22.141574Z  INFO text_generation_router")
    assert a is not None and b is not None and b - a == pytest.approx(0.863124)
    # llama.cpp's own prefix: minutes.seconds.milliseconds.microseconds since it started
    assert line_time("0.02.208.203 I loaded  36% model tensors into buffer") == pytest.approx(2.208203)
    assert line_time("no time here") is None


def test_forced_format_only_knows_its_own_server() -> None:
    line = "INFO 06-02 11:03:55 [core.py:167] init engine (profile, create kv cache, warmup model) took 90.84 seconds"
    assert StartupScanner("tgi").scan(line, 0.0) is None
    assert StartupScanner("vllm").scan(line, 0.0) is not None
    assert not StartupScanner("app-json").active


def test_request_lines_keep_their_outcome() -> None:
    """A start-up word inside a request record's line never adds a start-up record."""
    s, out = replay(FIXTURES / "samples" / "llamacpp.log")
    assert out == {"record": 30, "ignored": 7}
    assert starts(s, "llamacpp") == 1  # line 16: server is listening on http://127.0.0.1:8080


def test_vllm_cpu_0_32_as_the_real_server_test_runs_it() -> None:
    """vLLM 0.32.0 (CPU build): `Initializing model took` before `Loading weights took`, KV cache
    size and concurrency on one line, `Starting vLLM server` (no "API")."""
    s, out = replay(STARTUP / "vllm_cpu_0.32.log")
    assert starts(s, "vllm") == 1  # line 1: the version banner
    assert phases(s, "vllm") == {
        "model_init": 0.291443,  # line 2
        "weights": 0.05,  # line 3
        "engine_init": 10.09,  # line 7: ... took 10.09 s
        "ready": 85.0,  # line 8 (07:12:21) minus line 1 (07:10:56)
    }
    assert total(s, "llm_server_kv_cache_tokens", gen_ai_provider_name="vllm") == 6748160  # line 6
    assert total(s, "llm_server_max_concurrency", gen_ai_provider_name="vllm") == 13180.0  # line 6, same line
    assert memory(s, "vllm") == {"kv_cache": pytest.approx(6.44 * GiB)}  # line 5: Auto set (6.44/23.54) GiB
    assert out == {"record": 8}  # every line is a vLLM log record; seven also carry a start-up record


def test_checkpoint_keeps_the_last_start() -> None:
    """--state-dir: a restarted exporter that will not read the start-up lines again still shows
    the last start's figures and the starts seen."""
    from llm_exporter.metrics import checkpoint

    m = LLMMetrics()
    p = Pipeline(m)
    p.process("f", (STARTUP / "vllm_cpu_0.32.log").read_bytes().splitlines())
    with m.lock:
        saved = json.loads(json.dumps(checkpoint.snapshot(m)))
    m2 = LLMMetrics()
    assert checkpoint.restore(m2, saved)
    a = [f for f in m.startup.families()]
    b = [f for f in m2.startup.families()]
    assert [x.samples for x in a] == [x.samples for x in b]
    assert any(x.samples for x in b)
