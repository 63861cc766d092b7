"""Server-format adapters, chosen by name: adding a format is one file plus one line here.

`--format auto` (the default) tries every adapter in `AUTO_ORDER` per line; `--format NAME`
uses only that one. Values are import strings so a format's dependencies load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from llm_exporter.adapters.base import IGNORED, Adapter, Invalid

ADAPTERS: dict[str, str] = {
    "app-json": "llm_exporter.adapters.app_json:AppJsonAdapter",
    "vllm": "llm_exporter.adapters.vllm:VllmAdapter",
    "sglang": "llm_exporter.adapters.sglang:SglangAdapter",
    "llamacpp": "llm_exporter.adapters.llamacpp:LlamacppAdapter",
    "ollama": "llm_exporter.adapters.ollama:OllamaAdapter",
    "tgi": "llm_exporter.adapters.tgi:TgiAdapter",
    "llama-swap": "llm_exporter.adapters.llamaswap:LlamaSwapAdapter",
    "litellm": "llm_exporter.adapters.litellm:LitellmAdapter",
    "python-traceback": "llm_exporter.adapters.pytrace:PyTraceAdapter",
    "custom-json": "llm_exporter.adapters.custom:CustomJsonAdapter",
    "rules": "llm_exporter.adapters.rules:RulesAdapter",
}

#: the order `auto` tries them in; the application JSON adapter comes first (the common case);
#: LiteLLM and SGLang before vLLM (on their streams they claim the bare access lines vLLM would
#: count without a provider); TGI late (after one of its records it claims the unprefixed lines
#: that continue it); unclaimed Python tracebacks last
AUTO_ORDER: list[str] = ["app-json", "litellm", "sglang", "vllm", "llama-swap", "llamacpp", "ollama", "tgi",
                         "python-traceback"]


def load(name: str) -> type[Adapter]:
    """The adapter class registered as `name` (KeyError if none)."""
    mod, _, attr = ADAPTERS[name].partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(mod), attr)
    return cls


def build_chain(fmt: str, config: Any = None) -> list[Adapter]:
    """Fresh adapter instances for one source: every adapter for `auto`, else the one named; the
    `--config` file's text rules, if any, come first whatever the format."""
    rules = [load("rules")(config)] if getattr(config, "rules", None) else []
    if fmt == "rules":  # the config's rules alone: the built-in readers see nothing
        return rules
    return rules + _chain(fmt, config)


def _chain(fmt: str, config: Any) -> list[Adapter]:
    names = AUTO_ORDER if fmt == "auto" else [fmt]
    custom = fmt == "custom-json" or getattr(config, "wants_custom_adapter", False)
    if not custom:
        chain = [load(n)(config) for n in names]
    else:
        # the --config file's mappings, extra labels and metrics: custom-json wraps app-json, so it
        # takes app-json's place at the head; its tail instance reads lines nobody else claimed
        cls = load("custom-json")
        rest = [load(n)(config) for n in names if n not in ("custom-json", "app-json")]
        chain = [cls(config), *rest, cls(config, tail=True)]  # type: ignore[call-arg]
    shared: dict[str, Any] = {}
    for a in chain:
        a.shared = shared
    return chain


__all__ = ["ADAPTERS", "AUTO_ORDER", "IGNORED", "Adapter", "Invalid", "build_chain", "load"]
