"""examples/rules/: each ready rule file on real lines of its server (tests/fixtures/rules/README.md
cites them), against figures worked out by hand from those lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.config import load_config
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from tests.helpers import ROOT, parse_metrics, total

FIX = ROOT / "tests" / "fixtures" / "rules"


def _replay(name: str, fmt: str = "auto") -> dict:  # type: ignore[type-arg]
    cfg = load_config(ROOT / "examples" / "rules" / f"{name}.yaml")
    m = LLMMetrics()
    pipe = Pipeline(m, fmt=fmt, config=cfg)
    pipe.process("file", (FIX / f"{name}.log").read_bytes().splitlines())
    pipe.flush()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)
    return parse_metrics(generate_latest(reg).decode())


def test_localai() -> None:
    # one timing block: prompt 701 tokens, total 56788.71 ms, backend luna-ai-llama2-uncensored.Q8_0.gguf
    s = _replay("localai")
    model = "luna-ai-llama2-uncensored.Q8_0.gguf"
    assert total(s, "llm_requests_total") == 1
    assert total(s, "llm_requests_total", gen_ai_provider_name="localai", gen_ai_request_model=model,
                 outcome="success") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx(56.78871)
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 701
    assert total(s, "llm_exporter_lines_total", outcome="record") == 2  # the prompt and total lines


def test_llama_cpp_python() -> None:
    # one block: prompt eval 2 tokens, total 22575.28 ms; --format rules: counted once
    s = _replay("llama-cpp-python", fmt="rules")
    assert total(s, "llm_requests_total") == 1
    assert total(s, "llm_requests_total", gen_ai_provider_name="llama_cpp_python") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_sum") == pytest.approx(22.57528)
    assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 2
    assert total(s, "llm_exporter_lines_total", outcome="unparsed") == 3  # load, sample, eval lines


def test_lmstudio() -> None:
    # two refused /api/v1/chat requests (invalid JSON), one GET / answered 200 "anyway"
    s = _replay("lmstudio")
    assert total(s, "llm_requests_total", gen_ai_provider_name="lmstudio") == 3
    assert total(s, "llm_requests_total", outcome="error") == 2
    assert total(s, "llm_requests_total", outcome="success") == 1


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads_and_has_a_fixture(path: Path) -> None:
    assert load_config(path).rules
    assert (FIX / f"{path.stem}.log").is_file()
