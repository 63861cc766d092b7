"""An error field of a JSON request line, read alike by the application JSON reader and a `--config`
mapping: the name each JSON value gives, and the outcome and error class both readers make of it.

Every row is worked out by hand: a string is its own name (a known name folds into its class, free
text is classified on its first 400 characters); `true` is a failure of no known class; false, null
and an empty string name none (a success); an error object names its `type`, else its `code`. The
application reader's published line schema takes a string, a bool or such an object only: a bare
number, a list, or an object or number as `type` is a bad value there, while a mapping, which reads
any JSON type at the path its user chose, reads a number by its digits and a list or object as none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_exporter.adapters.app_json import AppJsonAdapter
from llm_exporter.adapters.base import Invalid
from llm_exporter.adapters.custom import CustomJsonAdapter
from llm_exporter.config import load_config
from llm_exporter.errors import OTHER, error_name, outcome_of

#: free text whose class phrase (`out of memory`) starts at its 306th character
LONG_OOM = "x" * 300 + " CUDA out of memory"

# (the error field's value, the name it gives, outcome, error class, taken by the application reader)
ROWS: list[tuple[Any, str, str, str, bool]] = [
    ("TimeoutError", "TimeoutError", "error", "timeout", True),
    (LONG_OOM, LONG_OOM, "error", "oom", True),
    ("", "", "success", "", True),
    (None, "", "success", "", True),
    (True, OTHER, "error", OTHER, True),
    (False, "", "success", "", True),
    ({"type": "invalid_request_error", "code": 400}, "invalid_request_error", "error", "validation", True),
    ({"type": None, "code": "rate_limit_exceeded"}, "rate_limit_exceeded", "error", "rate_limit_exceeded", True),
    ({"code": 429}, "429", "error", OTHER, True),  # a numeric code is a name of digits: no class
    ({"code": 0}, "0", "error", OTHER, True),
    ({"code": True}, OTHER, "error", OTHER, True),
    ({"code": False}, "", "success", "", True),
    ({"type": True}, OTHER, "error", OTHER, True),
    ({"type": False, "code": "context_length_exceeded"}, "context_length_exceeded", "error", "validation", True),
    ({"type": "", "code": ""}, "", "success", "", True),
    ({"message": "no type, no code"}, "", "success", "", True),
    (503, "503", "error", OTHER, False),
    (1.5, "1.5", "error", OTHER, False),
    ([], "", "success", "", False),
    (["TimeoutError"], "", "success", "", False),
    ({"type": 5}, "5", "error", OTHER, False),
    ({"type": {"name": "TimeoutError"}}, "", "success", "", False),
]

CONFIG = """\
mappings:
  - name: calls
    provider: app
    match: {kind: call}
    fields:
      error_type: error
      duration: {path: ms, unit: ms}
"""


@pytest.fixture(scope="module")
def mapping(tmp_path_factory: pytest.TempPathFactory) -> CustomJsonAdapter:
    p = tmp_path_factory.mktemp("config") / "c.yaml"
    p.write_text(CONFIG)
    return CustomJsonAdapter(load_config(Path(p)))


@pytest.mark.parametrize(("value", "name", "outcome", "error_type", "app_takes"), ROWS)
def test_an_error_field_gives_its_name(value: Any, name: str, outcome: str, error_type: str,
                                       app_takes: bool) -> None:
    assert error_name(value) == name


@pytest.mark.parametrize(("value", "name", "outcome", "error_type", "app_takes"), ROWS)
def test_both_json_readers_make_the_same_outcome_of_an_error_field(
        mapping: CustomJsonAdapter, value: Any, name: str, outcome: str, error_type: str, app_takes: bool) -> None:
    mapped = {"kind": "call", "ms": 5, "error": value}
    [rec] = mapping.parse_json(orjson.dumps(mapped), mapped)  # the request (no custom metrics)
    assert (rec["outcome"], rec["error_type"]) == (outcome, error_type)
    line = {"request_id": "r1", "duration_ms": 5, "error": value}
    if app_takes:
        rec = AppJsonAdapter().parse_json(orjson.dumps(line), line)
        assert (rec["outcome"], rec["error_type"]) == (outcome, error_type)
    else:
        with pytest.raises(Invalid) as e:
            AppJsonAdapter().parse_json(orjson.dumps(line), line)
        assert str(e.value) == "bad_value"


@pytest.mark.parametrize(("status", "err_name", "level", "want"), [
    # a status says it first: a bool, an HTTP code (400 and up failed), or a word in any case
    (True, "", None, ("success", "")),
    (True, "ValueError", None, ("success", "")),  # the status outranks an error name
    (False, "", None, ("error", OTHER)),
    (399, "", None, ("success", "")),
    (400, "", None, ("error", "validation")),
    (401, "", None, ("error", OTHER)),
    (500, "ValueError", None, ("error", "ValueError")),  # a failed code with a name: the name's class
    (500, "", None, ("error", OTHER)),
    ("timeout", "", None, ("error", "timeout")),
    ("TIMEOUT", "", None, ("error", "timeout")),
    ("failed", "", None, ("error", OTHER)),
    ("failed", "TimeoutError", None, ("error", "timeout")),
    ("cancelled", "", "ERROR", ("aborted", "")),
    # no status: the error name, then the level
    (None, "", None, ("success", "")),
    (None, "", "error", ("error", OTHER)),
    (None, "RateLimitError", "INFO", ("error", "overloaded")),
])
def test_the_outcome_a_request_line_states(status: Any, err_name: str, level: Any,
                                           want: tuple[str, str]) -> None:
    assert outcome_of(status, err_name, level) == want


def test_no_error_name_given_is_no_error() -> None:
    assert outcome_of(None) == ("success", "")
    assert outcome_of("ok") == ("success", "")
