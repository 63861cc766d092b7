"""Ollama's lines, record by record: GIN access lines and the abort lines that pair with them (in
either order, within a window of lines), `slog` ERROR lines classified by their message, a runner
fronted by Ollama, and Go crash dumps (Linux and Windows first lines, frames, amd64 and arm64
registers).

Lines are copied from public issues (cited per table). Where a line is varied by hand to reach an edge
of the format, the comment says which real line it comes from and what was changed. Expected records
are worked out by hand from the lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_exporter.adapters.ollama import PAIR_WINDOW
from tests.adapter_stream import Stream, read, requests

FIXTURES = Path(__file__).parent.parent / "fixtures"

# https://github.com/karakeep-app/karakeep/issues/1129 (Ollama 0.6): chats whose clients went away
GIN_CHAT_70 = '[GIN] 2025/03/17 - 07:09:31 | 200 |         1m10s |   192.168.1.3 | POST     "/api/chat"'
GIN_CHAT_72 = '[GIN] 2025/03/17 - 07:10:45 | 200 |         1m12s |   192.168.1.3 | POST     "/api/chat"'
GIN_CHAT_73 = '[GIN] 2025/03/17 - 07:11:59 | 200 |         1m13s |   192.168.1.3 | POST     "/api/chat"'
ABORT = ('time=2025-03-17T07:10:45.293Z level=INFO source=runner.go:654 msg="aborting completion request due to'
         ' client closing the connection"')
# https://github.com/ollama/ollama/issues/8770: an Ollama INFO line that is nothing else
INFO_LINE = 'time=2025-02-02T09:23:09.826+08:00 level=INFO source=images.go:432 msg="total blobs: 5"'
# https://github.com/ollama/ollama/issues/11447: the runner died while loading, the request failed
LOAD_ERROR = ('time=2025-07-16T20:07:57.610+02:00 level=ERROR source=sched.go:489 msg="error loading llama server"'
              ' error="llama runner process has terminated: exit status 2"')
GIN_GENERATE_500 = '[GIN] 2025/07/16 - 20:07:57 | 500 |    720.9988ms |       127.0.0.1 | POST     "/api/generate"'
# https://github.com/ollama/ollama/issues/13805 and #9330
GIN_GENERATE_200 = '[GIN] 2026/01/20 - 23:21:17 | 200 |  200.665714ms |       127.0.0.1 | POST     "/api/generate"'
GIN_SHOW = '[GIN] 2025/02/26 - 10:05:54 | 200 |   23.975065ms |       127.0.0.1 | POST     "/api/show"'

INFO = {"kind": "log", "provider": "ollama", "level": "INFO"}


def http(method: str, path: str, code: str, seconds: float) -> dict[str, Any]:
    return {"kind": "http", "provider": "ollama", "method": method, "path": path, "code": code, "duration_s": seconds}


def request(operation: str, outcome: str, error_type: str, seconds: float) -> dict[str, Any]:
    return {"kind": "request", "provider": "ollama", "operation": operation, "model": "", "outcome": outcome,
            "error_type": error_type, "duration_s": seconds}


def lines_of(s: Stream, texts: list[str]) -> list[list[dict[str, Any]]]:
    return [s.records(t) for t in texts]


# -- access lines -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "records"), [
    (GIN_GENERATE_500, [http("POST", "/api/generate", "500", 720.9988 / 1000),
                        request("text_completion", "error", "_OTHER", 720.9988 / 1000)]),
    (GIN_SHOW, [http("POST", "/api/show", "200", 0.023975065)]),
    # the #13805 line for an embedding (its path changed): a request at once, no abort line can follow
    (GIN_GENERATE_200.replace('"/api/generate"', '"/api/embed"'),
     [http("POST", "/api/embed", "200", 0.200665714), request("embeddings", "success", "", 0.200665714)]),
    # the #13805 line as a browser's CORS preflight (method and status changed): no request
    (GIN_GENERATE_200.replace("| 200 |", "| 204 |").replace("POST   ", "OPTIONS"),
     [http("OPTIONS", "/api/generate", "204", 0.200665714)]),
    # the #13805 line for a path GIN logs decoded with ` | ` in it: the split stops at the fifth field
    (GIN_GENERATE_200.replace('| 200 |', '| 404 |').replace('"/api/generate"', '"/api/generate | x"'),
     [http("POST", "_OTHER", "404", 0.200665714)]),
])
def test_gin_line_is_one_http_record_and_an_inference_path_one_request(
        line: str, records: list[dict[str, Any]]) -> None:
    """A GIN line gives its HTTP record; on an inference path it is also a request (failed ones and
    embeddings at once; a successful chat or completion is held for a possible abort line)."""
    assert read([line]) == records


@pytest.mark.parametrize("line", [
    GIN_GENERATE_200.replace("| 200 |", "| 2000 |"),  # a status of four digits
    GIN_GENERATE_200.replace("| 200 |", "| 2x0 |"),  # not a number
    GIN_GENERATE_200.replace(" |       127.0.0.1 ", ""),  # a field short
])
def test_gin_line_without_a_status_field_is_nobodys(line: str) -> None:
    assert Stream().line(line) == ("unparsed", "no_adapter")


def test_gin_line_with_a_bad_duration_is_invalid() -> None:
    assert Stream().line(GIN_SHOW.replace("23.975065ms", "23.97.5ms")) == ("invalid", "bad_duration")


# -- aborts ---------------------------------------------------------------------------------------------

def test_abort_line_after_its_gin_line_makes_the_held_request_aborted() -> None:
    s = Stream()
    assert lines_of(s, [GIN_CHAT_70, ABORT]) == [
        [http("POST", "/api/chat", "200", 70.0)], [request("chat", "aborted", "", 70.0), INFO]]
    assert s.end() == []


def test_abort_lines_before_their_gin_lines_abort_as_many_requests_as_they_are() -> None:
    """karakeep#1129's abort line, twice, then its three GIN lines: two aborted, the third a success
    (held until the end of the stream, no abort line came)."""
    s = Stream()
    assert lines_of(s, [ABORT, ABORT, GIN_CHAT_70, GIN_CHAT_72, GIN_CHAT_73]) == [
        [INFO], [INFO],
        [http("POST", "/api/chat", "200", 70.0), request("chat", "aborted", "", 70.0)],
        [http("POST", "/api/chat", "200", 72.0), request("chat", "aborted", "", 72.0)],
        [http("POST", "/api/chat", "200", 73.0)]]
    assert s.end() == [request("chat", "success", "", 73.0)]


@pytest.mark.parametrize(("first", "first_request"), [
    (GIN_GENERATE_500, request("text_completion", "error", "_OTHER", 720.9988 / 1000)),
    # the #13805 line for an embedding (its path changed)
    (GIN_GENERATE_200.replace('"/api/generate"', '"/api/embed"'), request("embeddings", "success", "", 0.200665714)),
])
def test_failed_request_or_embedding_is_never_the_one_an_abort_line_aborts(
        first: str, first_request: dict[str, Any]) -> None:
    """A failed request or an embedding goes out with its GIN line as it is: karakeep#1129's abort line
    after it waits for the next chat's GIN line, and that chat is the aborted one."""
    s = Stream()
    assert requests(s.records(first)) == [first_request]
    assert requests(s.records(ABORT)) == []
    assert requests(s.records(GIN_CHAT_72)) == [request("chat", "aborted", "", 72.0)]
    assert s.end() == []


