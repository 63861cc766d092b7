"""Peel the wrappers that collectors, terminals and log viewers put around a server's own line.

One general peeler: each round looks at the first byte of what is left and removes at most one
prefix of a known *shape*, until nothing more comes off (at most `MAX_LAYERS` rounds), so any
stack of wrappers peels. The shapes:

- JSON envelopes: docker json-file `{"log":"...\\n","stream":...}` (a `log` without its newline is a
  fragment of a longer line, held and joined); Google Cloud Logging entries (`textPayload` is the
  line; `jsonPayload` is the server's own JSON object).
- Kubernetes CRI `<RFC3339Nano> stdout|stderr P|F <msg>`; `P` fragments are held and joined with
  the following fragments of the same stream up to the `F` fragment.
- A leading timestamp: ISO 8601 with `T` or a space, optional fraction (`.` or `,`), optional
  offset or `Z` and an optional zone word (`UTC`); bracketed (`[2025-01-02 03:04:05]`, except
  before a uvicorn access line: that is SGLang's own prefix, which names the server); each
  followed by spaces and optionally `- ` or `| ` (log viewers). After one, journald's
  `host unit[pid]: ` (short-iso) comes off too.
- syslog / journald short and short-precise: `Mon DD HH:MM:SS[.ffffff] host unit[pid]: `, with any
  locale's month word (`janv.`, `mar`); `journalctl -o verbose`'s `MESSAGE=`.
- docker-compose `name-1  | ` and `[service] | `; Cloud Logging's `[resource.labels...]` chips.
- ANSI colour: ESC sequences anywhere, and, on a line that starts with one, the renderings
  with the ESC byte lost (`[1;36m`), caret-rendered (`^[[1;36m`) or syslog-escaped (`#033[1;36m`).
- A progress bar glued in front by `\\r`: the text after the last `\\r` is the line.

Only prefixes are examined: a bare line costs a dispatch on its first byte and two byte searches
(`\\r`, ESC); a bare JSON object line costs two comparisons. Server-owned prefixes that are not
wrappers (SGLang's `[date TP0]`, vLLM's `(APIServer pid=1)`, llama.cpp's `[port]`, Ollama's `[GIN]`,
Go's `2024/05/12 06:47:18`) are left to the adapters. A line with no wrapper comes back unchanged
(the same object). `Envelope` carries the per-stream state (held fragments); `peel()` is the
stateless form.
"""

from __future__ import annotations

import re

import orjson

from llm_exporter.adapters.base import json_object

MAX_LAYERS = 8
#: the most bytes held for one joined line; fragments beyond it are dropped (the line stays bounded)
MAX_JOINED = 1 << 20

_DIGITS = frozenset(b"0123456789")
_ANSI_ANY = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|(?:\^\[|#033)\[[0-9;]*[A-Za-z]")
# an ESC-less `[m` right before `]` is a bracketed name (compose's `[m] | `), not a lost reset
_ANSI_BARE = re.compile(rb"(?:\x1b|\\u001[bB]|\\x1[bB]|\\033)\[[0-9;]{0,16}m|\[[0-9;]{0,16}m(?!\])"
                        rb"|(?:\^\[|#033)\[[0-9;]*[A-Za-z]")
_ANSI_START = re.compile(rb"(?:\^\[|#033)\[|\[[0-9;]{1,16}m")
_CRI = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d) (stdout|stderr) ([PF])(?: |$)")
# a timestamp at the start: date, `T` or space, time, fraction, offset / Z, zone word
_TS = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?(?:[.,]\d{1,9})?(?:Z|[+-]\d\d(?::?\d\d)?)?"
                 rb"(?: (?:UTC|GMT|[A-Z]{2,4}T))?(?= |$|\t)")
_TS_BRACKET = re.compile(rb"\[\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?\]")
# after a timestamp: spaces and an optional `- ` / `| ` separator (log viewers)
_SEP = re.compile(rb"[ \t]+(?:[-|] +)?")
# syslog / journald short(-precise): any locale's month word, day, time
_SYSLOG = re.compile(rb"[A-Za-z\x80-\xff]{3,12}\.? +\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})? ")
# `host unit[pid]: ` after a syslog / short-iso timestamp
_HOST_UNIT = re.compile(rb"(?!(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|CRITICAL|FATAL) )[\w.-]+ [\w.@/-]+(?:\[\d+\])?: ")
# after an ISO timestamp (journald short-iso) the unit must carry its `[pid]`: `ts logger LEVEL: ` is no host
_HOST_UNIT_PID = re.compile(rb"[\w.-]+ [\w.@/-]+\[\d+\]: ")
_COMPOSE = re.compile(rb"[A-Za-z0-9][\w.-]* +\|(?: |$)|\[[\w.-]{1,64}\] +\| ")
_CHIP = re.compile(rb"\[(?:resource|labels|jsonPayload|logName|severity)[.\w]*[:=] ?[^\]]{0,200}\] *")
_UVICORN = (b"INFO:  ", b"WARNING:  ", b"ERROR:    ")
_DOCKER_JSON = b'{"log":'
#: how an enveloping JSON line starts: docker json-file, and Cloud Logging entries (their keys
#: come sorted, `httpRequest`/`insertId` first, or in the LogEntry message's order, `logName` first)
_JSON_ENVELOPES = (_DOCKER_JSON, b'{"insertId"', b'{"logName"', b'{"httpRequest"', b'{"textPayload"',
                   b'{"jsonPayload"', b'{"resource"')


