"""Envelopes, shape by shape: what makes a JSON line a docker json-file or Cloud Logging entry, the
line inside it, and the bound on a line joined from fragments."""

from __future__ import annotations

import orjson
import pytest

from llm_exporter.envelopes import MAX_JOINED, Envelope, peel

APP = b'{"request_id":"r1","model":"m","status":"success","duration_ms":120,"output_tokens":7}'
VLLM = (b"(APIServer pid=1) INFO 05-19 10:13:31 [loggers.py:271] Engine 000: Avg prompt throughput: 0.0 tokens/s,"
        b" Avg generation throughput: 44.9 tokens/s, Running: 2 reqs, Waiting: 0 reqs, GPU KV cache usage: 8.1%")
RESOURCE = {"type": "k8s_container", "labels": {"project_id": "p", "location": "europe-west4",
                                                "cluster_name": "gpu", "namespace_name": "llm",
                                                "pod_name": "vllm-0", "container_name": "vllm"}}
TS = "2025-06-01T10:00:00.123456789Z"


def entry(**fields: object) -> bytes:
    """A Cloud Logging entry as a log sink writes it: one JSON object, keys in the given order."""
    return orjson.dumps(fields)


# -- Cloud Logging ------------------------------------------------------------------------------------

# jsonPayload is the server's own JSON object when the entry says it is a log entry: any one of
# these fields of a LogEntry is enough
ENTRY_FIELDS = [
    {"resource": RESOURCE},
    {"logName": "projects/p/logs/stdout"},
    {"insertId": "1x9k2fqf5a3b7c"},
    {"timestamp": TS},
    {"severity": "INFO"},
]


@pytest.mark.parametrize("fields", ENTRY_FIELDS, ids=[next(iter(f)) for f in ENTRY_FIELDS])
def test_json_payload_of_a_log_entry_is_the_servers_json_line(fields: dict[str, object]) -> None:
    line = entry(jsonPayload=orjson.loads(APP), **fields)
    assert peel(line) == APP


def test_a_full_log_entry_gives_its_json_payload() -> None:
    line = entry(insertId="1x9k2fqf5a3b7c", jsonPayload=orjson.loads(APP), logName="projects/p/logs/stdout",
                 receiveTimestamp=TS, resource=RESOURCE, severity="INFO", timestamp=TS)
    assert peel(line) == APP


