"""The Dockerfile passes hadolint and states what the image promises (multi-stage, non-root fixed
uid, port 10060, llm-exporter as entrypoint, a HEALTHCHECK). `make test-image` builds and runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.deploy_tools import deploy_tool
from tests.helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([deploy_tool("hadolint"), "--format", "json", str(path)], capture_output=True, text=True,
                          timeout=60)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing at all on the Dockerfile."""
    r = hadolint(DOCKERFILE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout or "[]") == []


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint does fail on a Dockerfile with an untagged base image and ADD for a local file."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nADD exporter /app\n")
    r = hadolint(bad)
    assert r.returncode == 1
    assert {f["code"] for f in json.loads(r.stdout)} >= {"DL3006", "DL3020"}


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_fixed_non_root_user() -> None:
    """Two stages (wheel, runtime), USER 10060, EXPOSE 10060, ENTRYPOINT llm-exporter,
    HEALTHCHECK `llm-exporter healthcheck`."""
    ins = instructions()
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert any(w == "RUN" and "pip wheel" in a for w, a in ins)
    assert ("ARG", "UID=10060") in ins
    user = [a for w, a in ins if w == "USER"]
    assert user == ["${UID}:${UID}"]
    assert ("EXPOSE", "10060") in ins
    assert ("ENTRYPOINT", '["llm-exporter"]') in ins
    health = [a for w, a in ins if w == "HEALTHCHECK"]
    assert len(health) == 1 and "llm-exporter\", \"healthcheck" in health[0] and "curl" not in health[0]