def test_one_abort_line_aborts_one_request() -> None:
    assert requests(read([ABORT, GIN_CHAT_72, GIN_CHAT_73])) == [
        request("chat", "aborted", "", 72.0), request("chat", "success", "", 73.0)]


def test_gin_line_after_an_unanswered_one_releases_it_as_it_is() -> None:
    s = Stream()
    assert lines_of(s, [GIN_CHAT_70, GIN_CHAT_72]) == [
        [http("POST", "/api/chat", "200", 70.0)],
        [http("POST", "/api/chat", "200", 72.0), request("chat", "success", "", 70.0)]]


def test_held_request_waits_pair_window_lines_for_its_abort_line() -> None:
    """A successful chat is held for the next PAIR_WINDOW (20) lines; on the 21st it goes out as it is."""
    assert PAIR_WINDOW == 20
    s = Stream()
    assert s.records(GIN_CHAT_70) == [http("POST", "/api/chat", "200", 70.0)]
    for _ in range(20):
        assert s.records(INFO_LINE) == [INFO]
    assert s.records(INFO_LINE) == [request("chat", "success", "", 70.0), INFO]


def test_abort_line_waits_pair_window_lines_for_its_gin_line() -> None:
    """An abort line pairs with a GIN line up to 20 lines after it; one line later it is forgotten."""
    s = Stream()
    s.records(ABORT)
    for _ in range(19):
        s.records(INFO_LINE)
    assert requests(s.records(GIN_CHAT_72)) == [request("chat", "aborted", "", 72.0)]
    s = Stream()
    s.records(ABORT)
    for _ in range(20):
        s.records(INFO_LINE)
    assert requests(s.records(GIN_CHAT_72) + s.end()) == [request("chat", "success", "", 72.0)]


