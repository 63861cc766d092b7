"""Start-up imports only what the configured features use."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_daemon_without_a_config_file_does_not_load_the_yaml_reader() -> None:
    mods = _modules_after("import llm_exporter.app, llm_exporter.server, llm_exporter.exposition")
    assert "llm_exporter.app" in mods
    assert "yaml" not in mods


def test_a_config_file_still_loads_it() -> None:
    mods = _modules_after("from llm_exporter.config import load_config\n"
                          "import tempfile, os\n"
                          "f = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False)\n"
                          "f.write('{}\\n'); f.close()\n"
                          "load_config(f.name); os.unlink(f.name)")
    assert "yaml" in mods


def test_replay_does_not_load_the_http_server() -> None:
    """`replay` reads files: the sources' HTTP and process machinery stays out of it."""
    mods = _modules_after("import llm_exporter.commands, llm_exporter.sources")
    assert "llm_exporter.sources.base" in mods
    assert "aiohttp" not in mods
    assert "llm_exporter.sources.http_push" not in mods
