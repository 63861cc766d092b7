"""The app-json fast path (orjson plus plain-value checks) gives exactly what pydantic's pass gives."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench import workload
from llm_exporter.adapters.app_json import _KNOWN, AppJsonAdapter
from llm_exporter.adapters.base import Invalid

NAMES = [*sorted(_KNOWN), "prompt", "message", "gpu_memory_mb", "total_tokens"]

scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=12),
    st.sampled_from(["1.5s", "735.2ms", "8m44s", "-3", "", "success", "error", "ERROR", "abc"]),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
)
values = st.one_of(
    scalars,
    st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                                     "type", "code", "total_tokens"]), scalars, max_size=4),
    st.lists(scalars, max_size=2),
)
objects = st.dictionaries(st.sampled_from(NAMES), values, min_size=1, max_size=8)


def _outcome(adapter: AppJsonAdapter, line: bytes, fast: bool) -> Any:
    try:
        res = adapter.parse_json(line, None) if fast else adapter._validated(line)
    except Invalid as e:
        return ("invalid", e.reason)
    return res


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types (an int where a float belongs would change the exposition)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and bool(a == b)


@settings(max_examples=400, deadline=None)
@given(objects)
def test_fast_path_matches_pydantic_on_any_known_fields(obj: dict[str, Any]) -> None:
    """Any mix of known and unknown fields, of any JSON value, gives the same record or the same reason."""
    line = json.dumps(obj).encode()
    a = AppJsonAdapter()
    assert _same(_outcome(a, line, True), _outcome(a, line, False))


@given(st.sampled_from([b'{"duration": NaN}', b'{"duration_ms": 1e400, "status": "ok"}',
                        b'{"input_tokens": 18446744073709551616, "status": "ok", "id": 1}',
                        b'{"duration": 1, "duration": "x"}', b'{"latency_ms": 5, "latency_ms": -1}',
                        b'{"model": "\\ud800", "duration": 1}', b'{"duration": 1} trailing',
                        b'{"error": {"type": "oom"}, "status": "error"}', b'{"usage": {"prompt_tokens": 1.0}}',
                        b'{"completion_tokens": null, "team": -9223372036854775809}',
                        b'{"status": "ok", "user": 18446744073709551616}']))
def test_fast_path_matches_pydantic_on_edge_lines(line: bytes) -> None:
    """Lines orjson reads differently from pydantic (or not at all) still end the same way."""
    a = AppJsonAdapter()
    assert _same(_outcome(a, line, True), _outcome(a, line, False))


def test_fast_path_matches_pydantic_on_the_application_shapes() -> None:
    """Every JSON line of the benchmark's four application shapes gives the same record both ways."""
    a = AppJsonAdapter()
    seen = 0
    for text in workload.generate(3000):
        if text.startswith("{"):
            line = text.rstrip("\n").encode()
            assert _same(_outcome(a, line, True), _outcome(a, line, False)), line
            seen += 1
    assert seen > 2500