class Envelope:
    """Peels one stream's lines, holding CRI / docker fragments until their line is complete."""

    __slots__ = ("_held", "_held_len", "stamp")

    def __init__(self) -> None:
        self._held: dict[bytes, list[bytes]] = {}
        self._held_len: dict[bytes, int] = {}
        #: the innermost leading timestamp peeled off the last line (CRI's or a logger's), if any:
        #: start/end pairing reads a request's times from it (`llm_exporter.pairing.timestamp`)
        self.stamp: bytes | None = None

    def peel(self, raw: bytes) -> bytes | None:
        """The server's own line, or None while `raw` is a fragment held for joining."""
        self.stamp = None
        if raw[:1] == b"{" and not raw.startswith(_JSON_ENVELOPES):
            return raw  # the hot path: a bare JSON line
        head = raw[:1]
        if (head.isalpha() or head == b"[") and b"\r" not in raw and b"\x1b" not in raw and not _maybe_wrapper(raw):
            return raw  # the other hot path: a bare text line that starts with a letter or `[`
        line = raw
        after_ts: re.Pattern[bytes] | None = None  # after a timestamp: the `host unit[pid]: ` that may follow
        for _ in range(MAX_LAYERS):
            if not line:
                return line
            c = line[0]
            if c == 0x7B:  # {
                inner = self._json(line)
                if inner is None:
                    return line
                if inner is _HELD:
                    return None
                line, after_ts = inner, None  # type: ignore[assignment]
                continue
            if c in _DIGITS:
                m = _CRI.match(line)
                if m is not None:
                    stream, msg = m.group(1), line[m.end():]
                    self.stamp = line[:line.find(b" ")]
                    if m.group(2) == b"P":
                        self._hold(stream, msg)
                        return None
                    line, after_ts = self._join(stream, msg), None
                    continue
            if b"\x1b" in line or (c in b"[^#" and line[1:2] in b"0123456789[0" and _ANSI_START.match(line)):
                line = _strip_bare(line) if b"\x1b" not in line else _ANSI_ANY.sub(b"", line)
                if _ANSI_START.match(line):
                    line = _ANSI_BARE.sub(b"", line)
                continue
            if b"\r" in line:
                cut = _after_cr(line)
                if cut is line:
                    return line
                if _ANSI_START.search(line, 0, len(line) - len(cut)):
                    cut = _ANSI_BARE.sub(b"", cut)  # the colour opened before the bar goes on after it
                line = cut
                continue
            if after_ts is not None:
                hm = after_ts.match(line)
                after_ts = None
                if hm is not None:
                    line = line[hm.end():]
                    continue
            out = _prefix(line, c)
            if out is None:
                return line
            if c in _DIGITS or c == 0x5B or out[1] is _HOST_UNIT:  # a timestamp: bare, bracketed, syslog
                self.stamp = line[:len(line) - len(out[0])]
            line, after_ts = out
        return line

    def _json(self, line: bytes) -> bytes | object | None:
        """The line inside a JSON envelope, `_HELD` for a held fragment, None for no envelope."""
        if line[:7] == _DOCKER_JSON:
            inner = _docker_json(line)
            if inner is None:
                return None
            text, stream, complete = inner
            if not complete:
                self._hold(stream, text)
                return _HELD
            return self._join(stream, text)
        return _cloud_logging(line)

    def flush(self) -> list[bytes]:
        """Lines still held as fragments (end of stream): handed out as they are."""
        out = [b"".join(parts) for parts in self._held.values()]
        self._held.clear()
        self._held_len.clear()
        return out

    # a stream's held bytes never pass MAX_JOINED: what is held is cut to the room left
    def _hold(self, stream: bytes, part: bytes) -> None:
        size = self._held_len.get(stream, 0)
        part = part[: MAX_JOINED - size]
        self._held.setdefault(stream, []).append(part)
        self._held_len[stream] = size + len(part)

    def _join(self, stream: bytes, last: bytes) -> bytes:
        parts = self._held.pop(stream, None)
        if parts is None:
            return last
        parts.append(last[: MAX_JOINED - self._held_len.pop(stream)])
        return b"".join(parts)


_HELD = object()


