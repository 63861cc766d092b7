"""llama.cpp's lines, record by record: timing blocks of every era (and how one ends), response-body
`timings` objects, `send_error` / `cancel task` lines counted once per task, access lines, chat
templates printed over bare lines, command-line sessions and front doors.

Lines are copied from public issues (cited per table; most are in tests/fixtures). Where a line is
varied by hand to reach an edge of the format, the comment says which real line it comes from and
what was changed. Expected records follow the documented reading: input tokens = prompt-eval tokens,
output tokens = eval tokens, duration = total time, time to first token = prompt eval time, time per
output token = eval time / eval tokens (milliseconds to seconds: / 1000).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_exporter.adapters.base import IGNORED
from llm_exporter.adapters.llamacpp import MAX_TASKS, LlamacppAdapter
from tests.adapter_stream import Stream, read, requests


def timing(prompt: tuple[float, int] | None = None, evals: tuple[float, int] | None = None,
           total: float | None = None, **extra: Any) -> dict[str, Any]:
    """The request a timing block gives: (ms, tokens) of its prompt and eval lines, its total ms."""
    rec: dict[str, Any] = {"kind": "request", "provider": "llamacpp", "operation": "", "model": "",
                           "outcome": "success", "error_type": ""}
    if prompt is not None:
        rec["input_tokens"], rec["ttft_s"] = prompt[1], prompt[0] / 1000
    if evals is not None:
        rec["output_tokens"] = evals[1]
        if evals[1]:
            rec["tpot_s"] = evals[0] / evals[1] / 1000
    if total is not None:
        rec["duration_s"] = total / 1000
    return {**rec, **extra}


def log(level: str) -> dict[str, Any]:
    return {"kind": "log", "provider": "llamacpp", "level": level}


def failed(outcome: str, error_type: str = "") -> dict[str, Any]:
    return {"kind": "request", "provider": "llamacpp", "operation": "", "model": "", "outcome": outcome,
            "error_type": error_type}


def http(method: str, path: str, code: str) -> dict[str, Any]:
    return {"kind": "http", "provider": "llamacpp", "method": method, "path": path, "code": code}


INF, WRN, ERR = log("INFO"), log("WARNING"), log("ERROR")

# -- timing blocks, era by era -----------------------------------------------------------------------

# tests/fixtures/samples/llamacpp.log: newest builds, every line prefixed, `graphs reused` ends the block
NEWEST = [
    "May 23 00:32:01 corrm-pc start_llama_server.sh[385247]: 50.10.605.986 I slot print_timing: id  0 | task 22576 "
    "| prompt eval time =    1481.90 ms /  2244 tokens (    0.66 ms per token,  1514.28 tokens per second)",
    "May 23 00:32:01 corrm-pc start_llama_server.sh[385247]: 50.10.605.992 I slot print_timing: id  0 | task 22576 "
    "|        eval time =    5257.71 ms /   186 tokens (   28.27 ms per token,    35.38 tokens per second)",
    "May 23 00:32:01 corrm-pc start_llama_server.sh[385247]: 50.10.605.993 I slot print_timing: id  0 | task 22576 "
    "|    graphs reused =      22234",
]
# https://github.com/noonghunna/club-3090/issues/1090: two requests, the second cut after its eval line
CLUB_3090 = [
    "317.06.410.187 I slot print_timing: id  0 | task 181 | prompt eval time =     838.17 ms /    21 tokens "
    "(   39.91 ms per token,    25.05 tokens per second)",
    "317.06.410.190 I slot print_timing: id  0 | task 181 |        eval time =    3081.56 ms /   123 tokens "
    "(   25.05 ms per token,    39.91 tokens per second)",
    "317.06.410.190 I slot print_timing: id  0 | task 181 |       total time =    3919.73 ms /   144 tokens",
    "317.06.410.191 I slot print_timing: id  0 | task 181 |    graphs reused =        168",
    "317.06.410.193 I slot print_timing: id  0 | task 181 | draft acceptance = 0.97619 (   82 accepted /    84 "
    "generated), mean len =  2.95",
    "317.06.412.530 I slot      release: id  0 | task 181 | stop processing: n_tokens = 103001, truncated = 0",
    "317.11.627.257 I slot print_timing: id  0 | task 226 | prompt eval time =    1610.75 ms /   420 tokens "
    "(    3.84 ms per token,   260.75 tokens per second)",
    "317.11.627.260 I slot print_timing: id  0 | task 226 |        eval time =    2939.81 ms /   116 tokens "
    "(   25.34 ms per token,    39.46 tokens per second)",
]
# https://github.com/ggml-org/llama.cpp/pull/23269 (tests/fixtures/corpus/llamacpp.log): a router's child,
# a header line and three bare lines
ROUTER_CHILD = [
    "[42027] 1.35.716.244 I slot print_timing: id  0 | task 388 | n_decoded =    172, tg =  12.00 t/s",
    "[42027] 1.37.495.377 I slot print_timing: id  0 | task 388 | ",
    "[42027] prompt eval time =     789.03 ms /    27 tokens (   29.22 ms per token,    34.22 tokens per second)",
    "[42027]        eval time =   16112.50 ms /   192 tokens (   83.92 ms per token,    11.92 tokens per second)",
    "[42027]       total time =   16901.53 ms /   219 tokens",
    "[42027] 1.37.495.398 I statistics ngram-map-k: #calls(b,g,a) = 3 570 0, #gen drafts = 0, #acc drafts = 0, "
    "#gen tokens = 0, #acc tokens = 0, dur(b,g,a) = 1.267, 0.651, 0.000 ms",
    "[42027] 1.37.495.428 I slot      release: id  0 | task 388 | stop processing: n_tokens = 218, truncated = 0",
    "[42027] 1.37.495.588 I srv  log_server_r: done request: POST /v1/chat/completions 127.0.0.1 200",
]
# https://github.com/curvedinf/dir-assistant/issues/4 (mid-2024 text lines, DEBUG level)
MID_2024 = [
    "DEBUG [print_timings] prompt eval time     =     698.19 ms /    65 tokens (   10.74 ms per token,    93.10 "
    "tokens per second) | n_prompt_tokens_processed=65 n_tokens_second=93.0973339788082 slot_id=0 "
    't_prompt_processing=698.194 t_token=10.741446153846153 task_id=713 tid="0x1f822a100" timestamp=1717085719',
    "DEBUG [print_timings] generation eval time =    3632.08 ms /    69 runs   (   52.64 ms per token,    19.00 "
    "tokens per second) | n_decoded=69 n_tokens_second=18.9973946036937 slot_id=0 t_token=52.63879710144928 "
    't_token_generation=3632.077 task_id=713 tid="0x1f822a100" timestamp=1717085719',
    "DEBUG [print_timings]           total time =    4330.27 ms | slot_id=0 t_prompt_processing=698.194 "
    't_token_generation=3632.077 t_total=4330.271000000001 task_id=713 tid="0x1f822a100" timestamp=1717085719',
]
# tests/fixtures/samples/llamacpp.log: the 2024 server's JSON lines (task 19: prompt and total lines)
JSON_2024 = [
    '{"tid":"14964","timestamp":1717067386,"level":"INFO","function":"print_timings","line":321,"msg":"prompt '
    'eval time     =    2684.39 ms /    27 tokens (   99.42 ms per token,    10.06 tokens per second)","id_slot":0,'
    '"id_task":19,"t_prompt_processing":2684.386,"n_prompt_tokens_processed":27,"t_token":99.41799999999999,'
    '"n_tokens_second":10.058401884188246}',
    '{"tid":"14964","timestamp":1717067386,"level":"INFO","function":"print_timings","line":347,"msg":"          '
    'total time =    6243.66 ms","id_slot":0,"id_task":19,"t_prompt_processing":2684.386,"t_token_generation":'
    '3559.272,"t_total":6243.657999999999}',
    '{"tid":"14964","timestamp":1717067386,"level":"INFO","function":"update_slots","line":1794,"msg":"slot '
    'released","id_slot":0,"id_task":19,"n_ctx":1536,"n_past":323,"n_system_tokens":969,"n_cache_tokens":323,'
    '"truncated":false}',
]
# https://github.com/ggml-org/llama.cpp/issues/9353 (tests/fixtures/corpus/llamacpp.log): the library's block
LIBRARY = [
    "llama_print_timings:        load time =    1933.61 ms",
    "llama_print_timings:      sample time =      17.64 ms /   344 runs   (    0.05 ms per token, 19495.61 tokens "
    "per second)",
    "llama_print_timings: prompt eval time =    1161.79 ms /    62 tokens (   18.74 ms per token,    53.37 tokens "
    "per second)",
    "llama_print_timings:        eval time =    7041.42 ms /   342 runs   (   20.59 ms per token,    48.57 tokens "
    "per second)",
    "llama_print_timings:       total time =   10797.30 ms /   404 tokens",
]
# https://github.com/ggml-org/llama.cpp/issues/9013 (tests/fixtures/corpus/llamacpp.log): the 2024 server's
# header and bare lines, cut before `total time`
HEADER_CUT = [
    "slot print_timing: id  0 | task 0 |",
    "prompt eval time =     915.13 ms /    51 tokens (   17.94 ms per token,    55.73 tokens per second)",
    "       eval time =   23038.87 ms /   275 tokens (   83.78 ms per token,    11.94 tokens per second)",
]


@pytest.mark.parametrize(("lines", "records"), [
    (NEWEST, [INF, INF, timing((1481.90, 2244), (5257.71, 186)), INF]),
    (CLUB_3090, [INF, INF, timing((838.17, 21), (3081.56, 123), 3919.73), INF, INF, INF, INF, INF, INF,
                 timing((1610.75, 420), (2939.81, 116))]),
    (ROUTER_CHILD, [INF, INF, timing((789.03, 27), (16112.50, 192), 16901.53), INF, INF,
                    http("POST", "/v1/chat/completions", "200"), INF]),
    (MID_2024, [log("DEBUG"), log("DEBUG"), timing((698.19, 65), (3632.08, 69), 4330.27), log("DEBUG")]),
    (JSON_2024, [INF, timing((2684.39, 27), None, 6243.66), INF, INF]),
    (LIBRARY, [timing((1161.79, 62), (7041.42, 342), 10797.30)]),
    (HEADER_CUT, [timing((915.13, 51), (23038.87, 275))]),
    # tests/fixtures/samples/llamacpp.log: the 2024 text era's generation and total lines (no prompt line)
    (["INFO [           print_timings] generation eval time =    3194.22 ms /   783 runs   (    4.08 ms per token,"
      '   245.13 tokens per second) | tid="139964472983552" timestamp=1723569622 id_slot=0 id_task=0 '
      "t_token_generation=3194.224 n_decoded=783 t_token=4.0794687100894 n_tokens_second=245.129959",
      "INFO [           print_timings]           total time =    3209.84 ms | tid=\"139964472983552\" "
      "timestamp=1723569622 id_slot=0 id_task=0 t_prompt_processing=15.615 t_token_generation=3194.224 "
      "t_total=3209.839"],
     [INF, timing(None, (3194.22, 783), 3209.84), INF]),
    # https://github.com/ex3ndr/llama-coder/issues/3 (Ollama's 2023 runner, no Ollama line here): a generation
    # of 0.00 ms is a figure (not a bad one)
    (["llama_print_timings:        load time =    1379.13 ms",
      "llama_print_timings: prompt eval time =     252.75 ms /   178 tokens (    1.42 ms per token,   704.24 "
      "tokens per second)",
      "llama_print_timings:        eval time =       0.00 ms /     1 runs   (    0.00 ms per token,      inf "
      "tokens per second)",
      "llama_print_timings:       total time =     280.78 ms"],
     [timing((252.75, 178), (0.0, 1), 280.78)]),
])
def test_timing_block_of_every_era_is_one_request(lines: list[str], records: list[dict[str, Any]]) -> None:
    """Each era's block gives one request with exactly the figures it printed (a block cut before its
    total has no duration), and each stamped or levelled line its log record."""
    assert read(lines) == records


def test_block_ends_at_its_total_or_graphs_reused_line_or_the_next_block() -> None:
    """The request goes out with the line that ends its block: `total time`, `graphs reused` (newest
    builds), the next block's header, the library's next `load time`, or the end of the stream."""
    s = Stream()
    assert [s.records(t) for t in NEWEST] == [[INF], [INF], [timing((1481.90, 2244), (5257.71, 186)), INF]]
    s = Stream()
    assert [s.records(t) for t in HEADER_CUT] == [[], [], []]
    assert s.records(HEADER_CUT[0]) == [timing((915.13, 51), (23038.87, 275))]
    s = Stream()
    assert [s.records(t) for t in HEADER_CUT[1:]] == [[], []]
    assert s.records(LIBRARY[0]) == [timing((915.13, 51), (23038.87, 275))]
    assert s.end() == []


def test_second_prompt_or_eval_line_starts_the_next_block() -> None:
    """Bare blocks cut before their total (tests/fixtures/samples/llamacpp.log's pair, twice): a second
    prompt line, or a second eval line, ends the block before it. Two blocks, two requests."""
    prompt = "prompt eval time =    5093.47 ms /  1360 tokens (    3.75 ms per token,   267.01 tokens per second)"
    evals = "       eval time =     319.58 ms /    10 tokens (   31.96 ms per token,    31.29 tokens per second)"
    one = timing((5093.47, 1360), (319.58, 10))
    s = Stream()
    assert [s.records(t) for t in (prompt, evals, prompt, evals)] == [[], [], [one], []]
    assert s.end() == [one]
    s = Stream()
    assert [s.records(t) for t in (evals, evals)] == [[], [timing(None, (319.58, 10))]]
    assert s.end() == [timing(None, (319.58, 10))]


def test_lines_of_two_tasks_make_two_requests() -> None:
    """club-3090#1090's task 226 starts while task 181's block is still open (its total and graphs lines
    left out): 181's lines so far are its request; 226's block is its own."""
    s = Stream()
    assert [s.records(t) for t in (CLUB_3090[0], CLUB_3090[6], CLUB_3090[7])] == [
        [INF], [timing((838.17, 21)), INF], [INF]]
    assert s.end() == [timing((1610.75, 420), (2939.81, 116))]


def test_total_line_of_another_task_ends_the_open_block_and_its_own() -> None:
    """Task 181's prompt and eval lines, then a `total time` line of task 226 (club-3090#1090's total
    line with 181 changed to 226: a block whose first lines were cut): both go out with that line,
    181's request without a duration, then 226's with only its duration."""
    other_total = CLUB_3090[2].replace("task 181", "task 226")
    s = Stream()
    assert [s.records(t) for t in (CLUB_3090[0], CLUB_3090[1], other_total)] == [
        [INF], [INF], [timing((838.17, 21), (3081.56, 123)), timing(None, None, 3919.73), INF]]
    assert s.end() == []


def test_two_blocks_without_task_ids_are_two_requests() -> None:
    """HEADER_CUT's bare lines twice with a total each (no header, no task id): neither is taken for
    the other's task."""
    lines = [*HEADER_CUT[1:], "      total time =   23954.00 ms /   326 tokens"]
    one = timing((915.13, 51), (23038.87, 275), 23954.00)
    assert requests(read(lines + lines)) == [one, one]


