"""TGI's router and launcher lines, one at a time: the exact records each gives.

The `Success` lines are copied from tests/fixtures/samples/tgi.log and
tests/fixtures/accounting/tgi_adapter.reconstructed.log; each expected record is read off the line by
hand: the four durations in seconds, output tokens = round(inference_time / time_per_token), the
operation from the request span (`chat_completions` is chat; `generate`, `generate_stream`,
`compat_generate` and `completions` are text completion; `HTTP request`, `vertex_compatibility` and
`sagemaker_compatibility` wrap one of those). The other cases change one part of such a line (said
on each): what a user, a client or a cut line can put there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_exporter.adapters import IGNORED
from llm_exporter.adapters.base import Invalid
from llm_exporter.adapters.tgi import TgiAdapter
from llm_exporter.envelopes import Envelope
from llm_exporter.labels import OTHER
from llm_exporter.records import validate_record
from tests.helpers import FIXTURES

SAMPLE = (FIXTURES / "samples" / "tgi.log").read_text(encoding="utf-8").splitlines()
LORA = Path(FIXTURES / "accounting" / "tgi_adapter.reconstructed.log").read_text(encoding="utf-8").splitlines()
TS = "2024-11-03T14:51:27.393883Z"
PARAMS = ("GenerateParameters {{ best_of: None, temperature: None, repetition_penalty: None, frequency_penalty: None, "
          "top_k: None, top_p: None, typical_p: None, do_sample: false, max_new_tokens: Some(100), "
          "return_full_text: None, stop: {stop}, truncate: None, watermark: false, details: false, "
          "decoder_input_details: false, seed: Some(42), top_n_tokens: None, grammar: None, adapter_id: {adapter} }}")
TIMINGS = ('total_time="4.065504959s" validation_time="440.038965ms" queue_time="94.981µs" '
           'inference_time="3.625371193s" time_per_token="38.982485ms" seed="None"')
SUCCESS_TAIL = ": text_generation_router::server: router/src/server.rs:402: Success"
# the line of tgi_adapter.reconstructed.log, by hand: 4.065504959 s, 94.981 µs, 3.625371193 s, 38.982485 ms
TIMED = {"duration_s": 4.065504959, "queue_s": 94.981e-6, "inference_s": 3.625371193, "tpot_s": 0.038982485,
         "output_tokens": round(3.625371193 / 0.038982485)}  # 93


def params(stop: str = "[]", adapter: str = "None") -> str:
    return PARAMS.format(stop=stop, adapter=adapter)


def out(a: TgiAdapter, text: str) -> list[dict[str, Any]]:
    res = a.parse_text(text)
    assert res is not None and res is not IGNORED, text
    recs = res if isinstance(res, list) else [res]
    for r in recs:
        validate_record(r)
    return recs


def requests(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["kind"] == "request"]


def success(**fields: Any) -> dict[str, Any]:
    return {"kind": "request", "provider": "tgi", "operation": "text_completion", "model": "",
            "outcome": "success", "error_type": "", **fields}


# -- Success lines -------------------------------------------------------------------------------

@pytest.mark.parametrize(("lineno", "expected"), [
    (2, success(operation="chat", duration_s=0.735200735, queue_s=73.176e-6, inference_s=0.734172108,
                tpot_s=0.036708605, output_tokens=round(734.172108 / 36.708605))),  # 20
    (5, success(**TIMED)),
    # a generate span inside `HTTP request`
    (6, success(duration_s=0.986532642, queue_s=188.125e-6, inference_s=0.98566325, tpot_s=0.049283162,
                output_tokens=round(985.66325 / 49.283162))),  # 20
    # no timestamp
    (7, success(duration_s=0.357867572, queue_s=49.382e-6, inference_s=0.355849981, tpot_s=0.014827082,
                output_tokens=round(355.849981 / 14.827082))),  # 24
    # `compat_generate{...}:generate{...}` behind a docker compose prefix
    (8, success(duration_s=2.458150804, queue_s=184.26e-6, inference_s=2.444288229, tpot_s=0.061107205,
                output_tokens=round(2444.288229 / 61.107205))),  # 40
])
def test_a_real_success_line_is_one_finished_request(lineno: int, expected: dict[str, Any]) -> None:
    raw = Envelope().peel(SAMPLE[lineno - 1].encode())
    assert raw is not None
    recs = out(TgiAdapter(), raw.decode())
    assert recs == [pytest.approx(expected), {"kind": "log", "provider": "tgi", "level": "INFO"}]


def test_the_model_comes_from_the_launchers_args_line() -> None:
    """tgi.log line 26: `Args { model_id: "/model", ... }` names the model of every later request."""
    a = TgiAdapter()
    assert out(a, SAMPLE[25]) == [{"kind": "log", "provider": "tgi", "level": "INFO"}]
    assert out(a, SAMPLE[26])[0] == {"kind": "log", "provider": "tgi", "level": "INFO"}  # another launcher line
    [rec] = requests(out(a, SAMPLE[4]))
    assert rec["model"] == "/model"


ARGS_TAIL = ", revision: None, validation_workers: 2, sharded: None, num_shard: None"


@pytest.mark.parametrize(("message", "model"), [
    ('Args { model_id: "/model"' + ARGS_TAIL, "/model"),
    # a revision set: the next quoted value is not part of the model id
    ('Args { model_id: "/model", revision: Some("v1.0"), validation_workers: 2', "/model"),
    ('Args { model_id: "google/flan-t5-small", revision: Some("main")', "google/flan-t5-small"),
    ('Args { model_id: "", revision: Some("main")', ""),
    # a line cut inside the model id (a log viewer's width): no model
    ('Args { model_id: "/mod', ""),
    # the longest model id read is 255 characters; a longer one is left unread
    ('Args { model_id: "/' + "m" * 254 + '"' + ARGS_TAIL, "/" + "m" * 254),
    ('Args { model_id: "/' + "m" * 255 + '"' + ARGS_TAIL, ""),
    # not the Args line
    ('Starting shard with model_id: "/model"', ""),
    ('args { model_id: "/model"' + ARGS_TAIL, ""),
])
def test_the_args_line_gives_the_model_id_between_its_quotes(message: str, model: str) -> None:
    a = TgiAdapter()
    out(a, f"2023-11-01T13:37:03.610908Z  INFO text_generation_launcher: {message}")
    [rec] = requests(out(a, SAMPLE[4]))
    assert rec["model"] == model
    # the same message in --json-output (the launcher's shape, message under `fields`)
    j = TgiAdapter()
    line = orjson.dumps({"timestamp": "2024-02-21T05:09:46.814956Z", "level": "INFO", "fields": {"message": message},
                         "target": "text_generation_launcher"})
    j.parse_json(line, orjson.loads(line))
    [rec] = requests(out(j, SAMPLE[4]))
    assert rec["model"] == model


def test_a_router_line_quoting_args_does_not_name_the_model() -> None:
    a = TgiAdapter()
    out(a, '2024-02-14T06:49:38.688621Z  INFO text_generation_router: router/src/main.rs:1: Args { model_id: "x" }')
    [rec] = requests(out(a, SAMPLE[4]))
    assert rec["model"] == ""


@pytest.mark.parametrize(("line", "expected"), [
    # a span TGI may add that is not a request span of ours: a request of no named operation
    (f'{TS}  INFO embed{{{TIMINGS}}}{SUCCESS_TAIL}', success(operation="", **TIMED)),
    # no `file:line: ` before the message (an older router)
    (f"{TS}  INFO generate{{parameters={params()} {TIMINGS}}}: text_generation_router::server: Success",
     success(**TIMED)),
    # a field missing: the others are still read
    (f'{TS}  INFO generate{{total_time="2s" inference_time="1.5s" time_per_token="0.5s"}}{SUCCESS_TAIL}',
     success(duration_s=2.0, inference_s=1.5, tpot_s=0.5, output_tokens=3)),
    (f'{TS}  INFO generate{{total_time="2s" queue_time="1ms" time_per_token="0.5s"}}{SUCCESS_TAIL}',
     success(duration_s=2.0, queue_s=0.001, tpot_s=0.5)),
    (f'{TS}  INFO generate{{total_time="2s" inference_time="1.5s" time_per_token="0ns"}}{SUCCESS_TAIL}',
     success(duration_s=2.0, inference_s=1.5, tpot_s=0.0)),
    # a user agent (user text, printed unquoted) that imitates the timing fields changes nothing
    (f'{TS}  INFO HTTP request{{otel.name=POST /generate http.user_agent=x total_time="99s" queue_time="9s" '
     f'inference_time="9s" time_per_token="1s"}}:generate{{parameters={params()} {TIMINGS}}}{SUCCESS_TAIL}',
     success(**TIMED)),
])
def test_success_line_shapes(line: str, expected: dict[str, Any]) -> None:
    [rec] = requests(out(TgiAdapter(), line))
    assert rec == pytest.approx(expected)


@pytest.mark.parametrize(("line", "reason"), [
    (f"{TS}  INFO text_generation_router::server: router/src/server.rs:402: Success", "tgi_no_timings"),
    (f"{TS}  INFO generate{{parameters={params()}}}{SUCCESS_TAIL}", "tgi_no_timings"),
    (f'{TS}  INFO generate{{total_time="2" queue_time="1ms"}}{SUCCESS_TAIL}', "bad_duration"),  # no unit
    (f'{TS}  INFO generate{{total_time="2s" queue_time="soon"}}{SUCCESS_TAIL}', "bad_duration"),
    (f'{TS}  INFO generate{{total_time="2s" inference_time=""}}{SUCCESS_TAIL}', "bad_duration"),
])
def test_a_success_line_without_good_timings_is_invalid_with_its_reason(line: str, reason: str) -> None:
    with pytest.raises(Invalid) as e:
        TgiAdapter().parse_text(line)
    assert e.value.reason == reason


def test_a_json_success_without_total_time_is_invalid() -> None:
    obj = {"timestamp": "2024-12-10T21:50:03.478010Z", "level": "INFO", "message": "Success",
           "target": "text_generation_router::server", "span": {"queue_time": "73.176µs", "name": "generate"}}
    with pytest.raises(Invalid) as e:
        TgiAdapter().parse_json(orjson.dumps(obj), obj)
    assert e.value.reason == "tgi_no_timings"


# -- LoRA adapters -------------------------------------------------------------------------------

@pytest.mark.parametrize(("lineno", "adapter"), [
    (1, None), (2, "predibase/customer_support"), (3, "predibase/customer_support"), (4, "predibase/dbpedia")])
def test_a_success_line_names_its_lora_adapter(lineno: int, adapter: str | None) -> None:
    [rec] = requests(out(TgiAdapter(), LORA[lineno - 1]))
    assert rec.get("adapter") == adapter


@pytest.mark.parametrize(("adapter_field", "adapter"), [
    ('Some("predibase/dbpedia")', "predibase/dbpedia"),
    ('Some("")', None),
    ('Some("a\\"b")', None),  # Debug escapes a quote: not the name the client sent
    ('Some("/' + "a" * 377 + '")', "/" + "a" * 377),  # the longest read: 378 characters
    ('Some("/' + "a" * 378 + '")', None),
])
def test_the_adapter_is_the_last_field_of_the_parameters(adapter_field: str, adapter: str | None) -> None:
    line = f"{TS}  INFO generate{{parameters={params(adapter=adapter_field)} {TIMINGS}}}{SUCCESS_TAIL}"
    [rec] = requests(out(TgiAdapter(), line))
    assert rec.get("adapter") == adapter


def test_user_text_that_imitates_the_adapter_field_changes_nothing() -> None:
    """Stop strings and a user agent spelling `adapter_id: Some("...") }`: only the real field counts."""
    fake = 'adapter_id: Some("evil") }'
    stop = r'["adapter_id: Some(\"evil\") }"]'  # as Debug prints a stop string: its quotes escaped
    real = 'Some("x")'
    line = (f"{TS}  INFO HTTP request{{otel.name=POST /generate http.user_agent={fake}}}:generate{{parameters="
            f"{params(stop=stop, adapter=real)} {TIMINGS}}}{SUCCESS_TAIL}")
    [rec] = requests(out(TgiAdapter(), line))
    assert rec["adapter"] == "x"
    short = (f"{TS}  INFO HTTP request{{http.user_agent={fake}}}:generate{{parameters=GenerateParameters {{ "
             f'adapter_id: Some("x") }} {TIMINGS}}}{SUCCESS_TAIL}')
    [rec] = requests(out(TgiAdapter(), short))
    assert rec["adapter"] == "x"


# -- operations ----------------------------------------------------------------------------------

def chain_success(chain: str) -> str:
    return f"{TS}  INFO {chain} {TIMINGS}}}{SUCCESS_TAIL}"


@pytest.mark.parametrize(("chain", "operation"), [
    (f"generate_stream{{parameters={params()}", "text_completion"),
    (f"completions{{parameters={params()}", "text_completion"),
    (f"compat_generate{{default_return_full_text=true}}:generate{{parameters={params()}", "text_completion"),
    (f"sagemaker_compatibility:compat_generate{{default_return_full_text=true}}:generate{{parameters={params()}",
     "text_completion"),
    # stop strings that name request spans change nothing
    (f'sagemaker_compatibility:chat_completions:generate{{parameters={params(stop="[a:chat_completions{]")}',
     "chat"),
    (f'vertex_compatibility:chat_completions:generate{{parameters={params(stop="[x:generate{]")}', "chat"),
    (f'HTTP request{{otel.name=POST /v1/chat/completions}}:chat_completions{{parameters={params()}', "chat"),
    # a span whose name only starts like a request span's is not one
    (f"HTTP request{{otel.name=POST /}}:generateX{{parameters={params()}", ""),
    (f"HTTP request{{otel.name=POST /}}:generate_x:completions2{{parameters={params()}", ""),
])
def test_the_operation_is_the_request_span_of_the_chain(chain: str, operation: str) -> None:
    [rec] = requests(out(TgiAdapter(), chain_success(chain)))
    assert rec["operation"] == operation


@pytest.mark.parametrize(("end", "operation"), [(2000, "text_completion"), (2001, "")])
def test_the_request_span_is_looked_for_in_the_first_2000_characters_after_a_wrapper(end: int,
                                                                                      operation: str) -> None:
    """`HTTP request{...}` holds the client's user agent: the span inside it is looked for in 2000
    characters after the wrapper's name; here `:generate` ends at character 2000, then 2001."""
    head = "{otel.name=POST /generate http.user_agent="
    fields = head + "a" * (end - len(":generate") - len(head) - 1) + "}"
    assert len(fields + ":generate") == end
    line = chain_success(f"HTTP request{fields}:generate{{parameters={params()}")
    [rec] = requests(out(TgiAdapter(), line))
    assert rec["operation"] == operation


