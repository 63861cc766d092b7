"""All sources in one process: a wrapped child, a CRI pod log file, HTTP push, each counted exactly."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from tests.helpers import Exporter, total


def req(i: int) -> bytes:
    return orjson.dumps({"request_id": f"r{i}", "model": "m", "status": "success", "duration_ms": 10 + i % 90,
                         "output_tokens": i % 11 + 1})


def test_wrapper_file_and_push_feed_one_pipeline_with_envelopes_peeled(tmp_path: Path) -> None:
    """Child stdout (compose prefix), a CRI file with P partials, docker json-file over /ingest."""
    ready = tmp_path / "child-done"
    child = (f"import sys, orjson\n"
             f"for i in range(0, 400): print('app-1  | ' + orjson.dumps({{'request_id': f'r{{i}}', "
             f"'model': 'm', 'status': 'success', 'duration_ms': 10 + i % 90, 'output_tokens': i % 11 + 1}})"
             f".decode())\n"
             f"sys.stdout.flush(); open({str(ready)!r}, 'w').close()\n"
             f"import time; time.sleep(120)\n")
    pod = tmp_path / "pods" / "ns_pod_uid" / "vllm"
    pod.mkdir(parents=True)
    cri = bytearray()
    for i in range(400, 700):  # every third line split in three CRI fragments
        line = req(i)
        if i % 3:
            cri += b"2026-01-01T00:00:00.000000001Z stdout F " + line + b"\n"
        else:
            a, b = len(line) // 3, 2 * len(line) // 3
            for flag, part in ((b"P", line[:a]), (b"P", line[a:b]), (b"F", line[b:])):
                cri += b"2026-01-01T00:00:00.000000001Z stdout " + flag + b" " + part + b"\n"
    (pod / "0.log").write_bytes(bytes(cri))
    fragments = sum(2 for i in range(400, 700) if i % 3 == 0)
    docker = b"\n".join(orjson.dumps({"log": req(i).decode() + "\n", "stream": "stdout", "time": "t"})
                        for i in range(700, 1000))
    with Exporter("--queue-chunks", "100000", "--file", str(tmp_path / "pods" / "*" / "*" / "*.log"),
                  "--file-start", "beginning", "--http-ingest", "--", sys.executable, "-c", child,
                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        r = urllib.request.Request(e.url + "/ingest", data=docker, method="POST",
                                   headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(r, timeout=10) as resp:
            assert resp.status == 204
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        s = e.wait_lines(1000 + fragments)
        assert total(s, "llm_exporter_lines_total", source="stdout", outcome="record") == 400
        assert total(s, "llm_exporter_lines_total", source="file", outcome="record") == 300
        assert total(s, "llm_exporter_lines_total", source="file", outcome="ignored") == fragments
        assert total(s, "llm_exporter_lines_total", source="http", outcome="record") == 300
        assert total(s, "llm_requests_total") == 1000
        assert total(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == \
            sum(i % 11 + 1 for i in range(1000))
        e.proc.terminate()
        assert e.proc.wait(20) == 143