@pytest.mark.parametrize("line", [
    # tests/fixtures/samples/llamacpp.log's total line with each kind of bad figure in place of its own
    "      total time =   -1.00 ms /   486 tokens",
    "      total time =   nan ms /   486 tokens",
    "      total time =   inf ms /   486 tokens",
    "      total time =   soon ms /   486 tokens",
    "prompt eval time =     915.13 ms /    -51 tokens (   17.94 ms per token,    55.73 tokens per second)",
])
def test_timing_line_with_a_bad_figure_is_no_timing_line(line: str) -> None:
    assert Stream().line(line) == ("unparsed", "no_adapter")


@pytest.mark.parametrize(("line", "record"), [
    # a prompt served wholly from the cache: 0 tokens evaluated (HEADER_CUT's prompt line with 0 ms, 0 tokens)
    ("prompt eval time =       0.00 ms /     0 tokens (    0.00 ms per token,      inf tokens per second)",
     timing((0.0, 0))),
    # no output token: no time per output token (HEADER_CUT's eval line with 0 tokens)
    ("       eval time =       0.00 ms /     0 runs   (    0.00 ms per token,      inf tokens per second)",
     timing(None, (0.0, 0))),
    # HEADER_CUT's eval line cut by a pager right after its count: the count is read
    ("       eval time =   23038.87 ms /   275", timing(None, (23038.87, 275))),
    # ... and cut inside its count by journalctl's `>`: the time without the count (nothing to divide)
    ("       eval time =   23038.87 ms /   27>", timing()),
])
def test_timing_figures_at_their_edges(line: str, record: dict[str, Any]) -> None:
    assert read([line]) == [record]