@pytest.mark.parametrize(("chain", "operation"), [
    ("vertex_compatibility:chat_completions", "chat"),
    ("sagemaker_compatibility:compat_generate{default_return_full_text=true}", "text_completion"),
])
def test_an_error_at_the_end_of_a_wrapper_chain_belongs_to_its_request_span(chain: str, operation: str) -> None:
    """`vertex_compatibility:chat_completions: target: message`: the chain ends at the request span."""
    a = TgiAdapter()
    assert out(a, f"{TS} ERROR {chain}: text_generation_router::infer: router/src/infer.rs:1: "
                  "no permits available") == []
    [rec] = requests(a.flush())
    assert (rec["operation"], rec["outcome"], rec["error_type"]) == (operation, "error", "overloaded")


def json_error(**extra: Any) -> tuple[bytes, dict[str, Any]]:
    obj = {"timestamp": "2023-12-07T13:57:23.464203Z", "level": "ERROR", "message": "no permits available",
           "target": "text_generation_router::infer", **extra}
    return orjson.dumps(obj), obj


@pytest.mark.parametrize(("extra", "operation"), [
    # `span` is the innermost span, `spans` the chain from the outermost: the outermost names the operation
    ({"span": {"name": "generate_stream"}, "spans": [{"name": "chat_completions"}, {"name": "generate_stream"}]},
     "chat"),
    ({"span": {"name": "chat_completions"}}, "chat"),  # no span list
    ({"span": {"name": "generate_stream"}, "spans": []}, "text_completion"),
    ({"span": {"name": "generate"}, "spans": ["generate"]}, "text_completion"),
    ({"spans": [{"name": "batch"}]}, ""),
])
def test_a_json_error_in_a_request_belongs_to_its_outermost_span(extra: dict[str, Any], operation: str) -> None:
    line, obj = json_error(**extra)
    recs = TgiAdapter().parse_json(line, obj)
    [rec] = requests(recs)
    assert (rec["operation"], rec["outcome"], rec["error_type"]) == (operation, "error", "overloaded")


