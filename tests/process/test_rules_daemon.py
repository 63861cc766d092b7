"""--config rules in the running daemon, on every source at once: stdin (passthrough), a followed
CRI pod log with --file-labels, and HTTP push; counts against the lines written here."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Exporter, total

RULES = r"""
rules:
  - name: done
    provider: mysrv
    pattern: 'req (?P<request_id>\w+) done in (?P<duration_ms>\d+)ms out=(?P<output_tokens>\d+) status=(?P<status>\d+)'
"""


def done(i: int) -> bytes:
    # request i: 10+i ms, i%5+1 output tokens; every 7th a 503
    return b"req r%d done in %dms out=%d status=%d" % (i, 10 + i, i % 5 + 1, 503 if i % 7 == 0 else 200)


def test_rules_on_stdin_file_and_push(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(RULES)
    pod = tmp_path / "var/log/pods/llm_srv-0_0b2c4d6e-8f01-4a3b-9c5d-7e9f1a3b5c7d/srv"
    pod.mkdir(parents=True)
    (pod / "0.log").write_bytes(b"".join(b"2026-01-01T00:00:00.000000001Z stdout F " + done(i) + b"\n"
                                         for i in range(100, 150)))
    stdin = b"".join(done(i) + b"\n" for i in range(100)) + b"a line no rule knows\n"
    with Exporter("--config", str(cfg), "--file", str(pod / "*.log"), "--file-start", "beginning",
                  "--file-labels", "--http-ingest", "--stdin", stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE) as e:
        e.wait_ready()
        assert e.proc.stdin is not None and e.proc.stdout is not None
        e.proc.stdin.write(stdin)
        e.proc.stdin.flush()
        # text lines arrive wrapped by a log shipper (Fluent Bit's `log` field)
        body = b"\n".join(b'{"log": "%s"}' % done(i) for i in range(150, 170))
        r = urllib.request.Request(e.url + "/ingest", data=body, method="POST",
                                   headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(r, timeout=10) as resp:
            assert resp.status == 204
        s = e.wait_lines(171)
        assert e.proc.stdout.read(len(stdin)) == stdin  # passthrough is unchanged
        errors = sum(1 for i in range(170) if i % 7 == 0)
        assert total(s, "llm_requests_total", gen_ai_provider_name="mysrv") == 170
        assert total(s, "llm_requests_total", outcome="error") == errors
        assert total(s, "llm_exporter_lines_total", outcome="unparsed") == 1
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(i % 5 + 1 for i in range(170))
        assert total(s, "gen_ai_server_request_duration_seconds_sum") == \
            pytest.approx(sum(10 + i for i in range(170)) / 1000)
        assert total(s, "llm_requests_total", k8s_pod_name="srv-0", k8s_namespace_name="llm") == 50
        assert total(s, "llm_exporter_lines_total", source="http", outcome="record") == 20