# -- failed and cancelled tasks ------------------------------------------------------------------------

# https://github.com/ggml-org/llama.cpp/pull/27752 (tests/fixtures/corpus/llamacpp.log)
PR_27752 = [
    "29.23.271.756 I slot      release: id  2 | task 61 | stop processing: n_tokens = 35, truncated = 0",
    "29.23.271.913 W srv          stop: cancel task, id_task = 61",
    "29.23.338.119 E srv    send_error: task id = 64, error: Context size has been exceeded.",
    "29.23.338.126 I slot      release: id  3 | task 64 | stop processing: n_tokens = 0, truncated = 0",
    "29.23.338.363 E srv  update_slots: decode() failed: Context size has been exceeded.",
    "29.23.338.792 W srv          stop: cancel task, id_task = 64",
    "29.30.599.780 I slot print_timing: id  0 | task 91 | prompt processing, n_tokens =   2048, progress = 0.38, "
    "t =   7.26 s / 282.24 tokens per second",
]
# https://github.com/gpustack/gpustack/issues/852 (llama-box)
LLAMA_BOX = [
    "9.16.408.050 I srv        log_server_request: rid 959706094865 | POST /v1/chat/completions 192.168.50.174:52058",
    "9.16.412.167 E srv                send_error: task 40 | error = the request exceeds the available context "
    "size. try increasing the context size or enable context shift",
]
# https://github.com/ggml-org/llama.cpp/issues/14829: cancel lines without a level
CANCEL_4 = "srv  cancel_tasks: cancel task, id_task = 4"


