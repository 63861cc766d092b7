"""Golden tests: vLLM request accounting on blocks copied from public bug reports.

tests/fixtures/vllm_requests/README.md names each block's source. The truth below is worked out by
hand from the lines (line numbers are the file's); it is never copied from the exporter's output.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from llm_exporter.framing import LineFramer
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import Pipeline
from tests.helpers import FIXTURES, parse_metrics, total

BLOCKS = FIXTURES / "vllm_requests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def replay(*names: str) -> tuple[Samples, LLMMetrics]:
    """The blocks one after another on one stream, through the real pipeline."""
    m = LLMMetrics()
    p = Pipeline(m)
    for name in names:
        lines, _ = LineFramer(1 << 20).feed((BLOCKS / name).read_bytes())
        p.process("f", lines)
    p.flush("f")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(m)  # type: ignore[arg-type]
    return parse_metrics(generate_latest(reg).decode()), m


def requests(s: Samples, **labels: str) -> float:
    return total(s, "llm_requests_total", gen_ai_provider_name="vllm", **labels)


def test_request_logging_without_outputs_ends_at_the_access_line() -> None:
    """issue34503: Received (line 4), the engine's Added with its `-a8a65d16` suffix (5), the access
    line (6): one chat request, ended by its access line (no output lines are logged): no latency."""
    s, m = replay("issue34503.log")
    assert requests(s) == 1 and requests(s, gen_ai_operation_name="chat", outcome="success") == 1
    assert total(s, "gen_ai_server_request_duration_seconds_count") == 0
    assert total(s, "llm_http_requests_total", path="/v1/chat/completions", code="200") == 1
    assert m.hints.seen == {}  # request logging is on: nothing to advise


def test_a_stream_seen_from_its_access_line_then_a_refused_request() -> None:
    """issue13340: line 1 is a streamed chat's access line (vLLM 0.7 logs it when the stream starts,
    before line 2's `Added request`); line 5 is a second request refused with 400. Two requests:
    one success, one validation error; the Added line is the first request, not a third."""
    s, _ = replay("issue13340.log")
    assert requests(s) == 2
    assert requests(s, gen_ai_operation_name="chat", outcome="success") == 1
    assert total(s, "llm_request_errors_total", gen_ai_provider_name="vllm", error_type="validation") == 1


def test_unknown_model_is_counted_by_its_access_line_not_again_by_its_error_record() -> None:
    """issue15018: two `Error with model ... NotFoundError ... code=404` records (lines 8, 10) and
    their access lines (9, 11): two failed requests, class not_found, and two ERROR log records."""
    s, _ = replay("issue15018.log")
    assert requests(s) == 2
    assert total(s, "llm_request_errors_total", gen_ai_operation_name="chat", error_type="not_found") == 2
    assert total(s, "llm_log_messages_total", level="ERROR") == 2


def test_engine_death_fails_the_request_whose_500_follows() -> None:
    """issue42362: lines 1-8 are one traceback (same header) ending in EngineDeadError; line 9 is the
    request's 500 on /v1/messages (query string dropped): one failed chat request, engine_dead."""
    s, _ = replay("issue42362.log")
    assert requests(s) == 1
    assert total(s, "llm_request_errors_total", gen_ai_operation_name="chat", error_type="engine_dead") == 1
    assert total(s, "llm_http_requests_total", path="/v1/messages", code="500") == 1


def test_default_settings_under_journald() -> None:
    """crush611: seven WARNING records and one access line (line 5) behind journald's prefix: one
    chat request at vLLM's default settings, no latency."""
    s, _ = replay("crush611.log")
    assert requests(s) == 1 and requests(s, outcome="success") == 1
    assert total(s, "llm_log_messages_total", level="WARNING") == 7
    assert total(s, "gen_ai_server_request_duration_seconds_count") == 0


def test_an_abort_followed_by_its_500_is_one_failed_request() -> None:
    """issue10925 (vLLM 0.6): the engine died; vLLM aborted the request (line 6, id `chat-...`) and
    answered it 500 (line 7): one failed chat request, not an abort plus an error."""
    s, _ = replay("issue10925.log")
    assert requests(s) == 1
    assert requests(s, gen_ai_operation_name="chat", outcome="error") == 1
    assert requests(s, outcome="aborted") == 0


def test_each_block_alone_and_all_blocks_in_one_stream_agree() -> None:
    """Read one after another on one stream, the blocks give the sum of their counts."""
    names = sorted(p.name for p in BLOCKS.glob("*.log"))
    each = sum(requests(replay(n)[0]) for n in names)
    assert each == 1 + 2 + 2 + 1 + 1 + 1
    assert requests(replay(*names)[0]) == each
