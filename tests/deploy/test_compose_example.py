"""examples/docker-compose.yml: its files exist, its ports stay on loopback, and the exporter's
command line in it runs for real (the demo app under wrapper mode gives metrics)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from llm_exporter.cli import daemon_parser, settings_from_args
from tests.helpers import ROOT, Exporter, total

EXAMPLES = ROOT / "examples"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    return data


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    return (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])


def test_compose_mounts_existing_files_and_publishes_on_loopback_only() -> None:
    """Every bind mount names a file of the repository; every published port is 127.0.0.1's."""
    services = compose()["services"]
    assert {"llm-exporter", "prometheus", "grafana"} <= services.keys()
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (EXAMPLES / src).exists(), (name, src)
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    prom = yaml.safe_load((EXAMPLES / "prometheus" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["llm-exporter:10060"]
    ds = yaml.safe_load((EXAMPLES / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_exporter_commands_parse() -> None:
    """The exporters' command lines in the compose file are valid llm-exporter invocations."""
    for name in ("llm-exporter", "llm-exporter-vllm"):
        own, child = split(compose()["services"][name]["command"])
        settings_from_args(daemon_parser().parse_args(own), child)


def test_compose_wrapper_command_gives_metrics() -> None:
    """The llm-exporter service's command, run here with the demo app, counts its requests."""
    own, child = split(compose()["services"]["llm-exporter"]["command"])
    assert child[:2] == ["python3", "/demo/demo_app.py"]
    # a fixed run of the same app (the last flags win), counted here on its own: JSON lines are requests
    child = [sys.executable, str(EXAMPLES / "demo_app.py"), *child[2:], "--count", "60", "--seed", "7", "--rate", "0"]
    out = subprocess.run(child, capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert len(out) == 60
    # the app then stays up (sleeps) so the exporter is still there to be scraped
    with Exporter("--no-passthrough", *own, "--", "sh", "-c", '"$@"; exec sleep 120', "sh", *child) as exp:
        exp.wait_ready()
        samples = exp.wait_lines(60)
        assert total(samples, "llm_exporter_lines_total") == 60
        assert total(samples, "llm_requests_total") == sum(1 for ln in out if ln.startswith("{"))
        assert total(samples, "llm_requests_total", outcome="error") == \
            sum(1 for ln in out if '"translation_failed"' in ln)


def test_vllm_entrypoint_keeps_the_log_volume_bounded(tmp_path: Path) -> None:
    """The vLLM service's bash entrypoint, run for real with its size cut to 4 KiB: every line reaches
    the container log, the log directory holds vllm.log and vllm.log.1 only, each within the size,
    and together they end with the newest lines, whole."""
    entry = [a.replace("$$", "$").replace("268435456", "4096") for a in compose()["services"]["vllm"]["entrypoint"]]
    assert entry[-1] == "/logs/vllm.log"
    entry[-1] = str(tmp_path / "vllm.log")
    lines = [f'{{"request_id": "r{i}", "pad": "{"x" * 50}"}}' for i in range(1000)]
    writer = [sys.executable, "-c", "import sys; [print(line) for line in sys.argv[1:]]", *lines]
    r = subprocess.run(entry + writer, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vllm.log", "vllm.log.1"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    kept = (tmp_path / "vllm.log.1").read_text() + (tmp_path / "vllm.log").read_text()
    assert kept.endswith("\n") and r.stdout.endswith(kept)