def test_at_most_pair_window_abort_lines_wait() -> None:
    """21 abort lines in a row: 20 wait (the 21st neither counts nor renews their window). 18 GIN lines
    take 18 of them; one more abort line makes three waiting, so of the next four chats three are aborted."""
    s = Stream()
    for _ in range(21):
        s.records(ABORT)
    recs: list[dict[str, Any]] = []
    for _ in range(18):
        recs += s.records(GIN_CHAT_72)
    assert [r["outcome"] for r in requests(recs)] == ["aborted"] * 18
    s.records(ABORT)
    recs = []
    for _ in range(4):
        recs += s.records(GIN_CHAT_73)
    assert [r["outcome"] for r in requests(recs + s.end())] == ["aborted", "aborted", "aborted", "success"]


# -- server lines -----------------------------------------------------------------------------------

def test_runner_that_died_is_an_incident_and_its_request_an_error() -> None:
    """#11447: the ERROR line is one incident (its message says the runner terminated), the GIN 500
    line the failed request."""
    assert read([LOAD_ERROR, GIN_GENERATE_500]) == [
        {"kind": "log", "provider": "ollama", "level": "ERROR", "error_type": "engine_dead"},
        {"kind": "server_error", "provider": "ollama", "error_type": "engine_dead"},
        http("POST", "/api/generate", "500", 720.9988 / 1000),
        request("text_completion", "error", "_OTHER", 720.9988 / 1000)]


def _error_line(message: str) -> str:
    """#11447's ERROR line with another message."""
    return LOAD_ERROR.split(" msg=")[0] + f' msg="{message}"'


def test_error_line_is_classified_by_its_message_from_msg_on() -> None:
    """The class comes from the message: the classifier reads 400 characters from `msg=`, so a
    phrase that ends at the 400th is seen and one a character later is not, whatever the header."""
    head = LOAD_ERROR.split(" msg=")[0] + " "
    phrase = "out of memory"
    at_400 = head + 'msg="' + "x" * (400 - len('msg="') - len(phrase)) + phrase + '"'
    at_401 = head + 'msg="' + "x" * (401 - len('msg="') - len(phrase)) + phrase + '"'
    assert Stream().records(at_400) == [{"kind": "log", "provider": "ollama", "level": "ERROR", "error_type": "oom"}]
    assert Stream().records(at_401) == [{"kind": "log", "provider": "ollama", "level": "ERROR",
                                         "error_type": "_OTHER"}]
    # the first `msg=` counts: one quoted again in the error attribute does not move the window
    nested = at_400[:-1] + ' error="relayed: level=ERROR msg=' + "y" * 400 + '"'
    assert Stream().records(nested)[0]["error_type"] == "oom"


def test_error_line_that_names_no_class_is_an_error_log_only() -> None:
    assert Stream().records(_error_line("failed to decode")) == [
        {"kind": "log", "provider": "ollama", "level": "ERROR", "error_type": "_OTHER"}]


# https://github.com/curvedinf/dir-assistant/issues/4: the embedded llama.cpp server's timing block
# (mid-2024 text) and Ollama's GIN line for the same chat
RUNNER_BLOCK = [
    "DEBUG [print_timings] prompt eval time     =     698.19 ms /    65 tokens (   10.74 ms per token,    "
    "93.10 tokens per second) | n_prompt_tokens_processed=65 n_tokens_second=93.0973339788082 slot_id=0 "
    't_prompt_processing=698.194 t_token=10.741446153846153 task_id=713 tid="0x1f822a100" timestamp=1717085719',
    "DEBUG [print_timings] generation eval time =    3632.08 ms /    69 runs   (   52.64 ms per token,    "
    "19.00 tokens per second) | n_decoded=69 n_tokens_second=18.9973946036937 slot_id=0 t_token=52.63879710144928"
    ' t_token_generation=3632.077 task_id=713 tid="0x1f822a100" timestamp=1717085719',
    "DEBUG [print_timings]           total time =    4330.27 ms | slot_id=0 t_prompt_processing=698.194 "
    't_token_generation=3632.077 t_total=4330.271000000001 task_id=713 tid="0x1f822a100" timestamp=1717085719',
]
GIN_RUNNER_CHAT = '[GIN] 2024/05/30 - 09:15:19 | 200 |   4.33424375s |       127.0.0.1 | POST     "/api/chat"'


