"""The repository stands alone: no tracked file reads or names anything beside the checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import ROOT

# The sibling directory of the checkout, or the development machine's paths (written so that this
# file does not match itself).
OUTSIDE = re.compile(r"\.\./shared\b|/work/(?:main|wt|shared)\b")
# Words of how the project came about, not of what it does: user docs describe the log shapes themselves.
JARGON = re.compile(r"\bseed[- ](?:app|application|shape|translator|log)s?\b", re.IGNORECASE)
USER_DOCS = ("README.md", "docs/", "examples/", "helm/", "bench/")
EXCLUDED = {"CHANGELOG.md"}  # history may name what was removed


def tracked_files() -> list[Path]:
    """The tracked files (git ls-files); every file under the root when this is not a git checkout."""
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if r.returncode == 0 and r.stdout:
        names = [n for n in r.stdout.decode().split("\0") if n]
    else:
        skip = {".git", ".venv", ".tools", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__"}
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    assert len(names) > 50, names
    return [ROOT / n for n in names if n not in EXCLUDED and (ROOT / n).is_file()]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


def test_the_pattern_finds_what_it_must() -> None:
    for bad in (".." + "/shared" + "/bench/x.py", "read ../" + "shared", "/work" + "/shared/x",
                "/work" + "/main/.tools"):
        assert OUTSIDE.search(bad), bad
    for ok in ("a shared volume", "shared by every source", "../helm/llm-exporter/README.md"):
        assert not OUTSIDE.search(ok), ok
    assert JARGON.search("the Seed applications' logs") and not JARGON.search("--seed N")


def test_no_tracked_file_reads_anything_beside_the_checkout() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
            for p in tracked_files() for n, line in enumerate(_text(p).splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_no_parent_shared_directory_in_code() -> None:
    """Code that builds the path from parts (the checkout's parent joined with that name) is caught too."""
    pat = re.compile(r"parent\s*/\s*[\"']shared[\"']")
    hits = [str(p.relative_to(ROOT)) for p in tracked_files() if p.suffix == ".py" and pat.search(_text(p))]
    assert not hits, hits


def test_user_docs_describe_the_log_shapes_themselves() -> None:
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
            for p in tracked_files() if str(p.relative_to(ROOT)).startswith(USER_DOCS)
            for n, line in enumerate(_text(p).splitlines(), 1) if JARGON.search(line)]
    assert not hits, "\n".join(hits)
