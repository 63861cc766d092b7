"""llama-swap's lines, record by record: access lines (both formats), its own `[LEVEL]` lines, and the
requests it fronts for a llama-server whose timing blocks are in the same stream.

Lines are copied from public issues (cited per table); where a line is varied by hand to reach an
edge of the format, the comment says which real line it comes from and what was changed. Expected
records are worked out by hand from the lines.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.adapter_stream import Stream, read, requests

# https://github.com/anomalyco/opencode/issues/3754 (llama-swap under docker compose, `logToStdout: both`):
# llama-server's timing block of task 33, its own access line, then llama-swap's access lines
OPENCODE_3754 = [
    "llama-swap  | slot print_timing: id  0 | task 33 | ",
    "llama-swap  | prompt eval time =    9832.01 ms /   100 tokens (   98.32 ms per token,    10.17 tokens per second)",
    "llama-swap  |        eval time =    7247.55 ms /    54 tokens (  134.21 ms per token,     7.45 tokens per second)",
    "llama-swap  |       total time =   17079.56 ms /   154 tokens",
    "llama-swap  | slot      release: id  0 | task 33 | stop processing: n_past = 215, truncated = 0",
    "llama-swap  | srv  update_slots: all slots are idle",
    "llama-swap  | srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200",
    'llama-swap  | [INFO] Request 172.28.0.1 "POST /v1/chat/completions HTTP/1.1" 200 781 "Python/3.11 aiohttp/3.12.15"'
    " 17.092465058s",
    'llama-swap  | [INFO] Request 172.28.0.1 "GET /v1/models HTTP/1.1" 200 3415 "Python/3.11 aiohttp/3.12.15" 72.627µs',
]
CHAT_200 = OPENCODE_3754[7]
# https://github.com/mostlygeek/llama-swap/issues/464: a peer request refused with 401
CHAT_401 = '[INFO] Request 192.168.10.5 "POST /v1/chat/completions HTTP/1.0" 401 67 "curl/8.17.0" 90.222534ms'
# https://github.com/mostlygeek/llama-swap/pull/155: infill through /upstream/<model>/ (not an inference path
# of its own: the upstream's path), then the same after llama-server crashed
INFILL_200 = ('[INFO] Request 10.0.1.135 "POST /upstream/qwen-coder-14B-FIM/infill HTTP/1.1" 200 15667 "axios/1.8.4"'
              " 190.311173ms")
INFILL_502 = ('[INFO] Request 10.0.1.135 "POST /upstream/qwen-coder-14B-FIM/infill HTTP/1.1" 502 90 "axios/1.8.4"'
              " 492.078µs")
# https://github.com/mostlygeek/llama-swap/issues/75: the first builds' access line
EARLY = '[llama-swap] ::1 [2025-03-20 11:27:15] "GET / HTTP/1.1" 200 390 "curl/8.5.0" 11.05µs'


def http(method: str, path: str, code: str, seconds: float) -> dict[str, Any]:
    return {"kind": "http", "provider": "llama-swap", "method": method, "path": path, "code": code,
            "duration_s": seconds}


def request(operation: str, outcome: str, error_type: str, seconds: float) -> dict[str, Any]:
    return {"kind": "request", "provider": "llama-swap", "operation": operation, "model": "", "outcome": outcome,
            "error_type": error_type, "duration_s": seconds}


INFO = {"kind": "log", "provider": "llama-swap", "level": "INFO"}


@pytest.mark.parametrize(("line", "records"), [
    (CHAT_200, [http("POST", "/v1/chat/completions", "200", 17.092465058),
                request("chat", "success", "", 17.092465058), INFO]),
    (CHAT_401, [http("POST", "/v1/chat/completions", "401", 0.090222534),
                request("chat", "error", "_OTHER", 0.090222534), INFO]),
    (INFILL_200, [http("POST", "_OTHER", "200", 0.190311173), INFO]),
    (INFILL_502, [http("POST", "_OTHER", "502", 0.000492078), INFO]),
    (OPENCODE_3754[8].split("| ", 1)[1], [http("GET", "/v1/models", "200", 0.000072627), INFO]),
    (EARLY, [http("GET", "/", "200", 11.05 / 1e6), INFO]),  # a microsecond is 1e-6 s
    # the #464 line as a client on a Unix socket logs it: no client address before the request line
    (CHAT_401.replace("192.168.10.5 ", ""), [http("POST", "/v1/chat/completions", "401", 0.090222534),
                                              request("chat", "error", "_OTHER", 0.090222534), INFO]),
    # the opencode#3754 line for `POST /v1/chat/completions%20`: Go logs the decoded path, whose trailing
    # space is kept, so it is no inference path (llama-swap answers it 404)
    (CHAT_200.split("| ", 1)[1].replace("completions HTTP", "completions  HTTP").replace("200 781", "404 19"),
     [http("POST", "_OTHER", "404", 17.092465058), INFO]),
])
def test_access_line_is_one_http_record_and_on_an_inference_path_one_request(
        line: str, records: list[dict[str, Any]]) -> None:
    """Each access line: its HTTP record (method, bounded path, status, duration), a request when the
    path is an inference path (its outcome from the status), and the line's log record."""
    assert read([line]) == records