# -- errors --------------------------------------------------------------------------------------

def test_a_client_gone_away_outside_a_span_is_an_aborted_text_completion() -> None:
    """tests/fixtures/corpus/tgi.log lines 2-7: six `Receiver dropped`, six aborted requests."""
    corpus = (FIXTURES / "corpus" / "tgi.log").read_text(encoding="utf-8").splitlines()
    a, env = TgiAdapter(), Envelope()
    recs: list[dict[str, Any]] = []
    for ln in corpus[1:7]:
        raw = env.peel(ln.encode())
        assert raw is not None
        recs += out(a, raw.decode())
    recs += a.flush()
    assert requests(recs) == [{"kind": "request", "provider": "tgi", "operation": "text_completion", "model": "",
                               "outcome": "aborted", "error_type": ""}] * 6


@pytest.mark.parametrize(("message", "operation"), [
    ("no permits available", ""),   # one request failed, outside any request span: no operation known
    ("x" * 183 + " Receiver dropped.", "text_completion"),  # `receiver dropped` ends at character 200
    ("x" * 184 + " Receiver dropped.", ""),
])
def test_a_request_error_outside_a_span(message: str, operation: str) -> None:
    a = TgiAdapter()
    out(a, f"{TS} ERROR text_generation_router::server: router/src/server.rs:902: {message}")
    [rec] = requests(a.flush())
    assert rec["operation"] == operation and rec["outcome"] in ("error", "aborted")


