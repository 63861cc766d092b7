"""SGLang: the scheduler's `Prefill batch` / `Decode batch` stats lines and its access lines.

Prefixes: `[2024-11-29 10:28:25 TP0] `, `[04:40:55 TP0] `, `[2026-04-05 20:02:51] `, none, or Python
logging's `2026-06-07 10:59:31,843 [INFO] sglang.srt...: `. The batch line is a comma-separated
`key: value` list whose keys vary by version and feature, so it is read as such a list, not with
one fixed pattern. `token usage` is already a fraction (0-1); `cache hit rate` is a percent.
The rank tag (`TP0`, `DP1 TP0`) becomes the `engine` label.
"""

from __future__ import annotations

from typing import Any

from llm_exporter.adapters.access import parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter

_RATIO_KEYS = {"token usage": "kv_cache_usage", "full token usage": "kv_cache_usage"}
_COUNT_KEYS = {"#running-req": "running", "#queue-req": "waiting"}
_TPS_KEYS = {"gen throughput (token/s)": "generation_tps", "input throughput (token/s)": "prompt_tps"}
_KNOWN_MESSAGES = ("The server is fired up", "Load weight", "Memory pool end", "Capture cuda graph",
                   "KV Cache is allocated", "Init torch distributed", "server_args=")


def _float(v: str) -> float | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f >= 0 and f != float("inf") else None


class SglangAdapter(Adapter):
    """SGLang scheduler stats lines and its timestamped uvicorn access lines."""

    name = "sglang"
    provider = "sglang"
    wants_obj = False

    def parse_text(self, text: str) -> Any:
        c = text[:1]
        tag = ""
        msg = text
        known_prefix = False
        if c == "[":
            j = text.find("] ", 1, 48)
            if j < 0:
                return None
            inside = text[1:j]
            if ":" not in inside or not inside[:1].isdigit():
                return None
            words = inside.split(" ")
            tags = [w for w in words if w[:1].isalpha()]
            tag = " ".join(tags)
            known_prefix = bool(tags)
            msg = text[j + 2:]
        elif c.isdigit():
            k = text.find("] sglang.", 20, 40)
            if k < 0 or text[4] != "-":
                return None
            j = text.find(": ", k)
            if j < 0:
                return None
            msg = text[j + 2:]
            known_prefix = True
        elif c not in "PD":
            return None
        m0 = msg[:1]
        if (m0 == "P" and msg.startswith(("Prefill batch.", "Prefill batch,"))) or (
                m0 == "D" and msg.startswith(("Decode batch.", "Decode batch,"))):
            return self._batch(msg[14:], tag)
        if msg is text:
            return None
        if m0 == "I" and msg.startswith(("INFO:  ", "WARNING:  ", "ERROR:    ")):
            rec = parse_uvicorn(msg, self.provider)
            if rec is not None:
                return rec
        if known_prefix or msg.startswith(_KNOWN_MESSAGES):
            return IGNORED
        return None

    def _batch(self, body: str, engine: str) -> Any:
        rec: dict[str, Any] = {"kind": "stats", "provider": self.provider, "model": "", "engine": engine}
        for part in body.split(", "):
            k, sep, v = part.strip().rstrip(",").partition(": ")
            if not sep:
                continue
            if k in _COUNT_KEYS or k in _TPS_KEYS:
                f = _float(v)
                if f is not None:
                    rec[_COUNT_KEYS.get(k) or _TPS_KEYS[k]] = f
            elif k in _RATIO_KEYS:
                f = _float(v)
                if f is not None and f <= 1.0 and (k == "token usage" or "kv_cache_usage" not in rec):
                    rec["kv_cache_usage"] = f
            elif k == "cache hit rate" and v.endswith("%"):
                f = _float(v[:-1])
                if f is not None and f <= 100.0:
                    rec["prefix_cache_hit"] = f / 100.0
        return rec