@pytest.mark.parametrize("line", [
    # the opencode#3754 line whose quoted text ends in no protocol: no request line
    CHAT_200.split("| ", 1)[1].replace(" HTTP/1.1", " extra"),
    # the #464 line cut before its status
    CHAT_401.split('" 401')[0],
])
def test_request_message_that_is_no_access_line_is_only_a_log_record(line: str) -> None:
    assert read([line]) == [INFO]


def test_request_line_is_looked_for_in_the_first_80_characters() -> None:
    """The quote opening the request line is found within 80 characters of `Request `; at 80 it is not."""
    rest = CHAT_401.split("Request ", 1)[1].split(" ", 1)[1]  # from the opening quote on
    inside = "[INFO] Request " + "x" * 78 + " " + rest  # the quote at offset 79
    outside = "[INFO] Request " + "x" * 79 + " " + rest  # at offset 80
    assert requests(read([inside])) == [request("chat", "error", "_OTHER", 0.090222534)]
    assert read([outside]) == [INFO]


def test_early_access_line_is_looked_for_in_the_first_80_characters() -> None:
    """The early format (#75's line with its client address `::1` padded by hand): the quote opening the
    request line is found within 80 characters after `[llama-swap] `; at 80 it is not, and the line is
    only known as llama-swap's (counted as nothing)."""
    inside = "[llama-swap] " + "x" * 56 + EARLY[16:]  # the quote at offset 79
    outside = "[llama-swap] " + "x" * 57 + EARLY[16:]  # at offset 80
    assert read([inside]) == [http("GET", "/", "200", 11.05 / 1e6), INFO]
    assert Stream().line(outside) == ("ignored", None)


def test_access_line_with_a_bad_duration_is_invalid() -> None:
    """A known access line whose duration is no Go duration is counted invalid, with its reason."""
    s = Stream()
    assert s.line(CHAT_401.replace("90.222534ms", "90.2.2ms")) == ("invalid", "bad_duration")


def test_fronted_llama_server_request_counts_once_and_the_next_request_counts_again() -> None:
    """opencode#3754: llama-server's timing block came before any llama-swap line, so the engine counted the
    request; llama-swap's access line for it adds none. A later request with no engine block before it (a
    peer, a non-llama.cpp upstream) is llama-swap's again."""
    recs = read([*OPENCODE_3754, CHAT_200.split("| ", 1)[1]])
    assert requests(recs) == [
        {"kind": "request", "provider": "llamacpp", "operation": "", "model": "", "outcome": "success",
         "error_type": "", "input_tokens": 100, "output_tokens": 54, "duration_s": 17.07956, "ttft_s": 9.83201,
         "tpot_s": 7247.55 / 54 / 1000.0},
        request("chat", "success", "", 17.092465058),
    ]


def test_two_fronted_requests_each_count_once() -> None:
    """The opencode#3754 exchange twice: the first request is the engine's (its block came before any
    llama-swap line), its access line adds none; from then on llama-swap is the front door, so the second
    block is not counted and the second access line is the request."""
    s = Stream()
    recs: list[dict[str, Any]] = []
    for text in OPENCODE_3754 + OPENCODE_3754:
        outcome, res = s.line(text)
        assert outcome in ("record", "ignored"), (text, res)
        recs += res if outcome == "record" else []
    assert [(r["provider"], r["outcome"]) for r in requests(recs + s.end())] == [
        ("llamacpp", "success"), ("llama-swap", "success")]
    assert s.shared["engine_counted"] == 0


def test_refused_request_is_counted_even_while_an_engine_request_waits_for_its_access_line() -> None:
    """A timing block has counted one request; a 400 from llama-swap before that request's access line is
    another request (llama-swap refused it) and counts; the 200 line then matches the block. The 400 line
    is opencode#3754's chat line with the status changed."""
    bad = CHAT_200.split("| ", 1)[1].replace("200 781", "400 120")
    recs = read([*OPENCODE_3754[:4], bad, OPENCODE_3754[7]])
    assert [(r["provider"], r["outcome"], r["error_type"]) for r in requests(recs)] == [
        ("llamacpp", "success", ""), ("llama-swap", "error", "validation")]


def test_llama_swap_line_names_the_stream() -> None:
    """After a llama-swap line the stream is llama-swap's (server and front door): its early builds'
    `!!! ` warnings are then its WARNING records; before, such a line is nobody's."""
    warning = "!!! upstream process exited unexpectedly"  # the `!!! ` shape of the first builds' warnings
    s = Stream()
    assert s.line(warning) == ("unparsed", "no_adapter")
    assert s.records(EARLY)
    assert (s.shared["server"], s.shared["front_door"]) == ("llama-swap", "llama-swap")
    assert s.records(warning) == [{"kind": "log", "provider": "llama-swap", "level": "WARNING"}]


def test_upstream_line_leaves_the_stream_llama_swaps() -> None:
    """#75: llama-swap's early access line, its upstream llama-server's access line, then llama-swap's
    `!!! ` warning from the same issue: the upstream's line does not rename the stream, so the warning is
    still llama-swap's."""
    s = Stream()
    s.records(EARLY)
    assert s.records("srv  log_server_r: request: GET /health 127.0.0.1 200")
    assert s.shared["server"] == "llama-swap"
    assert s.records("!!! Connection refused on http://127.0.0.1:9999/health, ttl 4995s") == [
        {"kind": "log", "provider": "llama-swap", "level": "WARNING"}]
