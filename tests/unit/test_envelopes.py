"""Envelopes: CRI, docker json-file, docker timestamps, compose and journald prefixes, ANSI."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from llm_exporter.envelopes import Envelope, peel
from llm_exporter.pipeline import Pipeline
from tests.helpers import FIXTURES, SAMPLES

APP = b'{"request_id":"r1","model":"m","status":"success","duration_ms":120,"output_tokens":7}'


def test_bare_json_line_is_returned_unchanged() -> None:
    """A bare JSON line is the very same object (the hot path does no work)."""
    assert peel(APP) is APP


def test_cri_full_line_is_peeled() -> None:
    """A CRI `F` line gives its message."""
    assert peel(b"2026-01-01T00:00:00.123456789Z stdout F " + APP) == APP


def test_cri_partials_are_joined_per_stream() -> None:
    """`P` fragments join the next fragments of the same stream; other streams pass between them."""
    env = Envelope()
    assert env.peel(b"2026-01-01T00:00:00.1Z stdout P " + APP[:20]) is None
    assert env.peel(b"2026-01-01T00:00:00.2Z stderr F other") == b"other"
    assert env.peel(b"2026-01-01T00:00:00.3Z stdout P " + APP[20:50]) is None
    assert env.peel(b"2026-01-01T00:00:00.4Z stdout F " + APP[50:]) == APP


def test_cri_partial_without_end_is_handed_out_on_flush() -> None:
    """A fragment still held at end of stream comes out of flush()."""
    env = Envelope()
    assert env.peel(b"2026-01-01T00:00:00Z stderr P half") is None
    assert env.flush() == [b"half"]
    assert env.flush() == []


def test_docker_json_file_entry_gives_inner_log() -> None:
    """The `log` text of a docker json-file entry is the line, without its newline."""
    entry = orjson.dumps({"log": APP.decode() + "\n", "stream": "stdout", "time": "2026-01-01T00:00:00Z"})
    assert peel(entry) == APP


def test_docker_json_file_split_entries_are_joined() -> None:
    """Docker splits long lines into entries without a trailing newline; they are joined."""
    env = Envelope()
    a = orjson.dumps({"log": APP[:30].decode(), "stream": "stdout", "time": "t"})
    b = orjson.dumps({"log": APP[30:].decode() + "\n", "stream": "stdout", "time": "t"})
    assert env.peel(a) is None
    assert env.peel(b) == APP


def test_docker_json_file_with_ansi_and_text_inside() -> None:
    """Colour codes inside the docker `log` text are stripped after unwrapping."""
    entry = orjson.dumps({"log": "\x1b[32mINFO\x1b[0m 04-06 00:55:29 hello\n", "stream": "stderr",
                          "time": "t"})
    assert peel(entry) == b"INFO 04-06 00:55:29 hello"


def test_app_json_with_a_log_field_is_left_alone() -> None:
    """A JSON line that merely starts with a `log` key, but is no docker entry, is unchanged."""
    line = b'{"log":{"a":1},"model":"m"}'
    assert peel(line) is line


def test_compose_prefix_is_peeled() -> None:
    """`name  | ` from docker-compose, with its colour codes, is peeled."""
    assert peel(b"\x1b[36mvllm-1  |\x1b[0m " + APP) == APP
    assert peel(b"llama-cpp       | [34255] 0.11.522.258 I slot") == b"[34255] 0.11.522.258 I slot"


def test_journald_prefix_is_peeled() -> None:
    """A journald short prefix `Mon DD HH:MM:SS host unit[pid]: ` is peeled."""
    line = b"Dec 02 12:10:29 kamala llama-server[24689]: request: POST /chat/completions 127.0.0.1 200"
    assert peel(line) == b"request: POST /chat/completions 127.0.0.1 200"


def test_leading_timestamps_are_peeled_whoever_wrote_them() -> None:
    """`docker logs -t` stamps and TGI's own RFC3339 stamp both come off; the level stays."""
    tgi = b"2024-12-10T21:49:50.317182Z  INFO text_generation_router::server: Connected"
    tgi_err = b"2024-05-21T06:25:30.209697Z ERROR text_generation_router::infer: no permits available"
    assert peel(tgi) == b"INFO text_generation_router::server: Connected"
    assert peel(tgi_err) == b"ERROR text_generation_router::infer: no permits available"
    assert peel(b"2025-04-06T07:55:29.219474213Z " + tgi) == b"INFO text_generation_router::server: Connected"
    assert peel(b"2025-04-06T07:55:29.219474213Z INFO 04-06 00:55:29 engine") == b"INFO 04-06 00:55:29 engine"


