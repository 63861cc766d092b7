"""Peel the wrappers that log collectors put around a server's own line.

Detected per line, on every source, possibly stacked (at most `MAX_LAYERS` deep):

- Kubernetes CRI (`/var/log/pods/...`): `<RFC3339Nano> stdout|stderr P|F <msg>`; `P` fragments are
  held and joined with the following fragments of the same stream up to the `F` fragment.
- Docker json-file: `{"log":"...\\n","stream":"stdout","time":"..."}`; the inner `log` text is the line
  (a `log` without its trailing newline is a fragment of a longer line, joined like CRI `P`).
- `docker logs --timestamps`: `<RFC3339Nano> ` before the line. TGI's own lines also start with an
  RFC3339 timestamp (microseconds, then its padded level): those are left alone.
- docker-compose: `name  | `; journald (syslog short): `Mon DD HH:MM:SS host unit[pid]: `.
- ANSI colour sequences (and their `#033[...m` rendering), anywhere in a non-JSON line.

Only prefixes are examined; the payload is never scanned beyond the ANSI check. The common case, a
bare JSON line, costs two byte comparisons. A line with no wrapper comes back unchanged (the same
object). `Envelope` carries the per-stream state (held fragments); `peel()` is the stateless form.
"""

from __future__ import annotations

import re

from llm_exporter.adapters.base import json_object

MAX_LAYERS = 4
#: the most bytes held for one joined line; fragments beyond it are dropped (the line stays bounded)
MAX_JOINED = 1 << 20

_ANSI = re.compile(rb"(?:\x1b\[[0-9;]*[A-Za-z]|#033\[[0-9;]*m)")
_TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(?:Z|[+-]\d\d:\d\d)"
_CRI = re.compile(_TS + rb" (stdout|stderr) ([PF])(?: |$)")
_DOCKER_TS = re.compile(_TS + rb" ")
_TGI_LEVEL = re.compile(rb"(?: INFO| WARN|ERROR|DEBUG|TRACE) ")
_JOURNALD = re.compile(rb"[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d \S+ [^\s\[:]+(?:\[\d+\])?: ")
_COMPOSE = re.compile(rb"[A-Za-z0-9][\w.-]* +\|(?: |$)")
_DOCKER_JSON = b'{"log":'


class Envelope:
    """Peels one stream's lines, holding CRI / docker fragments until their line is complete."""

    __slots__ = ("_held", "_held_len")

    def __init__(self) -> None:
        self._held: dict[bytes, list[bytes]] = {}
        self._held_len: dict[bytes, int] = {}

    def peel(self, raw: bytes) -> bytes | None:
        """The server's own line, or None while `raw` is a fragment held for joining."""
        if raw[:1] == b"{" and raw[:7] != _DOCKER_JSON:
            return raw  # the hot path: a bare JSON line
        line = raw
        for _ in range(MAX_LAYERS):
            first = line[:1]
            if first == b"{":
                if line[:7] != _DOCKER_JSON:
                    return line
                inner = _docker_json(line)
                if inner is None:
                    return line
                text, stream, complete = inner
                if not complete:
                    self._hold(stream, text)
                    return None
                line = self._join(stream, text)
                continue
            if b"\x1b[" in line or b"#033[" in line:
                line = _ANSI.sub(b"", line)
                first = line[:1]
            if first.isdigit():
                m = _CRI.match(line)
                if m is not None:
                    stream, msg = m.group(2), line[m.end():]
                    if m.group(3) == b"P":
                        self._hold(stream, msg)
                        return None
                    line = self._join(stream, msg)
                    continue
                m = _DOCKER_TS.match(line)
                if m is not None:
                    frac = m.group(1)
                    if frac is not None and len(frac) == 7 and _TGI_LEVEL.match(line, m.end()):
                        return line  # TGI's own timestamp, not a wrapper
                    line = line[m.end():]
                    continue
            elif first.isupper():
                m = _JOURNALD.match(line)
                if m is not None:
                    line = line[m.end():]
                    continue
            m = _COMPOSE.match(line)
            if m is not None:
                line = line[m.end():]
                continue
            return line
        return line

    def flush(self) -> list[bytes]:
        """Lines still held as fragments (end of stream): handed out as they are."""
        out = [b"".join(parts) for parts in self._held.values() if parts]
        self._held.clear()
        self._held_len.clear()
        return out

    def _hold(self, stream: bytes, part: bytes) -> None:
        size = self._held_len.get(stream, 0)
        if size + len(part) > MAX_JOINED:
            part = part[: max(0, MAX_JOINED - size)]
        self._held.setdefault(stream, []).append(part)
        self._held_len[stream] = size + len(part)

    def _join(self, stream: bytes, last: bytes) -> bytes:
        parts = self._held.pop(stream, None)
        if not parts:
            return last
        size = self._held_len.pop(stream, 0)
        parts.append(last[: max(0, MAX_JOINED - size)])
        return b"".join(parts)


def _docker_json(line: bytes) -> tuple[bytes, bytes, bool] | None:
    """(text, stream, complete) of a docker json-file entry, or None when `line` is not one."""
    obj = json_object(line)
    if obj is None:
        return None
    text = obj.get("log")
    stream = obj.get("stream", "")
    if type(text) is not str or type(stream) is not str or ("time" not in obj and not stream):
        return None
    raw = text.encode("utf-8", "surrogatepass")
    if raw[-1:] != b"\n":
        return raw, stream.encode(), False
    raw = raw[:-1]
    if raw[-1:] == b"\r":
        raw = raw[:-1]
    return raw, stream.encode(), True


def peel(line: bytes) -> bytes:
    """Stateless peel: the server's own line inside `line` (a CRI `P` fragment counts as whole)."""
    env = Envelope()
    out = env.peel(line)
    if out is None:
        held = env.flush()
        return held[0] if held else b""
    return out
