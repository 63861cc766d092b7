#!/usr/bin/env python3
"""Writes examples/kubernetes/<mode>.yaml: the Helm chart rendered for each mode as plain manifests.

The chart is the one source; these files are for people who apply manifests without Helm. Helm's
own bookkeeping labels, the `helm test` pod and the dashboard ConfigMap are left out.
Usage: render-k8s-examples.py [--check]   (--check: exit 1 if a file is out of date)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "llm-exporter"
OUT = ROOT / "examples" / "kubernetes"
MODES = {"tail": "tail-values.yaml", "wrapper": "wrapper-values.yaml", "push": "push-values.yaml"}
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def helm() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    return str(local) if local.exists() else "helm"


def render(mode: str) -> str:
    out = subprocess.run(
        [helm(), "template", "llm-exporter", str(CHART), "--namespace", "llm", "-f", str(CHART / "ci" / MODES[mode]),
         "--set", "test.enabled=false", "--set", "dashboard.enabled=false"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"}).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for d in docs:
        for key in HELM_LABELS:
            d["metadata"].get("labels", {}).pop(key, None)
    head = (f"# llm-exporter beside vLLM, {mode} mode: plain manifests for `kubectl apply -n llm -f`.\n"
            f"# Generated from helm/llm-exporter with ci/{MODES[mode]} by scripts/render-k8s-examples.py;\n"
            "# change the chart, then run the script again. Set the exporter image to one your cluster pulls.\n")
    return head + yaml.safe_dump_all(docs, sort_keys=False, width=110)


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for mode in MODES:
        path = OUT / f"{mode}.yaml"
        text = render(mode)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date: " + ", ".join(stale) + " (run scripts/render-k8s-examples.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
