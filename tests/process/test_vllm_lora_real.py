"""A real vLLM server (CPU build, tiny random model) with a LoRA adapter, run under
`llm-exporter -- ...`: requests to the adapter and to the base model are counted apart by
`llm_adapter`, against the requests the test sent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, Exporter, free_port, total
from tests.process.test_vllm_real import get, post, vllm_python, wait_for

pytestmark = pytest.mark.slow
__all__ = ["vllm_python"]  # the fixture, shared with the other real-vLLM test

TO_ADAPTER, TO_BASE = 3, 2


def test_real_vllm_requests_are_counted_per_lora_adapter(vllm_python: str, tmp_path: Path) -> None:
    lora = tmp_path / "tiny-lora"
    subprocess.run([vllm_python, str(ROOT / "scripts" / "make_tiny_lora.py"), str(lora),
                    str(ROOT / ".tools" / "tiny-llama")], check=True, timeout=120, capture_output=True)
    port = free_port()
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ROOT / ".tools" / "tiny-llama"),
           "--served-model-name", "tiny-llama", "--host", "127.0.0.1", "--port", str(port),
           "--gpu-memory-utilization", "0.3", "--max-model-len", "512", "--enable-log-requests",
           "--enable-log-outputs", "--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"sql-lora={lora}"]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "llm_exporter.out").open("wb") as out, \
            Exporter("--no-passthrough", "--gpu", "off", "--", *cmd, stdout=out, env=env) as e:
        alive = lambda: e.proc.poll() is None  # noqa: E731
        wait_for(lambda: get(base + "/health")[0] == 200, 300, "vLLM /health", alive)
        for i in range(TO_ADAPTER + TO_BASE):
            model = "sql-lora" if i < TO_ADAPTER else "tiny-llama"
            code, body = post(base + "/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": f"hello {i}"}], "max_tokens": 4})
            assert code == 200, body

        def counted() -> object:
            s = e.samples()
            return s if total(s, "llm_requests_total", gen_ai_provider_name="vllm") >= TO_ADAPTER + TO_BASE else None

        s = wait_for(counted, 60, "our request counts", alive)
        e.proc.terminate()
        e.proc.wait(120)
    vllm = {"gen_ai_provider_name": "vllm", "gen_ai_request_model": "tiny-llama", "outcome": "success"}
    assert total(s, "llm_requests_total", llm_adapter="sql-lora", **vllm) == TO_ADAPTER
    assert total(s, "llm_requests_total", llm_adapter="", **vllm) == TO_BASE
    assert total(s, "gen_ai_server_request_duration_seconds_count", llm_adapter="sql-lora") == TO_ADAPTER