def _prefix(line: bytes, c: int) -> tuple[bytes, re.Pattern[bytes] | None] | None:
    """One non-JSON, non-CRI prefix off `line`: (the rest, the host/unit shape that may follow it),
    or None when `line` starts with no wrapper."""
    if c in _DIGITS:
        m = _TS.match(line)
        if m is None:
            return None
        e = m.end()
        sep = _SEP.match(line, e)
        return line[sep.end() if sep is not None else e:], _HOST_UNIT_PID
    if c == 0x5B:  # [
        c1 = line[1:2]
        if c1.isdigit():
            m = _TS_BRACKET.match(line)
            if m is not None:
                e = m.end()
                sep = _SEP.match(line, e)
                rest = line[sep.end() if sep is not None else e:]
                if rest.startswith(_UVICORN):
                    return None  # SGLang's own access-line prefix: its adapter reads it (and knows the server)
                return rest, None
        m = _CHIP.match(line) if c1 in b"rljs" else None
        if m is None and _bar_after(line, line.find(b"] ", 1, 68) + 1):
            m = _COMPOSE.match(line)
        return (line[m.end():], None) if m is not None else None
    if c == 0x20 or c == 0x09:  # journalctl -o verbose: `    MESSAGE=...`
        s = line.lstrip()
        return (s[8:], None) if s[:8] == b"MESSAGE=" else None
    if c == 0x4D and line[:8] == b"MESSAGE=":
        return line[8:], None
    if c < 0x80 and not chr(c).isalpha():
        return None
    sp = line.find(b" ", 3, 14)
    if sp > 0 and line.find(b":", sp + 4, sp + 8) > 0:
        m = _SYSLOG.match(line)
        if m is not None:
            return line[m.end():], _HOST_UNIT
    if _bar_after(line, line.find(b" ", 1, 68)):
        m = _COMPOSE.match(line)
        if m is not None:
            return line[m.end():], None
    return None


def _maybe_wrapper(line: bytes) -> bool:
    """Whether a line that starts with a letter or `[` may start with a wrapper: syslog's `Mon DD HH:`,
    compose's `name  |` or `[svc] |`, `MESSAGE=`, `[2025-...`, `[1;36m`, `[resource...` (cheap tests;
    the patterns decide)."""
    if line[:1] == b"[":
        c1 = line[1:2]
        return c1.isdigit() or c1 in b"rljs" or _bar_after(line, line.find(b"] ", 1, 68) + 1)
    sp = line.find(b" ", 3, 14)
    return (sp > 0 and line.find(b":", sp + 4, sp + 8) > 0) or _bar_after(line, line.find(b" ", 1, 68)) \
        or line[:8] == b"MESSAGE="


def _bar_after(line: bytes, i: int) -> bool:
    """Whether the spaces from `i` on end in `|` (compose's `name   |`); False for `i` <= 0."""
    if i <= 0:
        return False
    n = len(line)
    while i < n and line[i] == 0x20:
        i += 1
    return line[i:i + 1] == b"|"


def _strip_bare(line: bytes) -> bytes:
    """`line` without its ESC-less colour renderings. Around a JSON envelope only the renderings
    outside the object come off: inside it a `\\u001b[1;36m` is the JSON text's own escape (possibly
    of an escaped backslash, in a nested envelope), decoded and peeled in a later round."""
    i = 0
    while (m := _ANSI_BARE.match(line, i)) is not None:
        i = m.end()
    if line[i:i + 1] == b"{":
        head, brace, tail = line.rpartition(b"}")
        return line[i:len(head)] + brace + _ANSI_BARE.sub(b"", tail)
    return _ANSI_BARE.sub(b"", line)


def _after_cr(line: bytes) -> bytes:
    """The last non-empty segment after a `\\r` (a progress bar redrawn before the line)."""
    for seg in reversed(line.split(b"\r")):
        if seg.strip():
            return seg
    return line  # only carriage returns and blanks: a blank line


def _docker_json(line: bytes) -> tuple[bytes, bytes, bool] | None:
    """(text, stream, complete) of a docker json-file entry, or None when `line` is not one."""
    obj = json_object(line)
    if obj is None:
        return None
    text = obj.get("log")
    stream = obj.get("stream", "")
    if type(text) is not str or type(stream) is not str or ("time" not in obj and not stream):
        return None
    raw = text.encode()  # orjson gives no lone surrogates: always encodable
    if raw[-1:] != b"\n":
        return raw, stream.encode(), False
    raw = raw[:-1]
    if raw[-1:] == b"\r":
        raw = raw[:-1]
    return raw, stream.encode(), True


def _cloud_logging(line: bytes) -> bytes | None:
    """The payload of a Google Cloud Logging entry (`textPayload` text, or the `jsonPayload` object
    as one JSON line), or None when `line` is not one."""
    if b'Payload"' not in line[:4096]:
        return None
    obj = json_object(line)
    if obj is None:
        return None
    text = obj.get("textPayload")
    if type(text) is str:
        return text.encode().rstrip(b"\r\n")
    payload = obj.get("jsonPayload")
    if type(payload) is dict and ("resource" in obj or "logName" in obj or "insertId" in obj
                                  or "timestamp" in obj or "severity" in obj):
        return orjson.dumps(payload)
    return None


def peel(line: bytes) -> bytes:
    """Stateless peel: the server's own line inside `line` (a CRI `P` fragment counts as whole)."""
    env = Envelope()
    out = env.peel(line)
    return out if out is not None else env.flush()[0]  # a fragment held: the one line held