def test_stacked_wrappers_are_all_peeled() -> None:
    """compose around docker timestamps around the line."""
    assert peel(b"app-1  | 2025-04-06T07:55:29.2194742Z " + APP) == APP


def test_real_samples_keep_their_payload() -> None:
    """On the real samples, every peeled line is a suffix of its original (only prefixes go)."""
    paths = sorted(SAMPLES.glob("*.log"))
    assert {"vllm.log", "tgi.log", "sglang.log", "llamacpp.log", "ollama.log"} <= {p.name for p in paths}
    for path in [*paths, *sorted((FIXTURES / "corpus").glob("*.log"))]:
        for raw in path.read_bytes().splitlines():
            if b"\x1b[" in raw or b"#033[" in raw:
                continue
            out = peel(raw)
            assert raw.endswith(out), (path.name, raw)


def test_pipeline_counts_cri_fragments_once_and_parses_the_joined_line(
        pipeline: Pipeline, registry: CollectorRegistry) -> None:
    """Three physical CRI lines: two held fragments (ignored) and one joined record."""
    lines = [b"2026-01-01T00:00:00Z stdout P " + APP[:10], b"2026-01-01T00:00:00Z stdout P " + APP[10:40],
             b"2026-01-01T00:00:00Z stdout F " + APP[40:]]
    pipeline.process("file", lines)
    m = pipeline.metrics
    assert m.internal.lines[("file", "record")] == 1
    assert m.internal.lines[("file", "ignored")] == 2
    requests = [s.value for fam in registry.collect() for s in fam.samples if s.name == "llm_requests_total"]
    assert sum(requests) == 1


_bare = st.binary(max_size=200).filter(
    lambda b: b"\x1b" not in b and b"\r" not in b and not b[:1].isdigit() and not b[:1].isalnum()
    and b[:1] not in (b"[", b"^", b"#", b" ", b"\t"))


@given(st.binary(max_size=300))
def test_peel_never_raises_and_returns_a_suffix_or_fragment(raw: bytes) -> None:
    """Any bytes: peel returns bytes, never raises; a stateful envelope may hold a fragment."""
    out = peel(raw)
    assert isinstance(out, bytes)
    env = Envelope()
    r = env.peel(raw)
    assert r is None or isinstance(r, bytes)


@given(st.dictionaries(st.text(max_size=8), st.integers(-(2**53), 2**53) | st.text(max_size=10), max_size=5))
def test_peel_is_identity_on_bare_json_objects(obj: dict[str, object]) -> None:
    """A JSON object line that is not a docker entry comes back unchanged."""
    line = orjson.dumps(obj)
    if line.startswith(b'{"log":'):
        return
    assert peel(line) is line


@given(_bare)
def test_peel_is_identity_on_lines_without_a_wrapper_start(raw: bytes) -> None:
    """Lines that start with neither a digit, a letter nor `{` and carry no ANSI are unchanged."""
    if raw[:1] == b"{":
        return
    assert peel(raw) is raw


# -- any stack of wrappers around a known line peels to the same line --------------------------------