NOT_PAYLOADS = [
    # an application's own JSON that happens to have a jsonPayload field, and nothing of a LogEntry
    entry(jsonPayload=orjson.loads(APP), model="m"),
    # a payload that is no JSON object
    entry(jsonPayload="plain text", severity="INFO"),
    entry(jsonPayload=[1, 2], resource=RESOURCE),
    # an audit log entry: its protoPayload is no server line
    entry(insertId="-abc", logName="projects/p/logs/cloudaudit.googleapis.com%2Factivity",
          protoPayload={"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "methodName": "create"},
          resource=RESOURCE, severity="NOTICE", timestamp=TS),
]


@pytest.mark.parametrize("line", NOT_PAYLOADS)
def test_json_lines_without_a_server_payload_are_left_as_they_are(line: bytes) -> None:
    assert peel(line) is line


@pytest.mark.parametrize(("text", "inner"), [
    (VLLM.decode() + "\n", VLLM),
    (VLLM.decode() + "\r\n", VLLM),
    (VLLM.decode(), VLLM),
    ("Loaded adapter LoRA-X\n", b"Loaded adapter LoRA-X"),
    ("INFO waiting  \n", b"INFO waiting  "),  # only the line end comes off, not the spaces before it
    ("\u00b5s and \u00e9t\u00e9\n", "\u00b5s and \u00e9t\u00e9".encode()),
])
def test_text_payload_is_the_line_without_its_line_end(text: str, inner: bytes) -> None:
    line = entry(insertId="1x9k2fqf5a3b7c", resource=RESOURCE, textPayload=text, timestamp=TS)
    assert peel(line) == inner


def _with_payload_key_at(index: int) -> bytes:
    """An entry whose `textPayload"` key has its `Payload"` start at byte `index`."""
    head = b'{"insertId":"'
    filler = index - len(head) - len(b'","text')
    line = head + b"a" * filler + b'","textPayload":"' + APP.replace(b'"', b'\\"') + b'"}'
    assert line.index(b'Payload"') == index
    return line


def test_a_payload_key_is_looked_for_in_the_first_4096_bytes() -> None:
    """Only a line's head is searched for the payload key (the cost of a JSON line is bounded)."""
    assert peel(_with_payload_key_at(4096 - 8)) == APP  # its 8 bytes end at the 4096th
    far = _with_payload_key_at(4096 - 7)
    assert peel(far) is far


# -- docker json-file ---------------------------------------------------------------------------------

def docker(log: object, **fields: object) -> bytes:
    return orjson.dumps({"log": log, **fields})


@pytest.mark.parametrize(("line", "inner"), [
    (docker(APP.decode() + "\r\n", stream="stdout", time=TS), APP),  # a CRLF line end (Windows apps)
    (docker("\r\n", stream="stdout", time=TS), b""),
    (docker(APP.decode() + "\n", time=TS), APP),  # no stream: still an entry, it has its time
    (docker(APP.decode() + "\n", stream="stderr"), APP),  # no time: still an entry, it has its stream
    (docker(APP.decode() + "\n", stream="", time=TS), APP),
])
def test_docker_entry_gives_its_line_without_the_line_end(line: bytes, inner: bytes) -> None:
    assert peel(line) == inner


@pytest.mark.parametrize("line", [
    docker("hello\n"),  # an app's JSON with a `log` text: neither stream nor time
    docker("hello\n", stream="", level="info"),
    docker("hello\n", stream=1, time=TS),  # a stream that is no text
    docker("hello\n", stream=None, time=TS),
    docker({"msg": "hello"}, stream="stdout", time=TS),  # a log that is no text
    docker(None, stream="stdout", time=TS),
])
def test_json_lines_that_are_no_docker_entry_are_left_as_they_are(line: bytes) -> None:
    assert peel(line) is line


def test_docker_fragments_are_joined_per_stream() -> None:
    """Docker splits a long line into entries without a newline; another stream's lines may come
    between them and are no part of it."""
    env = Envelope()
    assert env.peel(docker(APP[:30].decode(), stream="stdout", time=TS)) is None
    assert env.peel(docker("other\n", stream="stderr", time=TS)) == b"other"
    assert env.peel(docker(APP[30:60].decode(), stream="stdout", time=TS)) is None
    assert env.peel(docker("late\n", stream="stderr", time=TS)) == b"late"
    assert env.peel(docker(APP[60:].decode() + "\n", stream="stdout", time=TS)) == APP
    assert env.flush() == []


def test_a_fragment_peeled_alone_is_its_text() -> None:
    """The stateless `peel` of a fragment gives the fragment (an empty one gives an empty line)."""
    assert peel(b"2026-01-01T00:00:00Z stdout P half") == b"half"
    assert peel(docker("half", stream="stdout", time=TS)) == b"half"
    assert peel(docker("", stream="stdout", time=TS)) == b""


# -- the bound on a joined line -----------------------------------------------------------------------

def _cri(part: bytes, final: bool, stream: str = "stdout") -> bytes:
    return f"2026-01-01T00:00:00.1Z {stream} {'F' if final else 'P'} ".encode() + part


def _payload(n: int, seed: int) -> bytes:
    """`n` letters, a different run for each `seed` (so a part cut or misplaced shows)."""
    abc = b"abcdefghijklmnopqrstuvwxyz"
    s = seed % 26
    return ((abc[s:] + abc[:s]) * (n // 26 + 1))[:n]


@pytest.mark.parametrize("sizes", [
    [600_000, 600_000, 10],  # the second fragment passes the bound
    [600_000, 600_000, 10, 10],  # fragments after the bound add nothing
    [MAX_JOINED, 1],  # the bound reached exactly by a fragment, then the final part
    [MAX_JOINED - 5, 5],  # exactly the bound with the final part: nothing cut
    [MAX_JOINED - 5, 6],  # one byte over with the final part
    [10, MAX_JOINED],  # the final part passes the bound
])
def test_a_line_joined_from_fragments_keeps_at_most_its_first_mib(sizes: list[int]) -> None:
    env = Envelope()
    parts = [_payload(n, i) for i, n in enumerate(sizes)]
    for p in parts[:-1]:
        assert env.peel(_cri(p, final=False)) is None
    joined = env.peel(_cri(parts[-1], final=True))
    whole = b"".join(parts)
    assert joined == whole[:MAX_JOINED]


def test_the_bound_on_a_held_line_is_per_stream_and_starts_again_after_it() -> None:
    env = Envelope()
    big = _payload(MAX_JOINED, 1)
    assert env.peel(_cri(big, final=False)) is None
    assert env.peel(_cri(b"tail", final=False)) is None
    assert env.peel(_cri(b"err", final=False, stream="stderr")) is None
    assert env.flush() == [big, b"err"]  # end of stream: held lines as they are, bounded
    # the next line of the stream starts from nothing held
    assert env.peel(_cri(b"one", final=False)) is None
    assert env.peel(_cri(b"two", final=True)) == b"onetwo"


def test_held_docker_fragments_are_bounded_too() -> None:
    env = Envelope()
    a, b = _payload(700_000, 2).decode(), _payload(700_000, 3).decode()
    assert env.peel(docker(a, stream="stdout", time=TS)) is None
    assert env.peel(docker(b + "\n", stream="stdout", time=TS)) == (a + b).encode()[:MAX_JOINED]
