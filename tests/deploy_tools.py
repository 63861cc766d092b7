"""Finding the deployment tools (helm, kubernetes-validate, hadolint, promtool) for the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.helpers import ROOT, tool

TOOLS_BIN = ROOT / ".tools" / "bin"  # scripts/install-helm.sh puts helm here
VENV_BIN = Path(sys.executable).parent  # kubernetes-validate and hadolint come with the test extra


def deploy_tool(name: str) -> str:
    """Path of a tool from .tools/bin, the test venv, or PATH; fails in CI and skips locally if absent."""
    for d in (TOOLS_BIN, VENV_BIN):
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return tool(name)