KNOWN = [
    b'2024-12-10T21:50:03.478010Z  INFO chat_completions{total_time="735.200735ms" validation_time="1.028627ms"'
    b' queue_time="68.923\xc2\xb5s" inference_time="734.172108ms" time_per_token="36.708605ms" seed="None"}:'
    b" text_generation_router::server: router/src/server.rs:622: Success",
    b"(APIServer pid=1) INFO 05-19 10:13:31 [loggers.py:271] Engine 000: Avg prompt throughput: 0.0 tokens/s,"
    b" Avg generation throughput: 44.9 tokens/s, Running: 2 reqs, Waiting: 0 reqs, GPU KV cache usage: 8.1%",
    b"[2025-06-25 14:02:04 TP0] Prefill batch. #new-seq: 1, #new-token: 2266, #cached-token: 1, token usage:"
    b" 0.00, #running-req: 0, #queue-req: 0",
    b"29.23.338.119 E srv    send_error: task id = 64, error: Context size has been exceeded.",
    b'[GIN] 2025/03/17 - 07:09:31 | 200 |         1m10s |   192.168.1.3 | POST     "/api/chat"',
    b'[INFO] Request 192.168.10.5 "POST /v1/chat/completions HTTP/1.0" 401 67 "curl/8.17.0" 90.222534ms',
    b'time=2025-07-16T20:07:57.610+02:00 level=ERROR source=sched.go:489 msg="error loading llama server"',
    APP,
]

_date = st.builds(lambda y, m, d: f"{y}-{m:02d}-{d:02d}", st.integers(2023, 2027), st.integers(1, 12),
                  st.integers(1, 28))
_time = st.builds(lambda h, m, s: f"{h:02d}:{m:02d}:{s:02d}", st.integers(0, 23), st.integers(0, 59),
                  st.integers(0, 59))
_frac = st.sampled_from(["", ".1", ".123", ",843", ".219474213"])
_zone = st.sampled_from(["", "Z", "+02:00", "-0500"])
_month = st.sampled_from(["Jan", "Dec", "janv.", "mar", "févr.", "Mai"])
_name = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)


@st.composite
def _wrapper(draw: st.DrawFn) -> tuple[str, object]:
    """One wrapper of a shape collectors and viewers really add, with drawn values."""
    kind = draw(st.sampled_from(["iso", "viewer", "bracket", "syslog", "short_iso", "compose", "compose_svc",
                                 "ansi", "ansi_bare", "ansi_caret", "ansi_033", "progress", "cri", "docker",
                                 "gcp_text_payload", "gcp_chip", "message"]))
    d, t, f, z = draw(_date), draw(_time), draw(_frac), draw(_zone)
    host, unit, pid = draw(_name), draw(_name), draw(st.integers(1, 99999))
    return kind, (d, t, f, z, host, unit, pid, draw(_month), draw(st.integers(1, 28)))


def _wrap(line: bytes, w: tuple[str, object]) -> bytes:
    kind, vals = w
    d, t, f, z, host, unit, pid, month, day = vals  # type: ignore[misc]
    if kind == "iso":
        return f"{d}T{t}{f}{z} ".encode() + line
    if kind == "viewer":
        return f"{d} {t}.{pid % 1000:03d} - ".encode() + line
    if kind == "bracket":
        return f"[{d} {t}] ".encode() + line
    if kind == "syslog":
        return f"{month} {day:2d} {t}{f.replace(',', '.')} {host} {unit}[{pid}]: ".encode() + line
    if kind == "short_iso":
        return f"{d}T{t}+0100 {host} {unit}[{pid}]: ".encode() + line
    if kind == "compose":
        return f"{host}-1  | ".encode() + line
    if kind == "compose_svc":
        return f"[{host}] | ".encode() + line
    if kind == "ansi":
        return b"\x1b[1;36m" + line + b"\x1b[0m"
    if kind == "ansi_bare":
        return b"[1;36m" + line + b"[0m"
    if kind == "ansi_caret":
        return b"^[[1;36m" + line + b"^[[0m"
    if kind == "ansi_033":
        return b"#033[2m" + line + b"#033[0m"
    if kind == "progress":
        return b"Loading safetensors checkpoint shards: 100% Completed | 4/4 [00:02<00:00]\r" + line
    if kind == "cri":
        return f"{d}T{t}.{pid}Z stdout F ".encode() + line
    if kind == "docker":
        return orjson.dumps({"log": line.decode() + "\n", "stream": "stderr", "time": f"{d}T{t}Z"})
    if kind == "gcp_text_payload":
        return orjson.dumps({"insertId": f"{pid:x}", "resource": {"type": "k8s_container",
                             "labels": {"container_name": unit}}, "textPayload": line.decode(),
                             "timestamp": f"{d}T{t}Z", "severity": "INFO"})
    if kind == "gcp_chip":
        return f"[resource.labels.container_name: {unit}] ".encode() + line
    assert kind == "message"
    return b"    MESSAGE=" + line