def test_the_target_is_the_first_one_when_the_message_quotes_a_path() -> None:
    """A message that quotes `text_generation_server/...` is still the router client's message."""
    a = TgiAdapter()
    out(a, "2025-05-26T10:46:35.221647Z ERROR batch{batch_size=1}:prefill:prefill{id=622 size=1}: "
           "text_generation_router_v3::client: backends/v3/src/client/mod.rs:45: Server error: CUDA out of memory "
           "at: text_generation_server/models/flash_causal_lm.py")
    [log] = a.flush()
    assert log == {"kind": "log", "provider": "tgi", "level": "ERROR", "error_type": "oom"}


def test_the_file_and_line_are_not_part_of_the_message() -> None:
    """`router/src/infer.rs:110: ` is cut before the message is classified (its first 400 characters)."""
    a = TgiAdapter()
    out(a, f"{TS} ERROR generate{{parameters={params()}}}: text_generation_router::infer: router/src/infer.rs:110: "
           + "a " * 190 + "x: must be <= 2048")  # `must be <=` at characters 383-393 of the message
    [rec] = requests(a.flush())
    assert (rec["outcome"], rec["error_type"]) == ("error", "validation")


FRAMES = ['  File "/opt/conda/lib/python3.11/site-packages/text_generation_server/models/flash_causal_lm.py", '
          f'line {n}, in forward' for n in range(1, 9)]
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
NEXT = "2024-08-01T17:14:53.000000Z  INFO text_generation_router::server: router/src/server.rs:1: Connected"


