"""One image reference everywhere: the docs, the Dockerfile's usage lines, the Makefile, the
compose example, the plain Kubernetes manifests and the Helm chart's default all name
`llm-exporter:<package version>`; and wrapper mode's derived image is the one the chart's example
values name."""

from __future__ import annotations

import re
import subprocess

import yaml

from llm_exporter import __version__
from tests.deploy.test_helm_chart import CHART, container, helm, pod_spec, render
from tests.helpers import ROOT, tool

WANT = f"llm-exporter:{__version__}"
# an image reference: llm-exporter:TAG (not the host:port llm-exporter:10060, not "llm-exporter: error")
REF = re.compile(r"(?<![\w/.-])(?:[\w.-]+/)*llm-exporter:(?!10060\b)([\w][\w.-]*)")


def tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    kinds = (".md", ".yml", ".yaml", ".sh", ".txt", ".tpl")
    return [p for p in out.splitlines()
            if (not p.startswith(("tests/", "CHANGELOG")) and p.endswith(kinds)) or p in ("Dockerfile", "Makefile")]


def test_every_image_reference_is_the_package_version() -> None:
    found = {}
    for path in tracked_text_files():
        for m in REF.finditer((ROOT / path).read_text()):
            found.setdefault(m.group(0).rsplit("/", 1)[-1], set()).add(path)
    assert found, "no image reference found"
    assert set(found) == {WANT}, found
    for must in ("docs/deployment.md", "Dockerfile", "examples/docker-compose.yml", "examples/kubernetes/tail.yaml"):
        assert must in found[WANT], must


def test_make_image_tags_the_same_reference() -> None:
    out = subprocess.run([tool("make"), "-n", "image", "DOCKER=docker"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert f"docker build -t {WANT} ." in out


def test_compose_and_chart_run_that_image() -> None:
    compose = yaml.safe_load((ROOT / "examples" / "docker-compose.yml").read_text())
    images = {s["image"] for s in compose["services"].values() if "llm-exporter" in s.get("image", "")}
    assert images == {WANT}
    exporter = container(pod_spec(render()), "llm-exporter")
    assert exporter["image"] == WANT


def test_wrapper_mode_names_the_image_make_wrapper_image_builds() -> None:
    out = subprocess.run([tool("make"), "-n", "wrapper-image", "DOCKER=docker"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    built = re.search(r"docker build .*-t (\S+) examples/wrapper-image", out)
    assert built is not None, out
    values = yaml.safe_load((CHART / "ci" / "wrapper-values.yaml").read_text())["server"]["image"]
    assert f"{values['repository'].rsplit('/', 1)[-1]}:{values['tag']}" == built.group(1)
    assert helm("lint", str(CHART), "-f", str(CHART / "ci" / "wrapper-values.yaml")).returncode == 0