@given(st.sampled_from(KNOWN), st.lists(_wrapper(), min_size=1, max_size=4))
def test_any_stack_of_wrappers_peels_to_the_same_line(line: bytes, stack: list[tuple[str, object]]) -> None:
    """Wrap a real server line in up to four wrappers, innermost first, in any order: it peels to what
    the bare line peels to, and the pipeline makes the same records of it."""
    wrapped = line
    for w in stack:
        wrapped = _wrap(wrapped, w)
    assert peel(wrapped) == peel(line), (stack, wrapped)


@given(st.sampled_from(KNOWN), st.lists(_wrapper(), min_size=1, max_size=3))
def test_wrapped_lines_give_the_same_records(line: bytes, stack: list[tuple[str, object]]) -> None:
    """The records of a wrapped line equal those of the bare line (fresh pipelines for both)."""
    wrapped = line
    for w in stack:
        wrapped = _wrap(wrapped, w)

    def records(raw: bytes) -> object:
        p = Pipeline(_metrics())
        st_ = p._state("s")
        return p._one(st_, raw)

    assert records(wrapped) == records(line)


def _metrics() -> object:
    from llm_exporter.metrics import LLMMetrics

    return LLMMetrics()


def test_bare_colour_around_nested_docker_keeps_the_json_escapes() -> None:
    """A coloured TGI line in docker json-file twice (a shipper's own stdout logged by docker),
    the whole shown with its ESC bytes lost: the `\\\\u001b[1;36m` inside is the nested JSON's escape
    of an escaped backslash, not a colour code to cut (cutting it left a lone backslash and the
    envelopes unread). Found by hypothesis in the stack test above."""
    line = next(k for k in KNOWN if b"735.200735ms" in k)
    inner = orjson.dumps({"log": "\x1b[1;36m" + line.decode() + "\x1b[0m\n", "stream": "stderr",
                          "time": "2023-01-01T00:00:00Z"})
    outer = orjson.dumps({"log": inner.decode() + "\n", "stream": "stderr", "time": "2023-01-01T00:00:00Z"})
    assert b"\\\\u001b[1;36m" in outer
    assert peel(b"[1;36m" + outer + b"[0m") == peel(line)


def test_bare_colour_around_a_compose_service_named_m() -> None:
    """`[m] | ` is compose's prefix of a service named `m`, not an ESC-less colour reset followed by
    `] | `: inside an ESC-less colour it still peels (found by hypothesis in the stack test)."""
    line = b"INFO:     127.0.0.1:40042 - \"POST /v1/chat/completions HTTP/1.1\" 200 OK"
    assert peel(b"[1;36m[m] | " + line + b"[0m") == peel(line) == line


# -- wrappers of every shape, worked out by hand ---------------------------------------------------

VLLM_LINE = (b"(APIServer pid=1) INFO 05-19 10:13:31 [loggers.py:271] Engine 000: Avg prompt throughput: 0.0"
             b" tokens/s, Avg generation throughput: 44.9 tokens/s, Running: 2 reqs, Waiting: 0 reqs")
# tests/fixtures/samples/ollama.log, line 3, and the same line as gin's default logger writes it on a
# terminal (`[GIN] %v |%s %3d %s| %13v | %15s |%s %-7s %s %#v`: 4xx status yellow, POST cyan)
GIN = b'[GIN] 2024/07/21 - 15:52:51 | 403 |            0s |       127.0.0.1 | POST     "/api/generate"'
GIN_COLOUR = (b"[GIN] 2024/07/21 - 15:52:51 |\x1b[90;43m 403 \x1b[0m|            0s |       127.0.0.1 |"
              b'\x1b[97;46m POST    \x1b[0m "/api/generate"')
UVICORN = b'INFO:     127.0.0.1:40042 - "POST /v1/chat/completions HTTP/1.1" 200 OK'