def test_each_task_counts_once_by_its_first_line() -> None:
    """#27752: task 61 cancelled (aborted), task 64 failed over the context size (validation); 64's later
    cancel line is the same task (its WARNING record only); every stamped line is a log record."""
    assert read(PR_27752) == [INF, failed("aborted"), WRN, failed("error", "validation"), ERR, INF, ERR, WRN, INF]


def test_llama_box_send_error_is_a_failed_request() -> None:
    assert read(LLAMA_BOX) == [INF, failed("error", "validation"), ERR]


def test_task_counted_by_its_cancel_line_is_not_counted_again_by_its_timing_lines() -> None:
    """A cancelled task (#14829's cancel line for task 22576) whose timing lines follow (NEWEST): one
    request, the aborted one; the same for a header-era block of a task that failed first."""
    assert requests(read([CANCEL_4.replace("= 4", "= 22576"), *NEWEST])) == [failed("aborted")]
    failed_first = "srv    send_error: task id = 0, error: Context size has been exceeded."
    assert requests(read([failed_first, *HEADER_CUT])) == [failed("error", "validation")]
    # ... also when its header line was cut right after the task field
    assert requests(read([failed_first, "slot print_timing: id  0 | task 0", *HEADER_CUT[1:]])) == [
        failed("error", "validation")]


def test_tasks_are_remembered_up_to_max_tasks() -> None:
    """The ids of the last MAX_TASKS (4096) tasks are remembered: a repeated line of one of them counts
    nothing; the oldest id is forgotten once 4096 newer ones came (then it counts again)."""
    assert MAX_TASKS == 4096

    def aborted_after(n_before: int) -> int:
        s = Stream()
        for i in range(n_before):
            s.records(CANCEL_4.replace("= 4", f"= {i}"))
        return len(requests(s.records(CANCEL_4.replace("= 4", "= 0"))))

    assert aborted_after(4096) == 0  # tasks 0..4095: task 0 is still remembered
    assert aborted_after(4097) == 1  # tasks 0..4096: task 0 was the oldest, forgotten


@pytest.mark.parametrize(("line", "records"), [
    # #27752's send_error line with the marker at the 30th character after the stamp (the function field
    # widened): read
    ("29.23.338.119 E srv    " + "x" * 22 + "send_error: task id = 64, error: Context size has been exceeded.",
     [failed("error", "validation"), ERR]),
    # ... one character further (31st): past the function field, text of another line
    ("29.23.338.119 E srv    " + "x" * 23 + "send_error: task id = 64, error: Context size has been exceeded.",
     [ERR]),
    # #27752's line cut before its error field: still task 64's failure, of no known class
    ("29.23.338.119 E srv    send_error: task id = 64", [failed("error", "_OTHER"), ERR]),
    # a message that names its error type again after its text: the first `error` opens the message
    ("29.23.338.119 E srv    send_error: task id = 64, error: the request exceeds the available context size "
     "(exceed_context_size_error)", [failed("error", "validation"), ERR]),
])
def test_send_error_line_is_found_in_the_function_field(line: str, records: list[dict[str, Any]]) -> None:
    assert read([line]) == records


def test_send_error_message_is_classified_from_the_error_word_on() -> None:
    """The classifier reads 400 characters of the message, from just after `error`: a phrase that ends
    at the 400th is seen, one a character later is not."""
    head = "29.23.338.119 E srv    send_error: task id = 64, error"
    phrase = "Context size has been exceeded"
    at_400 = head + "x" * (400 - len(phrase)) + phrase
    at_401 = head + "x" * (401 - len(phrase)) + phrase
    assert read([at_400]) == [failed("error", "validation"), ERR]
    assert read([at_401]) == [failed("error", "_OTHER"), ERR]


def test_behind_a_front_door_no_task_line_counts() -> None:
    """Once a front door (llama-swap, Ollama) has named the stream, its access line is the request:
    llama.cpp's cancel and send_error lines and timing blocks in the same stream count none."""
    swap = ('[INFO] Request 192.168.10.5 "POST /v1/chat/completions HTTP/1.0" 401 67 "curl/8.17.0" '
            "90.222534ms")  # https://github.com/mostlygeek/llama-swap/issues/464
    recs = read([swap, *PR_27752, *NEWEST])
    assert [r["provider"] for r in requests(recs)] == ["llama-swap"]
    assert [r for r in recs if r["provider"] == "llamacpp"] == [INF, WRN, ERR, INF, ERR, WRN, INF, INF, INF, INF]


# -- access lines and other server lines -------------------------------------------------------------

@pytest.mark.parametrize(("line", "records"), [
    # https://github.com/ggml-org/llama.cpp/issues/14201 and #14829
    ("srv  log_server_r: request: GET / 127.0.0.1 200", [http("GET", "/", "200")]),
    ("srv  log_server_r: request: POST /v1/embeddings 127.0.0.1 200", [http("POST", "/v1/embeddings", "200")]),
    # https://github.com/mostlygeek/llama-swap/issues/810: newer builds, stamped `done request:`
    ("0.45.157.125 I srv  log_server_r: done request: GET /tools 127.0.0.1 404", [http("GET", "_OTHER", "404"), INF]),
    # #23269's `done request:` line with what came before it cut off (as journald's blob lines cut them)
    ("done request: POST /v1/chat/completions 127.0.0.1 200", [http("POST", "/v1/chat/completions", "200")]),
    # tests/fixtures/samples/llamacpp.log: a journald line whose `srv  log_server_r: ` was cut
    ("Dec 02 12:10:29 kamala llama-server[24689]: request: POST /chat/completions 127.0.0.1 200",
     [http("POST", "/chat/completions", "200")]),
    # #14201's access line without its status: a plain line of the server's
    ("srv  log_server_r: request: GET / 127.0.0.1", []),
    ("srv  log_server_r: request: GET / 127.0.0.1 2000", []),
    # a path holding `request: ` (with its space) makes more than four words: no access line
    ("srv  log_server_r: request: GET /x request: GET / 127.0.0.1 200", []),
])
def test_access_line_is_one_http_record(line: str, records: list[dict[str, Any]]) -> None:
    assert Stream().line(line) == (("record", records) if records else ("ignored", None))


