"""Custom JSON shapes, extra labels and custom metrics, as the `--config` file defines them.

Only in the chain when a config asks for it (first, so its mappings win). A line matching a
mapping's `match` values becomes a request record built from the mapping's dotted paths, with
units; other lines go through the application JSON adapter, and get the config's extra labels
(`src_lang`, `tgt_lang`, ...) read from the line. Custom metrics read their numeric field from any
JSON line. Label values come from the line but stay bounded: the metrics' cardinality limit folds
new values past it into `_OTHER`.
"""

from __future__ import annotations

import math
from typing import Any

from llm_exporter import errors
from llm_exporter.accounting import adapter_of, identify
from llm_exporter.adapters.app_json import AppJsonAdapter
from llm_exporter.adapters.base import Adapter, Invalid, get_path
from llm_exporter.config import UNIT_DIV, Config, Mapping
from llm_exporter.units import parse_duration, to_seconds

_CANON = {"duration": "duration_s", "queue_time": "queue_s", "inference_time": "inference_s", "ttft": "ttft_s",
          "tpot": "tpot_s"}
MAX_VALUE = 128


def _label_value(v: Any) -> str:
    if v is None or type(v) in (dict, list):
        return ""
    if type(v) is bool:
        return "true" if v else "false"
    return str(v)[:MAX_VALUE]


def _number(v: Any) -> float | None:
    """A JSON number as a float (not a bool; None for an int too large for a float). Callers check
    what they make of it (scaled, or in seconds) is finite."""
    if type(v) not in (int, float):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


class CustomJsonAdapter(Adapter):
    """The `--config` file's mappings, extra labels and custom metrics.

    At the head of a chain it reads mapped lines and the application's own JSON lines (it wraps
    the app-json adapter, which then leaves the chain, to add extra labels and custom metrics); a
    line it does not claim goes on to the server adapters. The `tail` instance at the end of the
    chain turns JSON lines that no adapter claimed into custom metrics, if any are configured.
    """

    name = "custom-json"
    provider = "app"
    wants_obj = False  # at the head it stands for app-json, which judges lines orjson cannot read

    def __init__(self, config: Any = None, tail: bool = False) -> None:
        super().__init__(config)  # a `Config`, or None (`--format custom-json` with no file: nothing to do)
        self.tail = tail
        self.app = AppJsonAdapter(config)

    def parse_json(self, line: bytes, obj: dict[str, Any] | None) -> Any:
        cfg: Config | None = self.config
        if cfg is None:
            return None
        if obj is None:  # not JSON to orjson (a Python app's `NaN`, say): app-json's schema decides, as
            return None if self.tail else self.app.parse_json(line, None)  # without a file
        if self.tail:
            return self._custom_records(cfg.metrics, obj, "app", "", {}) or None
        for m in cfg.mappings:
            if all(get_path(obj, k) == v for k, v in m.match.items()):
                rec = self._mapped(m, obj)
                if rec is not None:
                    return [rec, *self._metrics(m.metrics + cfg.metrics, obj, rec)]
        rec = self.app.parse_json(line, obj)  # one request record, or None
        if rec is None:
            return None  # perhaps a server's line: the rest of the chain, then the tail, decide
        if cfg.extra_labels:
            rec["extra_labels"] = {n: _label_value(get_path(obj, p)) for n, p in cfg.extra_labels.items()}
        return [rec, *self._metrics(cfg.metrics, obj, rec)]

    def _mapped(self, m: Mapping, obj: dict[str, Any]) -> dict[str, Any] | None:
        rec: dict[str, Any] = {"kind": "request", "provider": m.provider, "operation": "", "model": "",
                               "error_type": ""}
        found = False
        outcome_v: Any = None
        for canon, spec in m.fields.items():
            v = get_path(obj, spec.path)
            if v is None:
                continue
            found = True
            if canon in _CANON:
                div = UNIT_DIV[spec.unit or "s"]
                if type(v) is str:
                    s = parse_duration(v, div)
                else:
                    n = _number(v)
                    s = to_seconds(n, div) if n is not None else None
                if s is None or s < 0 or not math.isfinite(s):
                    raise Invalid("bad_duration")
                rec[_CANON[canon]] = s
            elif canon in ("input_tokens", "output_tokens"):
                if type(v) is float and v.is_integer():
                    v = int(v)
                if type(v) is not int or v < 0:
                    raise Invalid("bad_value")
                rec[canon] = v
            elif canon == "outcome":
                outcome_v = v
            elif canon == "error_type":
                name = errors.error_name(v)
                if name:
                    rec["error_type"] = errors.normalize(name)
            else:
                if type(v) in (dict, list, bool):
                    raise Invalid("bad_value")
                rec[canon] = _label_value(v)
        if not found:
            return None
        rec["outcome"], rec["error_type"] = errors.outcome_of(outcome_v, rec["error_type"])
        if m.extra_labels:
            rec["extra_labels"] = {n: _label_value(get_path(obj, p)) for n, p in m.extra_labels.items()}
        acc = self.config.accounting
        rec["tenant"], rec["tenant_key"] = identify(obj, acc.tenant if acc is not None else ())
        if (a := adapter_of(obj)) is not None:
            rec["adapter"] = a
        return rec

    def _metrics(self, specs: list[Any], obj: dict[str, Any], rec: dict[str, Any]) -> list[dict[str, Any]]:
        return self._custom_records(specs, obj, rec["provider"], rec.get("model") or "",
                                    rec.get("extra_labels") or {})

    @staticmethod
    def _custom_records(specs: list[Any], obj: dict[str, Any], provider: str, model: str,
                        extra: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for spec in specs:
            n = _number(get_path(obj, spec.path))
            if n is None:
                continue
            if not math.isfinite(n * spec.scale):
                continue
            out.append({"kind": "custom", "name": spec.name, "value": n * spec.scale,
                        "labels": {"gen_ai_provider_name": provider, "gen_ai_request_model": model, **extra}})
        return out