WRAPPED = [
    # compose's `[service] | `, service names that start like no other wrapper; the vLLM line holds a
    # `] ` of its own within the first 68 bytes
    (b"[vllm] | " + VLLM_LINE, VLLM_LINE),
    (b"[ollama]   | " + GIN, GIN),
    # compose's `name | ` for a one-letter service
    (b"a | " + VLLM_LINE, VLLM_LINE),
    (b"a  | " + GIN, GIN),
    # journalctl -o verbose's field, at the start of a line and indented by a tab
    (b"MESSAGE=" + VLLM_LINE, VLLM_LINE),
    (b"\tMESSAGE=" + VLLM_LINE, VLLM_LINE),
    # colour inside a line that starts with a letter or `[`: gin's coloured status and method
    (GIN_COLOUR, GIN),
    (b"Oct 06 13:41:53 CX600 ollama[1992]: " + GIN_COLOUR, GIN),
    # a terminal's erase-line before a redrawn line, and uvicorn's coloured level with its first
    # ESC lost (the reset kept it)
    (b"\x1b[2K\r" + VLLM_LINE, VLLM_LINE),
    (b"\x1b[2K" + UVICORN, UVICORN),
    (b"[32mINFO\x1b[0m" + UVICORN[4:], UVICORN),
    # a coloured progress bar before `\r`: its colour is reset (`[m`, ESC lost) after the `\r`
    (b"Loading safetensors checkpoint shards: [32m100%|##########| 2/2\r[m" + VLLM_LINE, VLLM_LINE),
    # a timestamp with nothing after it: an empty line
    (b"2025-06-01T10:00:00.123456789Z", b""),
    (b"[2025-06-01 10:00:00]", b""),
]


@pytest.mark.parametrize(("raw", "inner"), WRAPPED)
def test_wrapped_lines_give_the_servers_line(raw: bytes, inner: bytes) -> None:
    """Each wrapper comes off, whatever the line starts with."""
    assert peel(raw) == inner
    assert Envelope().peel(raw) == inner


LONG_ID = b"chatcmpl-" + b"0123456789abcdef" * 3 + b"0123456789a"  # 68 bytes
UNWRAPPED = [
    # a server's JSON object that holds a Cloud Logging key, but does not start like an entry
    (b'{"event":"reply","textPayload":"hello","severity":"INFO"}',
     b'{"event":"reply","textPayload":"hello","severity":"INFO"}'),
    # `name | ` where the name runs past 67 bytes is no compose prefix (after a timestamp, so the
    # peeler looks at it)
    (b"2025-06-01T10:00:00Z " + LONG_ID + b" | 200 OK", LONG_ID + b" | 200 OK"),
]


@pytest.mark.parametrize(("raw", "inner"), UNWRAPPED)
def test_lines_that_only_look_wrapped_keep_what_is_not_a_wrapper(raw: bytes, inner: bytes) -> None:
    """Only a prefix of a known shape comes off: the server's own text stays."""
    assert peel(raw) == inner


STAMPS = [
    # (line, the timestamp the envelope read off it, the line left)
    (b"2026-01-01T00:00:00.123456789Z stdout F hello world", b"2026-01-01T00:00:00.123456789Z", b"hello world"),
    (b"Oct 06 13:41:53 CX600 ollama[1992]: " + GIN, b"Oct 06 13:41:53 ", GIN),
    (b"2025-06-01T10:00:00.123Z web-1  | " + UVICORN, b"2025-06-01T10:00:00.123Z ", UVICORN),
    (b"web-1  | 2025-06-01T10:00:00.123Z " + UVICORN, b"2025-06-01T10:00:00.123Z ", UVICORN),
    (b"web-1  | " + UVICORN, None, UVICORN),
    (UVICORN, None, UVICORN),
]


@pytest.mark.parametrize(("raw", "stamp", "inner"), STAMPS)
def test_the_stamp_is_the_timestamp_peeled_and_nothing_else(raw: bytes, stamp: bytes | None,
                                                            inner: bytes) -> None:
    """`stamp` (read by start/end pairing) is the timestamp taken off, never a compose name."""
    env = Envelope()
    assert env.peel(raw) == inner
    assert env.stamp == stamp
