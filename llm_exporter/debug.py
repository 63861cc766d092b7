"""`GET /debug/rejects`: the last rejected lines, safe to show (only with `--debug-endpoints`).

Each entry gives the source, line number, outcome, reason and the first 200 bytes of the line,
after three passes: values of fields named like prompt, request or model text (`prompt`, `input`,
`output`, `text`, `messages`, `content`, `body`, `payload`, `msg`, `args`, `data`, `q`, ...)
are replaced by `[redacted]`, in JSON (even when cut at 200 bytes) and in `key: value` /
`key=value` text alike; any other quoted string longer than 32 characters that holds a space
(free text under a name we do not know) is redacted too, and so is plain text past the first 80
characters of a line that is not JSON (its timestamp, level and logger stay); then control and
format characters (C0, DEL, C1, line separators, bidirectional overrides such as U+202E,
zero-width characters) are escaped. Numbers are kept (`input_tokens: 12` says nothing about the
prompt and helps to debug a mapping).
"""

from __future__ import annotations

import re
import unicodedata

from aiohttp import web

from llm_exporter.pipeline import Pipeline, Reject

REDACTED = "[redacted]"
_SENSITIVE = (r"prompt|input|output|text|messages?|content|completion|response|query|instruction|"
              r"question|answer|system|user_?msg|chat|history|document|context")
#: a key that names model text, quoted or bare, then `:` or `=`
_KEY = re.compile(rb"""(?P<q>["']?)(?P<key>[A-Za-z_][\w.-]*)(?P=q)\s*[:=]\s*""")
_SENSITIVE_RE = re.compile(rf"(?i)(?:{_SENSITIVE})")
#: short keys that hold request text in common log shapes: matched whole, not as a part of a name
_SENSITIVE_EXACT = frozenset({"body", "payload", "msg", "args", "data", "q", "params", "message", "req",
                              "request", "json", "kwargs", "raw"})
#: a quoted string of free text (a space inside, over 32 characters)
_FREE_TEXT = re.compile(rb'"(?=[^"\\]{0,8}[^"\\ ]* )(?:[^"\\]|\\.){33,}"')
PLAIN_KEEP = 80
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=\s*(?:[,}\]\s]|$))")
_BARE_END = re.compile(rb"[,;}\]\n]|\s[\w.-]+[:=]")
_FORMAT = unicodedata.category  # "Cf": bidi overrides and isolates, zero-width and other format characters
_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}


def _value_end(buf: bytes, i: int) -> int:
    """End of the value starting at buf[i] (string, array, object or bare token); tolerant of a
    value cut short by the 200-byte limit (then: the end of the buffer)."""
    n = len(buf)
    c = buf[i:i + 1]
    if c in (b'"', b"'"):
        j = i + 1
        while j < n:
            if buf[j:j + 1] == b"\\":
                j += 2
                continue
            if buf[j:j + 1] == c:
                return j + 1
            j += 1
        return n
    if c in (b"[", b"{"):
        depth, j, quote = 0, i, b""
        while j < n:
            ch = buf[j:j + 1]
            if quote:
                if ch == b"\\":
                    j += 1
                elif ch == quote:
                    quote = b""
            elif ch in (b'"', b"'"):
                quote = ch
            elif ch in (b"[", b"{"):
                depth += 1
            elif ch in (b"]", b"}"):
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return n
    m = _BARE_END.search(buf, i)
    return m.start() if m else n


def redact(buf: bytes) -> bytes:
    """Replace the values of fields named like model text; keep keys, numbers and everything else."""
    out: list[bytes] = []
    pos = 0
    i = 0
    while True:
        m = _KEY.search(buf, i)
        if m is None:
            break
        v = m.end()
        key = m.group("key").decode("ascii", "replace")
        if v >= len(buf) or not (_SENSITIVE_RE.search(key) or key.lower() in _SENSITIVE_EXACT) \
                or _NUMBER.match(buf, v) \
                or buf[v:v + 4] in (b"null", b"true") or buf[v:v + 5] == b"false":
            i = m.end() if m.end() > i else i + 1
            continue
        end = _value_end(buf, v)
        out.append(buf[pos:v])
        quote = buf[v:v + 1] if buf[v:v + 1] in (b'"', b"'") else b""
        out.append(quote + REDACTED.encode() + quote if quote else REDACTED.encode())
        pos = i = end
    out.append(buf[pos:])
    text = b"".join(out)
    text = _FREE_TEXT.sub(b'"' + REDACTED.encode() + b'"', text)
    if text[:1] not in (b"{", b"[") and len(text) > PLAIN_KEEP:
        text = text[:PLAIN_KEEP] + f" [{len(text) - PLAIN_KEEP} more bytes redacted]".encode()
    return text


def escape(buf: bytes) -> str:
    """Text with control characters (C0, DEL, C1, line/paragraph separators) escaped."""
    text = buf.decode("utf-8", "backslashreplace")
    parts = []
    for ch in text:
        o = ord(ch)
        if o in _ESCAPES:
            parts.append(_ESCAPES[o])
        elif o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or (o > 0x9F and _FORMAT(ch) == "Cf"):
            parts.append(f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}")
        else:
            parts.append(ch)
    return "".join(parts)


def show(r: Reject) -> dict[str, object]:
    return {"source": r.source, "line_number": r.lineno, "outcome": r.outcome, "reason": r.reason,
            "line": escape(redact(r.line))}


def routes(pipeline: Pipeline) -> list[web.RouteDef]:
    """The debug routes (registered only with --debug-endpoints)."""

    async def handle_rejects(request: web.Request) -> web.Response:
        try:
            limit = max(0, int(request.query.get("n", "50")))
        except ValueError:
            return web.Response(status=400, text="n: expected a whole number\n")
        rejects = list(pipeline.rejects)[-limit:] if limit else []
        items = [show(r) for r in reversed(rejects)]  # newest first
        if request.query.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"rejects": items})
        if not items:
            return web.Response(text="no rejected lines kept\n")
        text = "".join(f"{x['source']}:{x['line_number']}\t{x['outcome']}/{x['reason']}\t{x['line']}\n"
                       for x in items)
        return web.Response(text=text)

    return [web.get("/debug/rejects", handle_rejects)]