@pytest.mark.parametrize(("lines", "outcomes"), [
    # https://github.com/ggml-org/llama.cpp/issues/25121: a chat template over bare lines, ended by its `'`
    (["0.08.515.111 I srv          init: init: chat template, example_format: '<|im_start|>system",
      "You are a helpful assistant<|im_end|>", "<|im_start|>user", "Hello<|im_end|>", "<|im_start|>assistant",
      "<think>", "'", "0.08.526.730 I srv          init: init: chat template, thinking = 1"],
     [[INF], [], [], [], [], [], [], [INF]]),
    # https://github.com/ggml-org/llama.cpp/issues/24735: the router's child prints it behind `[port] `, cut
    # before its `'`: the next stamped line ends it
    (["[61060] 0.58.878.815 I init: chat template, example_format: '<|im_start|>system",
      "[61060] You are a helpful assistant<|im_end|>", "[61060] <|im_start|>user", "[61060] Hello<|im_end|>",
      "[61060] 0.58.897.887 I srv          init: init: chat template, thinking = 1"],
     [[INF], [], [], [], [INF]]),
    # #25121's template with lines that start like a stamp and are none (a version, a distance, a long
    # number: whatever the template says), then a stamped line with figures in it (#23269's): it ends there
    (["0.08.515.111 I srv          init: init: chat template, example_format: '<|im_start|>system",
      "2. Answer in three steps.", "2.5 km. 3.5 km", "3.141.592.6535897932 digits", "3.141.592.65358979323846 digits",
      "10.0.19045 build", "www.a.b.c/d", "1.37.495.398 I statistics ngram-map-k: dur(b,g,a) = 1.267, 0.651, 0.000 ms"],
     [[INF], [], [], [], [], [], [], [INF]]),
])
def test_chat_template_lines_belong_to_the_line_that_printed_it(
        lines: list[str], outcomes: list[list[dict[str, Any]]]) -> None:
    s = Stream()
    assert [s.records(t) for t in lines] == outcomes


def test_digit_led_lines_of_others_are_not_llama_cpp_lines() -> None:
    """Only a stamp `m.ss.mmm.uuu ` and a level letter make a stamped line: Ollama's `2023/10/06 ...`
    (tests/fixtures/samples/ollama.log) and a stamp without its level are left alone."""
    a = LlamacppAdapter()
    assert a.parse_text("2023/10/06 13:38:58 routes.go:572: Listening on 127.0.0.1:11434") is None
    assert a.parse_text("0.45.157.125 srv  log_server_r: done request: GET /tools 127.0.0.1 404") is None
    assert a.parse_text("0.45.157.125 X srv  log_server_r: done request: GET /tools 127.0.0.1 404") is None
    assert a.parse_text("0.45.157.125 II srv  log_server_r: done request: GET /tools 127.0.0.1 404") is None


def test_print_timing_line_cut_after_its_name_opens_a_block() -> None:
    """A `slot print_timing` line cut by a pager before (or inside) its task field still opens a block
    for the bare lines after it; two such blocks are two requests (no task id to mix them up)."""
    total = "      total time =   23954.00 ms /   326 tokens"
    one = timing((915.13, 51), (23038.87, 275), 23954.00)
    for header in ("slot print_timing:", "slot print_timing: id  0 |"):
        assert requests(read([header, *HEADER_CUT[1:], total, header, *HEADER_CUT[1:], total])) == [one, one]
    s = Stream()
    s.records(HEADER_CUT[1])
    assert s.records("slot print_timing:") == [timing((915.13, 51))]


def test_stamped_timing_line_counts_its_log_record() -> None:
    """#23269's eval line as a build that stamps every line prints it: its record and its INFO record."""
    s = Stream()
    assert s.records("1.37.495.378 I        eval time =   16112.50 ms /   192 tokens") == [INF]
    assert s.end() == [timing(None, (16112.50, 192))]


# -- command-line sessions ---------------------------------------------------------------------------

def test_command_line_session_summary_is_no_request() -> None:
    """#9013: llama-cli's block at exit (its `llama_perf_sampler_print` says it is the CLI), then the
    server's block of one request (cut before its total); #17382's `common_perf_print` the same."""
    cli = [
        "llama_perf_sampler_print:    sampling time =      24.62 ms /   227 runs   (    0.11 ms per token,  9220.90 "
        "tokens per second)",
        "llama_perf_context_print:        load time =     618.92 ms",
        "llama_perf_context_print: prompt eval time =     927.17 ms /    49 tokens (   18.92 ms per token,    52.85 "
        "tokens per second)",
        "llama_perf_context_print:        eval time =   14085.85 ms /   178 runs   (   79.13 ms per token,    12.64 "
        "tokens per second)",
        "llama_perf_context_print:       total time =   20699.49 ms /   227 tokens",
        "Interrupted by user",
    ]
    assert requests(read([*cli, *HEADER_CUT])) == [timing((915.13, 51), (23038.87, 275))]
    assert requests(read(["common_perf_print:        load time =    1226.89 ms", *LIBRARY[2:]])) == []


# -- response bodies -----------------------------------------------------------------------------------

# tests/fixtures/samples/llamacpp_timings.jsonl
TIMINGS = {"cache_n": 236, "prompt_n": 1, "prompt_ms": 30.958, "prompt_per_token_ms": 30.958,
           "prompt_per_second": 32.301828283480845, "predicted_n": 35, "predicted_ms": 661.064,
           "predicted_per_token_ms": 18.887542857142858, "predicted_per_second": 52.94494935437416}


def body(timings: dict[str, Any], **top: Any) -> str:
    return orjson.dumps({**top, "timings": timings}).decode()


def drop(*keys: str) -> dict[str, Any]:
    return {k: v for k, v in TIMINGS.items() if k not in keys}