def test_request_of_a_runner_block_seen_first_counts_once() -> None:
    """dir-assistant#4: the runner's timing block came before any Ollama line, so the engine counted the
    request; Ollama's GIN line for it adds none. Another chat after that, with no block before it, is
    Ollama's again (held, then out at the end)."""
    recs = requests(read([*RUNNER_BLOCK, GIN_RUNNER_CHAT, GIN_CHAT_73]))
    assert [(r["provider"], r.get("duration_s")) for r in recs] == [("llamacpp", 4330.27 / 1000), ("ollama", 73.0)]


def test_requests_of_two_runner_blocks_seen_first_count_once_each() -> None:
    """dir-assistant#4's block twice (two chats ended before any Ollama line was read), then their two
    GIN lines: each GIN line matches one block, so two requests, not three; the chat after them is
    Ollama's."""
    recs = requests(read([*RUNNER_BLOCK, *RUNNER_BLOCK, GIN_RUNNER_CHAT, GIN_RUNNER_CHAT, GIN_CHAT_73]))
    assert [(r["provider"], r.get("duration_s")) for r in recs] == [
        ("llamacpp", 4330.27 / 1000), ("llamacpp", 4330.27 / 1000), ("ollama", 73.0)]


# -- crash dumps -------------------------------------------------------------------------------------

CRASH_LOG = {"kind": "log", "provider": "ollama", "level": "ERROR", "error_type": "engine_dead"}
CRASH = {"kind": "server_error", "provider": "ollama", "error_type": "engine_dead"}


@pytest.mark.parametrize("dump", [
    # https://github.com/ollama/ollama/issues/11255 (Ollama 0.9.3 on Windows: the runner crashed)
    ["Exception 0xc0000005 0x0 0x0 0x7fffb8f22f58",
     "PC=0x7fffb8f22f58",
     "signal arrived during external code execution",
     "runtime.cgocall(0x7ff6979bc470, 0xc0005075a0)",
     "        C:/hostedtoolcache/windows/go/1.24.0/x64/src/runtime/cgocall.go:167 +0x3e fp=0xc000507578 "
     "sp=0xc000507510 pc=0x7ff696cd2dbe"],
    # https://github.com/ollama/ollama/issues/8492 (Linux amd64)
    ["SIGSEGV: segmentation violation",
     "PC=0x7f87e284d1d7 m=0 sigcode=1 addr=0x206403fd8",
     "signal arrived during cgo execution",
     "goroutine 4 gp=0xc0000076c0 m=0 mp=0x55ef197e41c0 [syscall]:",
     "runtime.cgocall(0x55ef191fcfb0, 0xc00014aba0)"],
    # the lines Go's runtime prints (src/runtime/traceback.go, signal_amd64.go, signal_arm64.go): an elided
    # stack, a goroutine on another thread, and registers, amd64's (#8271's `rax    0x0`) and arm64's
    ["SIGSEGV: segmentation violation",
     "...additional frames elided...",
     "goroutine running on other thread; stack unavailable",
     "rax    0x0",
     "r15    0x1b834e",
     "r0      0x0",
     "r28     0x4000102a88",
     "lr      0x10465bf3c",
     "fault   0x18"],
])
def test_go_crash_dump_is_one_incident_and_its_lines_belong_to_it(dump: list[str]) -> None:
    """Once Ollama has named the stream, a Go crash's first line is one incident; every later line of
    the dump is known and counts nothing."""
    s = Stream()
    s.records(INFO_LINE)
    assert s.records(dump[0]) == [CRASH_LOG, CRASH]
    for text in dump[1:]:
        assert s.line(text) == ("ignored", None), text


