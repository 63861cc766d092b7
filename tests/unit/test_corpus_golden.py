"""Golden tests on the real-line corpus (tests/fixtures/corpus/*.log, README there).

Each cited block of a corpus file comes from one deployment, so each is fed as a stream of its
own, through the real pipeline. The expected figures are worked out by hand from the lines (the
comments say which block gives what, by its source); none is copied from the exporter's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from tests.helpers import FIXTURES, parse_metrics, total

CORPUS = FIXTURES / "corpus"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def blocks(path: Path) -> list[tuple[str, list[bytes]]]:
    """The cited blocks of a corpus file: (source line, its lines)."""
    out: list[tuple[str, list[bytes]]] = []
    for line in path.read_bytes().split(b"\n"):
        if line.startswith(b"#@ "):
            out.append((line.decode(), []))
        elif out:
            out[-1][1].append(line)
    if out and out[-1][1] and out[-1][1][-1] == b"":
        out[-1][1].pop()  # the file's final newline
    return out


def replay(name: str) -> tuple[Samples, dict[str, int]]:
    m = LLMMetrics()
    p = Pipeline(m)
    for i, (_, lines) in enumerate(blocks(CORPUS / f"{name}.log")):
        p.process(f"b{i}", lines)
        p.flush(f"b{i}")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    outcomes: dict[str, int] = {}
    for (_s, o), n in m.internal.lines.items():
        if n:
            outcomes[o] = outcomes.get(o, 0) + n
    return parse_metrics(generate_latest(reg).decode()), outcomes


def v(s: Samples, name: str, **labels: str) -> float:
    return total(s, name, **labels)


def test_every_block_cites_its_source() -> None:
    """Each block of each corpus file starts with its public source."""
    for path in sorted(CORPUS.glob("*.log")):
        assert path.read_bytes().startswith(b"#@ source: https://github.com/"), path.name
        for head, lines in blocks(path):
            assert head.startswith("#@ source: https://github.com/") and lines, (path.name, head)


def test_tgi() -> None:
    s, out = replay("tgi")
    # #3248: six `Failed to send event. Receiver dropped.` lines (two replicas behind compose), logged by
    # the multi-prompt /v1/completions handler: six prompts whose client went away
    assert v(s, "llm_requests_total", gen_ai_provider_name="tgi", outcome="aborted") == 6
    assert v(s, "llm_requests_total", gen_ai_operation_name="text_completion", outcome="aborted") == 6
    # bionic-gpt#154: one `inputs tokens + max_new_tokens must be <=` error inside generate_stream's span;
    # #3050: `Incomplete generation` inside sagemaker_compatibility > compat_generate > generate
    assert v(s, "llm_request_errors_total", gen_ai_provider_name="tgi", error_type="validation") == 1
    assert v(s, "llm_request_errors_total", gen_ai_provider_name="tgi", gen_ai_operation_name="text_completion",
             error_type="_OTHER") == 1
    assert v(s, "llm_requests_total", gen_ai_provider_name="tgi", outcome="error") == 2
    # #2593: the router's `Server error: ... Connection refused` per shard connection is batch-level, not a
    # request's (the requests it breaks say so in their own spans): ERROR records only. ERROR records:
    # #3248 6, #1627 3 + its launcher exit, #1156 1 + exit, #2828 exit, #2280 exit, bionic 1, #3050 1, #2593 2
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="tgi", level="ERROR") == 6 + 4 + 2 + 1 + 1 + 1 + 1 + 2
    assert v(s, "llm_requests_total", gen_ai_provider_name="tgi", outcome="success") == 0
    # server incidents, one per death however many lines it takes: #2828 (`Error: WebserverFailed`),
    # #1627 (shard stderr, signal 4, ShardCannotStart, `Shard 0 failed to start`: one), #1156
    # (`Shard 0 failed to start` and its ShardCannotStart: one), #2280 (`Error: ShardFailed`)
    assert v(s, "llm_server_errors_total", gen_ai_provider_name="tgi", error_type="engine_dead") == 4
    # #1156 opens with the tail of a Python traceback relayed before any TGI line: 2 lines unknown
    assert out["unparsed"] == 2


def test_sglang() -> None:
    s, out = replay("sglang")
    # access lines on inference paths are SGLang's finished requests: #22166 six chat, #7515 three
    # chat (its GET /health is not one), #6291 three /v1/completions, #12414 two chat, #393 three chat
    # (bare uvicorn lines, after the 2024 scheduler's `new fill batch` named the stream)
    assert v(s, "llm_requests_total", gen_ai_provider_name="sglang", gen_ai_operation_name="chat",
             outcome="success") == 6 + 3 + 2 + 3
    assert v(s, "llm_requests_total", gen_ai_provider_name="sglang", gen_ai_operation_name="text_completion",
             outcome="success") == 3
    assert v(s, "llm_http_requests_total", gen_ai_provider_name="sglang", path="/health") == 1
    # prompt tokens = #new-token + #cached-token per Prefill line; cached = #cached-token
    # no rank tag: #22166 158 + 290 + 160 (cached 0), #6291 (2 + 8027) + (4 + 16030), sglang-jax#622
    # 1024 + 0, #393's `new fill batch` lines (#new_token + #cached_token) (254 + 478) + (1 + 731)
    assert v(s, "llm_prompt_tokens_total", engine="") == 158 + 290 + 160 + (2 + 8027) + (4 + 16030) + 1024 + (
        254 + 478) + (1 + 731)
    assert v(s, "llm_prompt_cached_tokens_total", engine="") == 8027 + 16030 + 478 + 731
    # TP0: #30047 43008 + 43264 + 43008, #1612 2062 + (8192 + 291) + (8192 + 2753), #7515 2266 + 1,
    # #12414 (5824 + 448) + (2880 + 2304)
    assert v(s, "llm_prompt_tokens_total", engine="TP0") == (43008 + 43264 + 43008) + (2062 + 8192 + 291 + 8192
                                                                                         + 2753) + (2266 + 1) + (
        5824 + 448 + 2880 + 2304)
    assert v(s, "llm_prompt_cached_tokens_total", engine="TP0") == 291 + 2753 + 1 + 448 + 2304
    # `Scheduler hit an exception` and its traceback (Agent-RL/ReCall#43, sglang-jax#622): one incident
    # each, no request; #4184's `Decode out of memory happened` retractions are not failures
    assert v(s, "llm_server_errors_total", gen_ai_provider_name="sglang", error_type="engine_dead") == 2
    assert v(s, "llm_requests_total", outcome="error") == 0
    # unknown: #1612's client progress bars and `Prompts loaded.` (3), #3685's cut traceback (4)
    assert out["unparsed"] == 3 + 4


def test_llamacpp() -> None:
    s, out = replay("llamacpp")
    # #27752: task 61 cancelled (aborted); task 64 `send_error ... Context size has been exceeded` (one
    # validation error; its later `cancel task, id_task = 64` is the same task); gpustack#852 (llama-box):
    # task 40 `send_error ... exceeds the available context size`; #14829: tasks 4 and 7 cancelled
    assert v(s, "llm_requests_total", gen_ai_provider_name="llamacpp", outcome="aborted") == 1 + 2
    assert v(s, "llm_request_errors_total", gen_ai_provider_name="llamacpp", error_type="validation") == 2
    # finished: #9013's llama-server block (cut before `total time`: tokens, no duration), #9353's
    # library block (no CLI line in that excerpt: counted), dir-assistant#4's mid-2024 block (the Ollama
    # GIN line after it is the same request and is not counted again), #23269's task 388. Not requests:
    # #9013's llama_perf block (its `llama_perf_sampler_print` says llama-cli) and #17382's
    # common_perf_print.
    assert v(s, "llm_requests_total", gen_ai_provider_name="llamacpp", outcome="success") == 4
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama") == 0
    assert v(s, "gen_ai_server_request_duration_seconds_count", gen_ai_provider_name="llamacpp") == 3
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_provider_name="llamacpp") == \
        pytest.approx((10797.30 + 4330.27 + 16901.53) / 1000)
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 51 + 62 + 65 + 27
    assert v(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 275 + 342 + 69 + 192
    # #25121's chat template over seven bare lines belongs to the line that opened it
    assert out.get("unparsed", 0) == 0


def test_llama_swap() -> None:
    s, out = replay("llama-swap")
    # #464: `[INFO] Request ... "POST /v1/chat/completions HTTP/1.0" 401 ... 90.222534ms`: one failed request
    assert v(s, "llm_requests_total", gen_ai_provider_name="llama-swap", outcome="error") == 1
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_provider_name="llama-swap") == \
        pytest.approx(0.090222534)
    # GETs are access records only: #75 three `GET /`, #23281 one asset (an unknown path)
    assert v(s, "llm_http_requests_total", gen_ai_provider_name="llama-swap", method="GET") == 3 + 1
    assert v(s, "llm_http_requests_total", gen_ai_provider_name="llama-swap", path="_OTHER") == 1
    # #726: the upstream llama-server cancelled task 8664 (no llama-swap line in that excerpt)
    assert v(s, "llm_requests_total", gen_ai_provider_name="llamacpp", outcome="aborted") == 1
    assert out.get("unparsed", 0) == 0


def test_ollama() -> None:
    s, out = replay("ollama")
    # karakeep#1129: three GIN 200 lines on /api/chat, each with its `aborting completion request due to
    # client closing the connection` (twice after it, once before): three aborted requests, not six
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama", outcome="aborted") == 3
    # (durations of chats not failed: these three, 1m10s, 1m12s, 1m13s, and #8983's success below)
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="chat", error_type="") == \
        pytest.approx(70 + 72 + 73 + 35.684791792)
    # #13805: two POST /api/generate 200 (32.779561288s, 200.665714ms); HEAD, GET and /api/show are not;
    # #8983: one POST /api/chat 200 (35.684791792s)
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama", outcome="success") == 3
    assert v(s, "gen_ai_server_request_duration_seconds_sum", gen_ai_operation_name="text_completion",
             error_type="") == pytest.approx(32.779561288 + 0.200665714)
    # failed: #5816 two 403 on /api/generate, #11447 a 500 on /api/generate; on /api/chat: #3904 one 500,
    # ollama-intel-gpu#22 one, #8983 two, #8387 two (1799 s and 4.7 s); /api/pull is no inference
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama", gen_ai_operation_name="text_completion",
             outcome="error") == 3
    assert v(s, "llm_requests_total", gen_ai_provider_name="ollama", gen_ai_operation_name="chat",
             outcome="error") == 1 + 1 + 2 + 2
    # `error loading llama server` (#11447, #3904, ollama-intel-gpu#22): the runner died, three incidents;
    # the crash dumps of #9782 and #8271 are cut before their first line: their lines belong to a dump
    assert v(s, "llm_server_errors_total", gen_ai_provider_name="ollama", error_type="engine_dead") == 3
    # llama-coder#3: the 2023 runner's llama_print_timings block is behind Ollama (its GIN line was
    # seen first): not a request of its own
    assert v(s, "llm_requests_total", gen_ai_provider_name="llamacpp") == 0
    # unknown: #1365 `llama server listening at`, ollama-intel-gpu#22's two lines of the Intel runtime
    # (`Abort was called at 63 line in file:` and its path). #20882's and #8983's `- using ...` lines end
    # GIN's debug banner, #9509's `Device 0: ...` is ggml's device list: known once the stream is named.
    assert out["unparsed"] == 1 + 2


def test_litellm_and_app_json_errors() -> None:
    s, out = replay("litellm")
    # llmmllab#69: an application's JSON line whose error is llama-server's exceed_context_size_error
    assert v(s, "llm_request_errors_total", gen_ai_provider_name="app", error_type="validation") == 1
    # #1356: LiteLLM's own lines name the stream; its traceback is one ERROR record, no request
    assert v(s, "llm_log_messages_total", gen_ai_provider_name="litellm", level="ERROR") == 1
    assert v(s, "llm_requests_total", gen_ai_provider_name="litellm") == 0
    # #13128's 500 on GET /v1/models/...: an access record (no LiteLLM line names that excerpt's stream)
    assert v(s, "llm_http_requests_total", code="500") == 1
    # unknown: the excerpts #13128 (uvicorn's ASGI error line and its exception group, 7 lines), #2487 (4)
    # and #6667 (3) show no line that names their stream, so their tracebacks and debug prints stay unknown
    assert out["unparsed"] == 7 + 4 + 3
