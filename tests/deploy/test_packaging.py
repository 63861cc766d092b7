"""The wheel users install: built from pyproject.toml by pip as a user would, with license
metadata in the current form (an SPDX expression and the license file), and no build warnings."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_wheel_has_spdx_license_metadata_and_builds_without_warnings(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp_path),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "deprecated" not in out.lower(), out
    assert "warning" not in out.lower(), out
    [wheel] = tmp_path.glob("llm_exporter-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        names = z.namelist()
    headers = [line for line in meta.splitlines() if line.startswith(("License", "Metadata-Version"))]
    assert "License-Expression: Apache-2.0" in headers, headers
    assert "License-File: LICENSE" in headers, headers
    assert not any(h.startswith("License: ") for h in headers), headers  # the old free-text field
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
