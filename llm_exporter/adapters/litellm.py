"""LiteLLM proxy: its own log lines, and its uvicorn access lines as finished requests.

LiteLLM logs through Python logging as `[HH:MM:SS - ]LiteLLM[ Proxy| Router]:LEVEL: file.py:N - msg`
(older builds print bare `LiteLLM Proxy: ...` / `LiteLLM.Router: ...` debug lines). Once one of
these has been seen on a stream, the stream is LiteLLM's: its uvicorn access lines
(`INFO:     IP:PORT - "POST /chat/completions HTTP/1.1" 200 OK`) are counted with
`gen_ai_provider_name="litellm"`, and one on an inference path is one finished request, its outcome
from the status (LiteLLM answers a provider's rate limit with 429, a bad request with 400). Error
lines are ERROR log records classified by their message; the request they belong to is counted by
its access line, not again.
"""

from __future__ import annotations

from typing import Any

from llm_exporter import errors
from llm_exporter.adapters.access import access_request, inference_operation, parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter

_NAMES = ("LiteLLM Proxy:", "LiteLLM Router:", "LiteLLM.Router:", "LiteLLM:", "LiteLLM.Info:", "LiteLLM.")
_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
#: LiteLLM's verbose debug prints (`print_verbose`, `litellm.set_verbose=True`), on a LiteLLM stream
_VERBOSE = ("get cache:", "set cache:", "in_memory_result:", "Logging Details", "callback:", "Inside ",
            "prisma client", "receiving data:", "Request Headers:", "final data being sent",
            "EXCEPTION FOR DEPLOYMENTS", "POST Request Sent from LiteLLM", "RAW RESPONSE", "Returned custom cost",
            "Give Feedback / Get Help", "self.optional_params", "checking potential", "async get cache")
_PY_LEVELS = ("DEBUG:", "INFO:", "WARNING:", "ERROR:", "CRITICAL:")


class LitellmAdapter(Adapter):
    """LiteLLM proxy lines and, on a LiteLLM stream, its access lines."""

    name = "litellm"
    provider = "litellm"
    wants_obj = False

    def parse_text(self, text: str) -> Any:
        c = text[:1]
        if c.isdigit() and text[2:3] == ":" and text[8:11] == " - ":  # `HH:MM:SS - ` before the name
            text = text[11:]
            c = text[:1]
        if c == "L" and text.startswith(_NAMES):
            self.shared["server"] = "litellm"
            head, _, rest = text.partition(": ")
            level = ""
            _, colon, lv = head.rpartition(":")
            if colon and lv in _LEVELS:
                level = _LEVELS[lv]
            elif rest[:1].isupper() and (k := rest.find(":")) > 0 and rest[:k] in _LEVELS:
                level = _LEVELS[rest[:k]]
            if not level:
                return IGNORED
            rec: dict[str, Any] = {"kind": "log", "provider": self.provider, "level": level}
            if level in ("ERROR", "CRITICAL"):
                rec["error_type"] = errors.classify_event(rest)[1]
            return rec
        if self.shared.get("server") != "litellm":
            return None
        if c == "I" and text.startswith("INFO:  "):
            acc = parse_uvicorn(text, self.provider)
            if acc is None:
                return None
            op = inference_operation(acc["method"], acc["path"])
            return acc if op is None else [acc, access_request(self.provider, op, acc["code"])]
        if text.startswith(_VERBOSE):
            return IGNORED
        if text.startswith(_PY_LEVELS) and (k := text.find(":")) > 0 and text[k + 1: k + 2].isalpha():
            return {"kind": "log", "provider": self.provider, "level": _LEVELS[text[:k]]}  # `INFO:httpx:...`
        return None