@pytest.mark.parametrize(("line", "record"), [
    (body(TIMINGS), timing((30.958, 1), (661.064, 35), 30.958 + 661.064, prompt_tokens=237, cached_tokens=236)),
    # the same object in an OpenAI-style response that names its model (a name is cut at 128 characters)
    (body(TIMINGS, model="qwen2.5-coder-7b-instruct-q8_0.gguf"),
     timing((30.958, 1), (661.064, 35), 30.958 + 661.064, prompt_tokens=237, cached_tokens=236,
            model="qwen2.5-coder-7b-instruct-q8_0.gguf")),
    (body(TIMINGS, model="m" * 200), timing((30.958, 1), (661.064, 35), 30.958 + 661.064, prompt_tokens=237,
                                            cached_tokens=236, model="m" * 128)),
    # an older server's object without cache_n: no prompt split into cached and not
    (body(drop("cache_n")), timing((30.958, 1), (661.064, 35), 30.958 + 661.064)),
    # only one of the two times: the duration is that time alone
    (body(drop("prompt_ms")), timing(None, (661.064, 35), 661.064, input_tokens=1, prompt_tokens=237,
                                     cached_tokens=236)),
    (body(drop("predicted_ms")), timing((30.958, 1), None, 30.958, output_tokens=35, prompt_tokens=237,
                                        cached_tokens=236)),
    # neither time: no duration is made up
    (body(drop("prompt_ms", "predicted_ms")), timing(None, None, None, input_tokens=1, output_tokens=35,
                                                     prompt_tokens=237, cached_tokens=236)),
    # no output count: no output tokens and nothing to divide the generation time by
    (body(drop("predicted_n")), timing((30.958, 1), None, 30.958 + 661.064, prompt_tokens=237, cached_tokens=236)),
    # no prompt count: nothing to add the cached part to
    (body(drop("prompt_n")), timing(None, (661.064, 35), 30.958 + 661.064, ttft_s=30.958 / 1000)),
    # text where a number belongs is not a figure of llama.cpp's JSON
    (body({**TIMINGS, "prompt_n": "1", "cache_n": "236"}),
     timing(None, (661.064, 35), 30.958 + 661.064, ttft_s=30.958 / 1000)),
])
def test_response_timings_object_is_one_request(line: str, record: dict[str, Any]) -> None:
    assert read([line]) == [record]


def test_failed_task_of_a_cut_send_error_line_is_still_its_task() -> None:
    """#27752's send_error line cut before its error field, then task 64's cancel line: one request."""
    assert read(["29.23.338.119 E srv    send_error: task id = 64", PR_27752[5]]) == [
        failed("error", "_OTHER"), ERR, WRN]


@pytest.mark.parametrize("line", [
    # https://github.com/ollama/ollama/issues/7941: the model loader's lines (llama.cpp's own, bare)
    "llm_load_tensors: offloaded 33/33 layers to GPU",
    "llama_new_context_with_model: n_ctx      = 8192",
    # #27752's progress line as a build without the elapsed-time stamp prints it
    "slot print_timing: id  0 | task 91 | prompt processing, n_tokens =   2048, progress = 0.38, t =   7.26 s / "
    "282.24 tokens per second",
])
def test_server_lines_without_a_level_are_known_and_count_nothing(line: str) -> None:
    assert Stream().line(line) == ("ignored", None)


def test_chat_template_that_fits_on_its_line_holds_no_lines_after_it() -> None:
    """#25121's template line closed on the same line (its `'`): the bare line after it is not the
    template's (it is nobody's)."""
    s = Stream()
    assert s.records("0.08.515.111 I srv          init: init: chat template, example_format: '<|im_start|>'") == [
        INF]
    assert s.line("You are a helpful assistant<|im_end|>") == ("unparsed", "no_adapter")


def test_chat_template_holds_at_most_199_lines() -> None:
    """A template printed over more lines than any real one: the first 199 bare lines after its opening
    line are its own, the 200th is no longer."""
    s = Stream()
    s.records("0.08.515.111 I srv          init: init: chat template, example_format: '<|im_start|>system")
    for _ in range(199):
        assert s.line("You are a helpful assistant<|im_end|>") == ("record", [])
    assert s.line("You are a helpful assistant<|im_end|>") == ("unparsed", "no_adapter")


# -- JSON lines of the 2023 and 2024 servers -----------------------------------------------------------

# https://github.com/ex3ndr/llama-coder/issues/3 (tests/fixtures/corpus/ollama.log): Ollama's embedded 2023
# server, its access lines (journald's prefix peeled)
ACCESS_2023 = ('{"timestamp":1702086974,"level":"INFO","function":"log_server_request","line":1233,"message":'
               '"request","remote_addr":"127.0.0.1","remote_port":58738,"status":200,"method":"POST","path":'
               '"/completion","params":{}}')
HEAD_2023 = ('{"timestamp":1702086973,"level":"INFO","function":"log_server_request","line":1233,"message":'
             '"request","remote_addr":"127.0.0.1","remote_port":58738,"status":200,"method":"HEAD","path":"/",'
             '"params":{}}')


def varied(line: str, **changes: Any) -> str:
    """A JSON line with fields changed by hand (a value of None drops the field)."""
    obj = {**orjson.loads(line), **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not None}).decode()


@pytest.mark.parametrize(("line", "records"), [
    (ACCESS_2023, [http("POST", "/completion", "200"), INF]),
    (HEAD_2023, [http("HEAD", "/", "200"), INF]),
    # the same line without its method, without its path, or with its status as text: no access line,
    # only the server's INFO line
    (varied(ACCESS_2023, method=None), [INF]),
    (varied(ACCESS_2023, path=None), [INF]),
    (varied(ACCESS_2023, status="200"), [INF]),
])
def test_json_access_line_is_one_http_record(line: str, records: list[dict[str, Any]]) -> None:
    assert Stream().line(line) == ("record", records)


UPDATE_SLOTS = JSON_2024[2]  # tests/fixtures/samples/llamacpp.log: `slot released` of task 19