def feed(a: TgiAdapter, lines: list[str]) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    for ln in lines:
        recs += out(a, ln)
    return recs


@pytest.mark.parametrize(("after", "error_type"), [(0, "oom"), (19, "oom"), (20, "engine_dead")])
def test_a_shard_failure_is_classified_by_the_exception_in_its_last_20_lines(after: int, error_type: str) -> None:
    """tgi.log line 11 and the traceback the launcher relays after it: past the first 400 characters,
    the exception line names the class when it is among the record's last 20 lines."""
    lines = [SAMPLE[10], "Traceback (most recent call last):", *FRAMES, OOM, *[" rank=0"] * after, NEXT]
    recs = feed(TgiAdapter(), lines)
    assert [r for r in recs if r["kind"] == "server_error"] == [
        {"kind": "server_error", "provider": "tgi", "error_type": error_type}]
    assert requests(recs) == []


def test_a_failed_request_is_classified_by_the_exception_past_400_characters() -> None:
    a = TgiAdapter()
    head = ("2025-05-26T10:46:34.737206Z ERROR chat_completions:generate:generate_stream:schedule:infer:send_error: "
            "text_generation_router_v3::backend: backends/v3/src/backend.rs:1: "
            "Request failed during generation: Server error: ")
    [rec] = requests(feed(a, [head, "Traceback (most recent call last):", *FRAMES, OOM, NEXT]))
    assert rec == {"kind": "request", "provider": "tgi", "operation": "chat", "model": "", "outcome": "error",
                   "error_type": "oom"}


