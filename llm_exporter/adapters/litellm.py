"""LiteLLM proxy: its own log lines, its uvicorn access lines as finished requests, and its
per-request logging payload and spend-log rows (JSON).

Text: LiteLLM logs through Python logging as `[HH:MM:SS - ]LiteLLM[ Proxy| Router]:LEVEL: file.py:N - msg`
(older builds print bare `LiteLLM Proxy: ...` / `LiteLLM.Router: ...` debug lines). Once one of
these has been seen on a stream, the stream is LiteLLM's: its uvicorn access lines
(`INFO:     IP:PORT - "POST /chat/completions HTTP/1.1" 200 OK`) are counted with
`gen_ai_provider_name="litellm"`, and one on an inference path is one finished request, its outcome
from the status (LiteLLM answers a provider's rate limit with 429, a bad request with 400). Error
lines are ERROR log records classified by their message; the request they belong to is counted by
its access line, not again.

JSON, one object per request, in two shapes told apart by their fields (`call_type` and a cost):
- the standard logging payload (what LiteLLM hands its logging callbacks: GCS and S3 buckets,
  Pub/Sub, generic HTTP loggers): `id`, `call_type`, `status`, `response_cost`, `prompt_tokens`,
  `completion_tokens`, `startTime`/`endTime`, `model`, `model_group`, `end_user`, and `metadata`
  with the key alias, team alias and ids (`user_api_key_alias`, `user_api_key_team_alias`, ...);
- a spend-log row (the `LiteLLM_SpendLogs` table, `/spend/logs`, the spend-logs Pub/Sub topic):
  `request_id`, `call_type`, `spend`, tokens at the top level (older rows: under `usage`), `user`,
  `team_id`, `end_user`, and `metadata` as an object or as a JSON-encoded string.

One request record each: the model is the model group the client asked for (the deployment's
model when there is none), the cost is LiteLLM's own logged figure read from its decimal text,
and the tenant is the key alias, else the team alias, team id, end user or user (see
`llm_exporter.accounting.LITELLM_TENANT_PATHS`). The hashed key LiteLLM logs is used only when
`accounting.hash_keys` is on, and then only as a salted hash of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from llm_exporter import errors
from llm_exporter.accounting import LITELLM_TENANT_PATHS, adapter_of, get_path, identify, pico_of_decimal_text
from llm_exporter.adapters.access import access_request, inference_operation, parse_uvicorn
from llm_exporter.adapters.base import IGNORED, Adapter, Invalid

_NAMES = ("LiteLLM Proxy:", "LiteLLM Router:", "LiteLLM.Router:", "LiteLLM:", "LiteLLM.Info:", "LiteLLM.")
_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
#: LiteLLM's verbose debug prints (`print_verbose`, `litellm.set_verbose=True`), on a LiteLLM stream
_VERBOSE = ("get cache:", "set cache:", "in_memory_result:", "Logging Details", "callback:", "Inside ",
            "prisma client", "receiving data:", "Request Headers:", "final data being sent",
            "EXCEPTION FOR DEPLOYMENTS", "POST Request Sent from LiteLLM", "RAW RESPONSE", "Returned custom cost",
            "Give Feedback / Get Help", "self.optional_params", "checking potential", "async get cache")
_PY_LEVELS = ("DEBUG:", "INFO:", "WARNING:", "ERROR:", "CRITICAL:")


CALL_TYPES = {
    "completion": "chat", "acompletion": "chat", "anthropic_messages": "chat", "responses": "chat",
    "aresponses": "chat", "text_completion": "text_completion", "atext_completion": "text_completion",
    "embedding": "embeddings", "aembedding": "embeddings",
}


def _time(v: Any) -> float | None:
    """Epoch seconds of a logged time: a number, or an ISO text (`2025-01-24 09:20:46.847371`, a
    trailing `Z` included)."""
    if type(v) in (int, float):
        return float(v)
    if type(v) is str and v:
        try:
            return datetime.fromisoformat(v).timestamp()
        except ValueError:
            return None
    return None


def _count(v: Any) -> int | None:
    if type(v) is int and v >= 0:
        return v
    if type(v) is float and v >= 0 and v.is_integer():
        return int(v)
    return None


class LitellmAdapter(Adapter):
    """LiteLLM proxy lines, on a LiteLLM stream its access lines, and its JSON request payloads."""

    name = "litellm"
    provider = "litellm"
    wants_obj = True

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

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        if obj is None or "call_type" not in obj:
            return None
        if "response_cost" in obj:
            cost_v = obj["response_cost"]
        elif "spend" in obj:
            cost_v = obj["spend"]
        else:
            return None
        meta = obj.get("metadata")
        if type(meta) is str and meta[:1] == "{":
            try:
                obj = {**obj, "metadata": orjson.loads(meta)}
            except orjson.JSONDecodeError:
                obj = {**obj, "metadata": None}
        ct = obj.get("call_type")
        group, model = obj.get("model_group"), obj.get("model")
        rec: dict[str, Any] = {
            "kind": "request", "provider": self.provider,
            "operation": CALL_TYPES.get(ct, "") if type(ct) is str else "",
            "model": group if type(group) is str and group else (model if type(model) is str else ""),
        }
        rid = obj.get("id", obj.get("request_id"))
        if type(rid) is str and rid:
            rec["request_id"] = rid
        u = obj.get("usage")
        usage: dict[str, Any] = u if type(u) is dict else {}
        for canon, name in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
            v = obj.get(name, usage.get(name))
            if v is not None:
                n = _count(v)
                if n is None:
                    raise Invalid("bad_value")
                rec[canon] = n
        cached = _count(get_path(obj, "metadata.usage_object.prompt_tokens_details.cached_tokens")
                        or get_path(obj, "response.usage.prompt_tokens_details.cached_tokens"))
        if "input_tokens" in rec:
            rec["prompt_tokens"] = rec["input_tokens"]  # LiteLLM's prompt_tokens is the whole prompt
        if cached:
            rec["cached_tokens"] = cached
        if cost_v is not None:
            cost = pico_of_decimal_text(cost_v)
            if cost is None:
                raise Invalid("bad_value")
            rec["cost_pico"] = cost
        start, end = _time(obj.get("startTime")), _time(obj.get("endTime"))
        if start is not None and end is not None and end >= start:
            rec["duration_s"] = end - start
            first = _time(obj.get("completionStartTime"))
            if obj.get("stream") is True and first is not None and start <= first <= end:
                rec["ttft_s"] = first - start
        fr = get_path(obj, "response.choices.0.finish_reason")
        if type(fr) is str and fr:
            rec["finish_reason"] = fr
        rec["outcome"], rec["error_type"] = self._outcome(obj)
        acc = getattr(self.config, "accounting", None)
        rec["tenant"], rec["tenant_key"] = identify(obj, acc.tenant if acc is not None else (),
                                                    LITELLM_TENANT_PATHS)
        req_meta = get_path(obj, "metadata.requester_metadata")
        if type(req_meta) is dict and (a := adapter_of(req_meta)) is not None:
            rec["adapter"] = a
        return rec

    @staticmethod
    def _outcome(obj: dict[str, Any]) -> tuple[str, str]:
        """(outcome, error_type) from `status` and the error's class and HTTP code, which the logging
        payload keeps in `error_information` and a spend-log row under `metadata.error_information`."""
        status = obj.get("status")
        info = obj.get("error_information")
        if info is None:
            info = get_path(obj, "metadata.error_information")
        err = ""
        code: Any = None
        if type(info) is dict:
            e = info.get("error_class")
            err = e if type(e) is str else ""
            c = info.get("error_code")
            code = int(c) if type(c) is str and c.isdigit() else (c if type(c) is int else None)
        if status in (None, "") and (err or code):
            status = "failure"
        if type(status) is str and status.lower() in errors.ERROR_WORDS and not err and code is not None:
            return errors.outcome_of(code if code >= 400 else 500, "")
        return errors.outcome_of(status, err)  # no status and no error: a success