@pytest.mark.parametrize(("line", "outcome"), [
    # the 2023 server names its lines by `timestamp` alone (no `tid`, no `id_slot`)
    (HEAD_2023, ("record", [http("HEAD", "/", "200"), INF])),
    # the 2024 line keeping only one of `tid`, `id_slot`, `timestamp`: still the server's
    (varied(UPDATE_SLOTS, timestamp=None, id_slot=None), ("record", [INF])),
    (varied(UPDATE_SLOTS, timestamp=None, tid=None), ("record", [INF])),
    (varied(UPDATE_SLOTS, tid=None, id_slot=None), ("record", [INF])),
    # ... keeping none of them: `function` and `msg` alone are any application's JSON, not llama.cpp's
    (varied(UPDATE_SLOTS, timestamp=None, tid=None, id_slot=None), ("unparsed", "json_unknown_shape")),
])
def test_json_line_is_the_servers_by_its_thread_slot_or_time_field(line: str, outcome: tuple[str, Any]) -> None:
    assert Stream().line(line) == outcome


@pytest.mark.parametrize(("level", "outcome"), [
    ("INFO", ("record", [INF])),
    ("WARN", ("record", [WRN])),
    ("ERR", ("record", [ERR])),
    ("VERB", ("record", [log("DEBUG")])),
    # a level word the server never wrote, or no level: no log record
    ("NOTICE", ("ignored", None)),
    (None, ("ignored", None)),
])
def test_json_line_level_is_its_log_record(level: Any, outcome: tuple[str, Any]) -> None:
    """The 2024 server's `slot released` line with its level field as each level the server writes
    (`WARN`, `ERR`, `VERB`: 2024's four-letter names) or as none."""
    assert Stream().line(varied(UPDATE_SLOTS, level=level)) == outcome


def test_json_timing_block_of_a_cancelled_task_is_not_counted_again() -> None:
    """Task 19 cancelled (#14829's cancel line with 19 for 4), then its JSON timing lines (JSON_2024): one
    request, the aborted one. The April 2024 server named the field `task_id` (the `slot data` line of
    tests/fixtures/samples/llamacpp.log): the same with JSON_2024's `id_task` renamed."""
    cancel = CANCEL_4.replace("= 4", "= 19")
    assert requests(read([cancel, *JSON_2024])) == [failed("aborted")]
    renamed = [varied(t, id_task=None, task_id=orjson.loads(t)["id_task"]) for t in JSON_2024]
    assert requests(read([cancel, *renamed])) == [failed("aborted")]


def test_json_timing_blocks_without_a_task_id_are_two_requests() -> None:
    """JSON_2024's prompt and total lines twice, their task id dropped: no id to take one for the other."""
    lines = [varied(t, id_task=None) for t in JSON_2024[:2]]
    one = timing((2684.39, 27), None, 6243.66)
    assert requests(read(lines + lines)) == [one, one]


def test_library_blocks_are_each_a_request() -> None:
    """#9353's library block twice in one stream: the library prints no task id, so two blocks are two
    requests (neither is taken for a repeat of the other)."""
    one = timing((1161.79, 62), (7041.42, 342), 10797.30)
    assert requests(read(LIBRARY + LIBRARY)) == [one, one]


# -- mid-2024 text lines of other functions ------------------------------------------------------------

@pytest.mark.parametrize(("line", "records"), [
    # https://github.com/curvedinf/dir-assistant/issues/4 (tests/fixtures/corpus/llamacpp.log)
    ('DEBUG [update_slots] kv cache rm [p0, end) | p0=1 slot_id=0 task_id=713 tid="0x1f822a100" '
     "timestamp=1717085714", [log("DEBUG")]),
    ('DEBUG [log_server_request] request | method="POST" params={} path="/completion" remote_addr="127.0.0.1" '
     'remote_port=57145 status=200 tid="0x16fedb000" timestamp=1717085719', [log("DEBUG")]),
])
def test_mid_2024_line_of_another_function_is_its_log_record(line: str, records: list[dict[str, Any]]) -> None:
    assert Stream().line(line) == ("record", records)


# -- chat templates: where they end --------------------------------------------------------------------

TEMPLATE_OPEN = "0.08.515.111 I srv          init: init: chat template, example_format: '<|im_start|>system"


@pytest.mark.parametrize("ender", [
    # https://github.com/ollama/ollama/issues/7941's loader line and tests/fixtures/samples/llamacpp.log's idle
    # line: the server's own lines, unstamped (an older build's), end a template cut before its `'`
    "llm_load_tensors: offloaded 33/33 layers to GPU",
    "srv  update_slots: all slots are idle",
    # ... and a stamped line (#25121's next line)
    "0.08.526.730 I srv          init: init: chat template, thinking = 1",
])
def test_chat_template_cut_before_its_quote_ends_at_the_next_server_line(ender: str) -> None:
    """#25121's template opened and one bare line of it, then a server line: that line is the server's
    (not the template's), and a bare line after it is nobody's."""
    s = Stream()
    assert s.records(TEMPLATE_OPEN) == [INF]
    assert s.line("You are a helpful assistant<|im_end|>") == ("record", [])
    assert s.line(ender)[0] == ("record" if ender[0].isdigit() else "ignored")
    assert s.line("<|im_start|>user") == ("unparsed", "no_adapter")


def test_chat_template_ends_with_its_quote_line() -> None:
    """#25121's template closed by its `'` line: the bare line after it is nobody's."""
    s = Stream()
    s.records(TEMPLATE_OPEN)
    assert [s.line(t) for t in ("<|im_start|>assistant", "'")] == [("record", []), ("record", [])]
    assert s.line("<|im_start|>user") == ("unparsed", "no_adapter")


def test_chat_template_behind_the_routers_port_prefix() -> None:
    """#24735's template of a router's child, behind `[61060] `, over bare lines and closed by its `'` line
    (the `'` line, and a line that starts like a stamp as #25121's does, added by hand: the issue cut
    them): the bare lines are the template's, a digit-led one too; the child's bare lines after it, and
    after a stamped line, are its other output (known, counted as nothing)."""
    s = Stream()
    lines = ["[61060] 0.58.878.815 I init: chat template, example_format: '<|im_start|>system",
             "[61060] You are a helpful assistant<|im_end|>", "[61060] 2. Answer in three steps.",
             "[61060] <|im_start|>user", "[61060] '", "[61060] <|im_start|>user"]
    assert [s.line(t) for t in lines] == [("record", [INF]), ("record", []), ("record", []), ("record", []),
                                          ("record", []), ("ignored", None)]
    s = Stream()
    lines = [lines[0], lines[1], "[61060] 0.58.897.887 I srv          init: init: chat template, thinking = 1",
             "[61060] <|im_start|>user"]
    assert [s.line(t) for t in lines] == [("record", [INF]), ("record", []), ("record", [INF]), ("ignored", None)]