# -- records over several lines ------------------------------------------------------------------

def test_a_router_info_line_takes_no_continuation_lines() -> None:
    a = TgiAdapter()
    out(a, SAMPLE[0])  # `Connected`
    assert a.parse_text("some other program's output") is None


def test_a_launcher_line_with_an_empty_message_takes_the_lines_after_it() -> None:
    """`text_generation_launcher:` with nothing after it (its trailing space trimmed): the shard's
    output relayed on the next, unprefixed lines belongs to it."""
    a = TgiAdapter()
    assert out(a, "2024-03-06T17:53:31.052367Z  INFO shard-manager: text_generation_launcher:") == [
        {"kind": "log", "provider": "tgi", "level": "INFO"}]
    assert a.parse_text(" rank=0") == []


def test_a_record_takes_at_most_200_lines() -> None:
    a = TgiAdapter()
    out(a, "2025-05-01T01:31:14.787487Z DEBUG generate{parameters=GenerateParameters { }}: "
           "text_generation_router::server: router/src/server.rs:291: Input: <|im_start|>system")
    for _ in range(199):
        assert a.parse_text("a prompt line") == []
    assert a.parse_text("a prompt line") is None


def test_an_unknown_error_class_is_other() -> None:
    a = TgiAdapter()
    out(a, f"{TS} ERROR text_generation_router::server: router/src/server.rs:1: something odd")
    assert a.flush() == [{"kind": "log", "provider": "tgi", "level": "ERROR", "error_type": OTHER}]


# -- `--json-output`: what a line's level and span say -------------------------------------------

JSON_LINES = (FIXTURES / "samples" / "tgi_json.log").read_text(encoding="utf-8").splitlines()
RECONSTRUCTED = (FIXTURES / "samples" / "tgi.reconstructed.log").read_text(encoding="utf-8").splitlines()


def json_res(obj: dict[str, Any], a: TgiAdapter | None = None) -> Any:
    return (a or TgiAdapter()).parse_json(orjson.dumps(obj), obj)


@pytest.mark.parametrize(("level", "expected"), [
    # the launcher's `Starting download process.` (tgi_json.log line 2) at each of TGI's levels and
    # at levels TGI never writes: a level that is none of TGI's is no log line of a known level
    ("INFO", [{"kind": "log", "provider": "tgi", "level": "INFO"}]),
    ("WARN", [{"kind": "log", "provider": "tgi", "level": "WARNING"}]),
    ("info", IGNORED), ("NOTICE", IGNORED), (5, IGNORED), (None, IGNORED),
])
def test_a_json_line_is_a_log_line_of_its_level_when_it_is_one_of_tgis(level: Any, expected: Any) -> None:
    obj = orjson.loads(JSON_LINES[1])
    assert obj["fields"]["message"] == "Starting download process."
    obj["level"] = level
    res = json_res(obj)
    assert res is expected if expected is IGNORED else res == expected


