"""Envelopes: CRI, docker json-file, docker timestamps, compose and journald prefixes, ANSI."""

from __future__ import annotations

import orjson
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