# -- ggml's device list --------------------------------------------------------------------------------

def test_device_line_is_known_once_llama_cpp_named_the_stream() -> None:
    """https://github.com/ollama/ollama/issues/9509 (tests/fixtures/corpus/ollama.log): ggml's device line is
    llama.cpp's once a llama.cpp line named the stream; before, it is nobody's."""
    device = "  Device 0: NVIDIA GeForce RTX 4080 Laptop GPU, compute capability 8.9, VMM: yes"
    s = Stream()
    assert s.line(device) == ("unparsed", "no_adapter")
    assert s.line("ggml_cuda_init: found 1 CUDA devices:") == ("ignored", None)
    assert s.shared["server"] == "llamacpp"
    assert s.line(device) == ("ignored", None)


@pytest.mark.parametrize(("line", "outcome"), [
    # MID_2024's lines cut by a pager before their ` | k=v` tail: still their figures
    (MID_2024[0].split(" | ")[0], ("record", [log("DEBUG")])),
    (MID_2024[2].split(" | ")[0], ("record", [timing(None, None, 4330.27), log("DEBUG")])),
    # ... and cut inside the name of the figure: a print_timings line, known, without a figure
    ("DEBUG [print_timings] prompt eval ti", ("ignored", None)),
])
def test_mid_2024_timing_line_cut_short(line: str, outcome: tuple[str, Any]) -> None:
    assert Stream().line(line) == outcome


def test_mid_2024_prompt_line_cut_before_its_tail_opens_a_block() -> None:
    s = Stream()
    s.records(MID_2024[0].split(" | ")[0])
    assert s.end() == [timing((698.19, 65))]


def test_tagged_line_of_the_common_library_is_a_log_record() -> None:
    """https://github.com/farion1231/cc-switch/issues/6032 (tests/fixtures/corpus/llamacpp.log): the newest
    builds tag the common library's lines `cmn`: the line's INFO record."""
    line = "0.00.182.705 I cmn  common_param: common_params_print_info: verbosity = 3 (adjust with the `-lv N` CLI arg)"
    assert Stream().line(line) == ("record", [INF])


def test_routers_chat_template_holds_at_most_199_lines() -> None:
    """#24735's template behind `[61060] ` printed over more lines than any real one: the first 199 bare
    lines after its opening line are its own, the 200th is the child's other output."""
    s = Stream()
    s.records("[61060] 0.58.878.815 I init: chat template, example_format: '<|im_start|>system")
    for _ in range(199):
        assert s.line("[61060] You are a helpful assistant<|im_end|>") == ("record", [])
    assert s.line("[61060] You are a helpful assistant<|im_end|>") == ("ignored", None)


def test_bracketed_line_of_another_server_is_not_held_by_an_open_block() -> None:
    """HEADER_CUT's block still open (no total yet) when Ollama's GIN access line comes
    (tests/fixtures/corpus/ollama.log, https://github.com/ollama/ollama/issues/5816): the GIN line is Ollama's."""
    s = Stream()
    for t in HEADER_CUT[:2]:
        s.records(t)
    gin = '[GIN] 2024/07/21 - 15:52:40 | 200 |      6.2826ms |       127.0.0.1 | GET      "/api/tags"'
    assert s.line(gin) == ("record", [{"kind": "http", "provider": "ollama", "method": "GET", "path": "/api/tags",
                                       "code": "200", "duration_s": 0.0062826}])


def test_cut_json_line_of_another_server_is_not_llama_cpps() -> None:
    """tests/fixtures/samples/tgi_json.log's launcher line cut by a pager (no longer JSON): it starts like a
    2023 llama.cpp JSON line (`{"timestamp":`) but names no `function`, so it is not llama.cpp's."""
    line = ('{"timestamp":"2024-02-21T05:09:46.815155Z","level":"INFO","fields":{"message":"Starting download '
            'process."},"target":"text_gen')
    assert LlamacppAdapter().parse_text(line) is None


def test_json_level_that_is_no_text_is_no_level() -> None:
    """JSON_2024's `slot released` line with its level as a list (varied by hand): no log record, and no
    error (a list is no key to look a level up by)."""
    obj = {**orjson.loads(UPDATE_SLOTS), "level": ["INFO"]}
    assert LlamacppAdapter().parse_json(orjson.dumps(obj), obj) == IGNORED


def test_line_led_by_a_level_word_the_server_never_wrote_is_not_its_line() -> None:
    """MID_2024's prompt line with `DEBUG` changed to `TRACE` by hand: `TRACE [` is no level of the 2024
    server's text lines (`INFO`, `WARN`, `ERR`, `VERB`, `DEBUG`), so the line is nobody's (never an error)."""
    assert Stream().line(MID_2024[0].replace("DEBUG", "TRACE", 1)) == ("unparsed", "no_adapter")


def test_cut_2023_json_line_is_known_by_its_function_field_in_120_characters() -> None:
    """https://github.com/ollama/ollama/issues/1365 (tests/fixtures/corpus/ollama.log): the 2023 server's JSON
    line cut by journalctl's `>` is known as the server's when `"function":"` ends within its first 120
    characters; its level field padded by hand to move the marker to the edge: at 121 it is not."""
    cut = ('{"timestamp":1701615522,"level":"INFO","function":"log_server_request","line":1233,"message":"request",'
           '"remote_addr":"127.0.0.1","remote_port":51344,"statu>')
    assert Stream().line(cut) == ("ignored", None)
    at_120 = cut.replace('"INFO"', '"INFO' + " " * 69 + '"')
    at_121 = cut.replace('"INFO"', '"INFO' + " " * 70 + '"')
    assert at_120.index('"function":"') + len('"function":"') == 120
    assert LlamacppAdapter().parse_text(at_120) == IGNORED
    assert LlamacppAdapter().parse_text(at_121) is None
