"""examples/kubernetes/: plain manifests for the three modes, rendered from the chart, kept fresh,
and valid against the Kubernetes schemas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.deploy_tools import TOOLS_BIN, deploy_tool
from tests.helpers import ROOT

EXAMPLES = ROOT / "examples" / "kubernetes"
MODES = ("tail", "wrapper", "push")


def test_examples_match_the_chart() -> None:
    """Re-rendering the chart gives exactly the committed example files."""
    deploy_tool("helm")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "render-k8s-examples.py"), "--check"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_example_manifests_pass_kubernetes_schemas(mode: str) -> None:
    """Each example validates strictly against Kubernetes 1.29 and has the mode's exporter wiring."""
    path = EXAMPLES / f"{mode}.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    r = subprocess.run([deploy_tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" passed for resource ") == len(docs)
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["llm-exporter/mode"] == mode
    assert not any("helm.sh/chart" in d["metadata"].get("labels", {}) for d in docs)
