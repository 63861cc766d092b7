"""Graceful stop: on SIGTERM stop reading, finish the lines in hand, serve /metrics for the grace, exit 0."""

from __future__ import annotations

import json
import random
import signal
import time

from tests.helpers import Exporter, http_get, parse_metrics, total


def _data(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        status = rnd.choice(["success", "success", "error"])
        out.append(json.dumps({"request_id": f"g{i}", "model": "m", "status": status,
                               "total_time_ms": rnd.randint(1, 5000)}))
    return ("\n".join(out) + "\n").encode()


def test_sigterm_finishes_lines_in_hand_and_serves_the_grace() -> None:
    """Every line of the bytes read before the stop is counted; /metrics answers after SIGTERM; exit 0."""
    data = _data(40_000, seed=5)
    with Exporter("--no-passthrough", "--shutdown-grace", "3") as e:
        e.wait_ready()
        e.stdin.write(data)
        e.stdin.flush()
        e.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "lines read before the stop were not all counted"
            code, _, body = http_get(e.url + "/metrics")
            assert code == 200
            s = parse_metrics(body.decode())
            read = int(total(s, "llm_exporter_bytes_total", source="stdin"))
            lines = data[:read].count(b"\n")
            if total(s, "llm_exporter_lines_total", source="stdin") == lines and \
                    http_get(e.url + "/readyz")[0] == 503:
                break
            time.sleep(0.05)
        # the same scrape, independently: the request counters are those of the first `lines` lines
        head = [json.loads(x) for x in data.split(b"\n")[:lines]]
        assert total(s, "llm_requests_total", outcome="success") == sum(r["status"] == "success" for r in head)
        assert total(s, "llm_requests_total", outcome="error") == sum(r["status"] == "error" for r in head)
        assert total(s, "llm_exporter_lines_total", source="stdin", outcome="record") == lines
        assert e.proc.wait(20) == 0
        err = [json.loads(x) for x in e.stderr_text().splitlines()]
        assert [x["msg"] for x in err if x["msg"] == "stopping"] == ["stopping"]


def test_second_signal_cuts_the_grace_short() -> None:
    """A second SIGTERM during a long --shutdown-grace ends the process at once, still exit 0."""
    with Exporter("--no-passthrough", "--shutdown-grace", "600") as e:
        e.wait_ready()
        e.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while http_get(e.url + "/readyz")[0] != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http_get(e.url + "/metrics")[0] == 200
        e.proc.send_signal(signal.SIGTERM)
        assert e.proc.wait(20) == 0


def test_ingest_refuses_pushes_once_stopping() -> None:
    """During the grace, /ingest answers 503 instead of 204 for lines nobody would count."""
    import urllib.request

    def push(url: str) -> int:
        req = urllib.request.Request(url + "/ingest", data=b'{"latency_ms": 5}\n', method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    with Exporter("--no-passthrough", "--http-ingest", "--shutdown-grace", "600") as e:
        e.wait_ready()
        assert push(e.url) == 204
        e.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while http_get(e.url + "/readyz")[0] != 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert push(e.url) == 503
        while total(parse_metrics(http_get(e.url + "/metrics")[2].decode()), "llm_exporter_lines_total",
                    source="http", outcome="record") != 1:  # the accepted push is counted, the refused not
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert total(parse_metrics(http_get(e.url + "/metrics")[2].decode()), "llm_exporter_lines_total",
                     source="http") == 1
        e.proc.send_signal(signal.SIGTERM)
        assert e.proc.wait(20) == 0