def test_hex_after_a_word_that_is_no_register_is_not_a_dump_line() -> None:
    """In an Ollama stream outside a dump, `word 0x...` is a register line only for a register's name."""
    s = Stream()
    s.records(INFO_LINE)
    assert s.line("handle 0x7ffc89efc5c7") == ("unparsed", "no_adapter")
    assert s.line("region 0x7ffc89efc5c7") == ("unparsed", "no_adapter")  # an `r` alone makes no register
    assert s.line("r16     0x7ffc89efc5c7") == ("ignored", None)


# -- API responses -------------------------------------------------------------------------------------

API = [orjson.loads(ln) for ln in (FIXTURES / "samples" / "ollama_api.jsonl").read_bytes().splitlines()]
# https://github.com/ollama/ollama/blob/main/docs/api.md ("Load a model" of /api/chat): no numbers at all
LOAD = {"model": "llama3.2", "created_at": "2024-09-12T21:17:29.110811Z",
        "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True}


def api_request(operation: str, model: str, **numbers: Any) -> dict[str, Any]:
    return {"kind": "request", "provider": "ollama", "operation": operation, "model": model, "outcome": "success",
            "error_type": "", **numbers}


def varied(obj: dict[str, Any], drop: tuple[str, ...] = (), **changed: Any) -> str:
    """A real response with fields left out or changed by hand, as one JSON line."""
    return orjson.dumps({**{k: v for k, v in obj.items() if k not in drop}, **changed}).decode()


GENERATE, CHAT = API
PROMPT = ("prompt_eval_count", "prompt_eval_duration")
EVAL = ("eval_count", "eval_duration")


@pytest.mark.parametrize(("line", "record"), [
    # by hand from the fixture's first line: 256103089 ns; 86 ms over 15 tokens; 24 ms + 86 ms inference
    (varied(GENERATE), api_request("text_completion", "deepseek-r1:1.5b", input_tokens=10, output_tokens=15,
                                   duration_s=0.256103089, tpot_s=0.086 / 15, inference_s=0.11,
                                   finish_reason="stop")),
    # the second line, a chat: 872113375 ns; 321374542 ns over 25 tokens; 516695792 + 321374542 ns
    (varied(CHAT), api_request("chat", "llama3.2:latest", input_tokens=29, output_tokens=25,
                               duration_s=0.872113375, tpot_s=0.321374542 / 25, inference_s=0.838070334,
                               finish_reason="stop")),
    # the documented load response: a request with no numbers, its reason `load`
    (varied(LOAD), api_request("chat", "llama3.2", finish_reason="load")),
    # the first line with its prompt cached (older Ollama left the prompt fields out, ollama#2068):
    # inference is the 86 ms of generation alone
    (varied(GENERATE, PROMPT), api_request("text_completion", "deepseek-r1:1.5b", output_tokens=15,
                                           duration_s=0.256103089, tpot_s=0.086 / 15, inference_s=0.086,
                                           finish_reason="stop")),
    # the first line with nothing generated (the eval fields left out): inference is the 24 ms of prompt
    (varied(GENERATE, EVAL), api_request("text_completion", "deepseek-r1:1.5b", input_tokens=10,
                                         duration_s=0.256103089, inference_s=0.024, finish_reason="stop")),
    # ... or written as zeros (a zero count and a zero duration are values, not errors): no time per token
    (varied(GENERATE, eval_count=0, eval_duration=0, load_duration=0),
     api_request("text_completion", "deepseek-r1:1.5b", input_tokens=10, output_tokens=0,
                 duration_s=0.256103089, inference_s=0.024, finish_reason="stop")),
    # a model that is no string is no model name; a long one and a long reason are cut (label bounds)
    (varied(LOAD, model=7), api_request("chat", "", finish_reason="load")),
    (varied(LOAD, model="m" * 200, done_reason="r" * 100), api_request("chat", "m" * 128, finish_reason="r" * 64)),
    # an empty or non-string reason is no reason
    (varied(LOAD, done_reason=""), api_request("chat", "llama3.2")),
    (varied(LOAD, done_reason=1), api_request("chat", "llama3.2")),
])
def test_final_api_response_is_one_request_with_its_tokens_and_times(line: str, record: dict[str, Any]) -> None:
    """A `done:true` object is one request: token counts as they are, durations from integer
    nanoseconds, time per output token from the generation time, inference = prompt + generation."""
    assert Stream("ollama").line(line) == ("record", [record])


@pytest.mark.parametrize("obj", [GENERATE, CHAT, LOAD, {**LOAD, "done_reason": "unload"}])
def test_api_response_is_ollamas_also_where_an_application_may_log_json(obj: dict[str, Any]) -> None:
    """Read with every format (an application's JSON lines first), an API response is still Ollama's
    request, also the documented load and unload answers that carry no numbers."""
    line = varied(obj)
    assert Stream().line(line) == Stream("ollama").line(line)
    assert Stream().line(line)[1][0]["provider"] == "ollama"


@pytest.mark.parametrize("line", [
    varied(GENERATE, prompt_eval_count=-1),
    varied(GENERATE, eval_count="15"),  # a count as a string
    varied(GENERATE, eval_count=15.0),
    varied(GENERATE, load_duration=-1),
    varied(GENERATE, total_duration="256ms"),  # a duration as a string
    varied(CHAT, prompt_eval_duration=0.5),
])
def test_api_response_with_a_count_or_duration_that_is_no_whole_number_is_invalid(line: str) -> None:
    assert Stream("ollama").line(line) == ("invalid", "bad_value")


@pytest.mark.parametrize("missing", ["done", "created_at", "model"])
def test_json_object_without_done_created_at_and_model_is_no_api_response(missing: str) -> None:
    """All three keys make an Ollama response; an object lacking one is some other application's."""
    assert Stream().line(varied(GENERATE, (missing,))) == ("unparsed", "json_unknown_shape")


# -- what a held request or a waiting abort line becomes at the edges ----------------------------------

# tests/fixtures/corpus/ollama.log (GIN's debug-mode route listing)
GIN_DEBUG = '[GIN-debug] [WARNING] Running in "debug" mode. Switch to "release" mode in production.'


@pytest.mark.parametrize(("last", "with_it"), [
    ("Running on local URL:  http://127.0.0.1:7860", []),  # a line no adapter knows (tests/fixtures/app_plain.txt)
    (GIN_DEBUG, []),  # a line Ollama ignores
    (GIN_CHAT_72, [http("POST", "/api/chat", "200", 72.0)]),  # a line of several records, the next chat held
])
def test_held_request_goes_out_with_whatever_line_ends_its_window(last: str, with_it: list[dict[str, Any]]) -> None:
    """The 21st line after a chat's GIN line releases the chat, as it is, together with that line's own
    records, whether the line is unknown, ignored or a record of its own."""
    s = Stream()
    s.records(GIN_CHAT_70)
    for _ in range(20):
        s.records(INFO_LINE)
    assert s.line(last) == ("record", [request("chat", "success", "", 70.0), *with_it])


def test_abort_line_forgotten_by_its_window_or_a_flush_leaves_the_count_as_it_was() -> None:
    """An abort line forgotten (20 lines passed, or the stream was flushed at an idle timeout) aborts
    nothing; a later abort line still pairs with its chat."""
    s = Stream()
    s.records(ABORT)
    for _ in range(21):
        s.records(INFO_LINE)
    recs = s.records(ABORT) + s.records(GIN_CHAT_72) + s.end()
    assert [r["outcome"] for r in requests(recs)] == ["aborted"]
    s = Stream()
    s.records(ABORT)
    assert s.end() == []
    recs = s.records(ABORT) + s.records(GIN_CHAT_72) + s.records(GIN_CHAT_73) + s.end()
    assert [r["outcome"] for r in requests(recs)] == ["aborted", "success"]


# -- what is, and is not, a line of Ollama's --------------------------------------------------------------

@pytest.mark.parametrize("line", [
    # https://github.com/ollama/ollama/issues/8492: frames of a runner's crash dump
    "goroutine 4 gp=0xc0000076c0 m=0 mp=0x55ef197e41c0 [syscall]:",
    "runtime.cgocall(0x55ef191fcfb0, 0xc00014aba0)",
    # https://github.com/ollama/ollama/issues/8271 (tests/fixtures/corpus/ollama.log, journald peeled)
    "created by github.com/ollama/ollama/llama/runner.Execute in goroutine 1",
    "        github.com/ollama/ollama/llama/runner/runner.go:984 +0xde5",
])
def test_go_frame_is_a_dump_line_before_any_ollama_line(line: str) -> None:
    """A dump read from its middle (a journal shows its tail): a frame is known at once, and the
    register lines after it belong to the dump; a register line alone is nobody's."""
    s = Stream()
    assert s.line("rax    0x0") == ("unparsed", "no_adapter")
    assert s.line(line) == ("ignored", None)
    assert s.line("rax    0x0") == ("ignored", None)
    assert s.line("rbx    0x1b834e") == ("ignored", None)


@pytest.mark.parametrize("line", [
    # https://pkg.go.dev/log/slog: another Go program's slog line has no `source=` (Ollama's always has)
    "time=2022-11-08T15:28:26.000-05:00 level=INFO msg=hello count=3",
    # https://pkg.go.dev/log: another Go program's standard log line, LstdFlags (no file name)
    "2009/01/23 01:23:23 message",
    # klog's header (k8s.io/klog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`): a file, no frame address
    "I1130 13:38:58.123456       1 main.go:42] Starting controller",
    # lines that end like a goroutine header, or hold a parenthesised address after words
    "Available CUDA devices [2]:",
    "Segmentation fault at address (0x0)",
    "request 7 handled in goroutine 12 by the worker pool",
])
def test_line_that_merely_looks_like_gos_is_not_ollamas(line: str) -> None:
    assert Stream().line(line) == ("unparsed", "no_adapter")


def _slog(head: str) -> str:
    """#8770's INFO line with another header before ` source=`."""
    return head + " source=images.go:432 msg=\"total blobs: 5\""


def test_slog_header_is_read_where_slog_writes_it() -> None:
    """`level=` is the first one, within the first 60 characters; ` source=` follows within 40
    characters of it (slog writes time, level, source in that order)."""
    t = "time=2025-02-02T09:23:09.826+08:00"
    assert Stream().records(_slog(t + " level=INFO")) == [INFO]
    assert Stream().records(_slog("time= level=INFO")) == [INFO]  # an empty time
    # ` level=` ending at character 60, and one character later
    assert Stream().records(_slog("time=" + "x" * 48 + " level=INFO")) == [INFO]
    assert Stream().line(_slog("time=" + "x" * 49 + " level=INFO")) == ("unparsed", "no_adapter")
    # the first `level=` decides
    assert Stream().line(_slog(t + " level=TRACE level=INFO")) == ("unparsed", "no_adapter")
    # ` source=` ending 40 characters after ` level=` begins, and one character later
    assert Stream().records(_slog(t + " level=INFO" + " a=" + "x" * 18)) == [INFO]
    assert Stream().line(_slog(t + " level=INFO" + " a=" + "x" * 19)) == ("unparsed", "no_adapter")


def test_pre_slog_line_names_its_go_file_within_60_characters() -> None:
    """Ollama's 2023 lines (`2023/10/06 13:38:58 routes.go:572: ...`) are known by `.go:` ending by the
    60th character."""
    line = "2023/10/06 13:38:58 " + "r" * 36 + ".go:572: Listening on 127.0.0.1:11434 (version 0.1.3)"
    assert Stream().line(line) == ("ignored", None)
    assert Stream().line(line.replace("r.go", "rr.go")) == ("unparsed", "no_adapter")


# LiteLLM's router line (as in tests/unit/test_litellm_lines.py): a LiteLLM line names the stream LiteLLM's
LITELLM_LINE = "01:15:23 - LiteLLM Router:INFO: router.py:588 - litellm.completion(model=openai/gpt-4o-mini) 200 OK"


@pytest.mark.parametrize(("own", "register"), [
    (None, ("ignored", None)),  # the dump goes on: its register line is still the dump's
    (GIN_SHOW, ("unparsed", "no_adapter")),  # Ollama's next GIN line ended the dump
    (INFO_LINE, ("unparsed", "no_adapter")),  # ... or its next slog line
])
def test_crash_dump_lasts_until_ollamas_next_own_line_in_a_stream_shared_with_a_proxy(
        own: str | None, register: tuple[str, Any]) -> None:
    """LiteLLM in front of Ollama, one stream (docker compose): after Ollama's crash began, a LiteLLM
    line names the stream LiteLLM's; a register line is still the dump's until an Ollama line of its
    own (GIN or slog) ends the dump."""
    s = Stream()
    s.records(INFO_LINE)
    assert s.records("SIGSEGV: segmentation violation") == [CRASH_LOG, CRASH]
    if own is not None:
        s.records(own)
    s.records(LITELLM_LINE)
    assert s.shared["server"] == "litellm"
    assert s.line("rax    0x0") == register