@pytest.mark.parametrize("fields", ["Starting download process.", ["Starting"], None])
def test_a_json_line_without_a_message_is_ignored(fields: Any) -> None:
    """tgi_json.log line 2 with its `fields` garbled (not an object): no message, nothing counted."""
    obj = orjson.loads(JSON_LINES[1])
    obj["fields"] = fields
    assert json_res(obj) is IGNORED


@pytest.mark.parametrize("span", [None, "chat_completions", ["chat_completions"]])
def test_a_json_success_without_a_span_object_is_invalid(span: Any) -> None:
    obj = orjson.loads(RECONSTRUCTED[0])
    if span is None:
        del obj["span"]
    else:
        obj["span"] = span
    with pytest.raises(Invalid) as e:
        json_res(obj)
    assert e.value.reason == "tgi_no_timings"


@pytest.mark.parametrize(("name", "operation"), [
    ("chat_completions", "chat"),
    # a span TGI may add later, or a name garbled on its way: a request of no known operation
    ("generate_inner", ""), (7, ""), (["generate"], ""), (None, ""),
])
def test_a_json_success_takes_its_operation_from_its_span_name(name: Any, operation: str) -> None:
    """tgi.reconstructed.log line 1, by hand: 735.200735 ms, 73.176 µs, 734.172108 ms, 36.708605 ms,
    734.172108 / 36.708605 = 20.00 tokens."""
    obj = orjson.loads(RECONSTRUCTED[0])
    obj["span"]["name"] = name
    [rec, log] = json_res(obj)
    assert rec == pytest.approx({"kind": "request", "provider": "tgi", "operation": operation, "model": "",
                                 "outcome": "success", "error_type": "", "duration_s": 0.735200735,
                                 "queue_s": 73.176e-6, "inference_s": 0.734172108, "tpot_s": 0.036708605,
                                 "output_tokens": 20})
    assert log == {"kind": "log", "provider": "tgi", "level": "INFO"}


# -- text lines: short ones, and how much of a record's tail is read ------------------------------

@pytest.mark.parametrize("line", ["INFO x", "WARN 1", "ERROR", "INFO", "DEBUG a"])
def test_a_short_line_that_starts_with_a_level_is_no_tgi_line(line: str) -> None:
    assert TgiAdapter().parse_text(line) is None


REQUEST_FAILED = ("2025-05-26T10:46:34.737206Z ERROR chat_completions:generate:generate_stream:schedule:infer:"
                  "send_error: text_generation_router_v3::backend: backends/v3/src/backend.rs:1: "
                  "Request failed during generation: Server error: ")


@pytest.mark.parametrize(("before", "error_type"), [(38, "oom"), (39, OTHER)])
def test_a_failed_request_is_classified_by_its_first_40_lines(before: int, error_type: str) -> None:
    """The error line and the 39 lines after it are read for its class; a later exception line is not."""
    recs = feed(TgiAdapter(), [REQUEST_FAILED, *[" rank=0"] * before, OOM, NEXT])
    assert requests(recs) == [{"kind": "request", "provider": "tgi", "operation": "chat", "model": "",
                               "outcome": "error", "error_type": error_type}]


def test_a_bare_exception_name_ends_a_failed_requests_traceback() -> None:
    """Python prints `MemoryError` alone when the host runs out of memory: past the first 400
    characters, that line alone names the class, and it is part of the record, not a launcher exit."""
    recs = feed(TgiAdapter(), [REQUEST_FAILED, "Traceback (most recent call last):", *FRAMES, "MemoryError", NEXT])
    assert [r for r in recs if r["kind"] != "log"] == [
        {"kind": "request", "provider": "tgi", "operation": "chat", "model": "", "outcome": "error",
         "error_type": "oom"}]


def test_a_timestamp_with_an_offset_is_not_tgis() -> None:
    """TGI writes its timestamps in UTC, ending in `Z`; the launcher's Args line of tgi_json.log
    with a `+00:00` offset instead is another program's line."""
    assert TgiAdapter().parse_text('2024-02-21T05:09:46.814956+00:00  INFO text_generation_launcher: '
                                   'Args { model_id: "google/flan-t5-small", revision: None }') is None
