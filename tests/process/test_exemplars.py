"""Exemplars: a real exporter's OpenMetrics scrape carries request ids per bucket; Prometheus stores them."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
import urllib.parse
from bisect import bisect_left
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from llm_exporter.metrics.hist import DURATION_BUCKETS, TTFT_BUCKETS
from tests.helpers import Exporter, free_port, http_get, tool

OM = {"Accept": "application/openmetrics-text; version=1.0.0"}


def _lines(n: int, seed: int) -> tuple[list[bytes], dict[str, dict[int, str]]]:
    """n request lines; and, per histogram, the id of the last observation in each bucket."""
    rnd = random.Random(seed)
    last: dict[str, dict[int, str]] = {"duration": {}, "ttft": {}}
    out = []
    for i in range(n):
        dur_ms = round(rnd.choice([5, 30, 200, 900, 3000, 12000]) * rnd.uniform(0.8, 1.2), 3)
        ttft_ms = round(dur_ms * rnd.uniform(0.01, 0.3), 3)
        rid = f"req-{seed}-{i}"
        out.append(json.dumps({"request_id": rid, "model": "m", "task_type": "chat", "status": "success",
                               "total_time_ms": dur_ms, "ttft_ms": ttft_ms, "output_tokens": 5}).encode())
        last["duration"][bisect_left(DURATION_BUCKETS, dur_ms / 1000)] = rid
        last["ttft"][bisect_left(TTFT_BUCKETS, ttft_ms / 1000)] = rid
    return out, last


def _bounds(le: str) -> float:
    return float("inf") if le == "+Inf" else float(le)


def test_openmetrics_scrape_has_the_last_request_id_of_each_bucket() -> None:
    """Each non-empty bucket's exemplar is the request id of the last line that fell into it."""
    lines, last = _lines(300, seed=7)
    with Exporter("--no-passthrough") as e:
        e.wait_ready()
        e.stdin.write(b"\n".join(lines) + b"\n")
        e.stdin.flush()
        e.wait_lines(len(lines))
        code, headers, body = http_get(e.url + "/metrics", OM)
        assert code == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
        text = body.decode()
        assert text.endswith("# EOF\n")
        found: dict[str, dict[int, str]] = {"duration": {}, "ttft": {}}
        names = {"gen_ai_server_request_duration_seconds": ("duration", DURATION_BUCKETS),
                 "gen_ai_server_time_to_first_token_seconds": ("ttft", TTFT_BUCKETS)}
        for fam in text_string_to_metric_families(text):
            if fam.name not in names:
                continue
            key, bounds = names[fam.name]
            for s in fam.samples:
                if s.name.endswith("_bucket") and s.exemplar is not None:
                    le = _bounds(s.labels["le"])
                    i = len(bounds) if le == float("inf") else bounds.index(le)
                    found[key][i] = s.exemplar.labels["request_id"]
                    lo = 0.0 if i == 0 else bounds[i - 1]
                    assert lo < s.exemplar.value <= le
        assert found == last
        # the plain text format carries no exemplars
        assert " # {" not in e.scrape()


def test_prometheus_stores_the_exemplars() -> None:
    """A real Prometheus with exemplar storage scrapes the exporter and answers query_exemplars."""
    prom = tool("prometheus")
    lines, last = _lines(50, seed=11)
    slow_bucket = max(last["duration"])
    with Exporter("--no-passthrough") as e:
        e.wait_ready()
        e.stdin.write(b"\n".join(lines) + b"\n")
        e.stdin.flush()
        e.wait_lines(len(lines))
        port = free_port()
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            (work / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: llm\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{e.port}']}}]\n")
            p = subprocess.Popen([prom, f"--config.file={work / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={work / 'data'}",
                                  f"--web.listen-address=127.0.0.1:{port}",
                                  "--enable-feature=exemplar-storage"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                q = urllib.parse.urlencode({
                    "query": "gen_ai_server_request_duration_seconds_bucket",
                    "start": time.time() - 3600, "end": time.time() + 3600})
                ids: set[str] = set()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and last["duration"][slow_bucket] not in ids:
                    time.sleep(0.5)
                    try:
                        code, _, body = http_get(f"http://127.0.0.1:{port}/api/v1/query_exemplars?{q}")
                    except OSError:
                        continue
                    if code != 200:
                        continue
                    for series in json.loads(body)["data"]:
                        ids.update(x["labels"]["request_id"] for x in series["exemplars"])
            finally:
                p.terminate()
                p.wait(10)
    assert last["duration"][slow_bucket] in ids
    assert ids <= {rid for rid in (x for b in last.values() for x in b.values())}
