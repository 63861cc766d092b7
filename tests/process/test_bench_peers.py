"""The benchmark's peers do the work they are credited with: mtail's programs and the hand-written
exporter count the same requests as the independent count of the input (else a ratio against them
would compare with a peer that skips lines)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench import inputs, workload
from tests.helpers import ROOT, SAMPLES, parse_metrics, tool, total

MTAIL = ROOT / "bench" / "mtail"


def mtail_one_shot(program: Path, log: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = subprocess.run([tool("mtail"), "--one_shot", "--one_shot_format", "prometheus", "--progs", str(program),
                        "--logs", str(log), "--address", "127.0.0.1", "--port", "0", "--logtostderr",
                        "--stderrthreshold", "FATAL"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return parse_metrics(r.stdout)


@pytest.fixture(scope="module")
def app_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, workload.Truth]:
    path = tmp_path_factory.mktemp("peers") / "app.log"
    workload.write(path, 8000, 13)
    return path, workload.count(path.read_bytes())


def by_model(want: workload.Truth) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], Counter[str]]:
    requests: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    durations: Counter[str] = Counter()
    for (_, model, outcome), n in want.requests.items():
        requests[(model, outcome)] += n
    for (_, model, et), n in want.errors.items():
        errors[(model, et)] += n
    for (_, model), n in want.duration_n.items():
        durations[model] += n
    return requests, errors, durations


def check(s: dict[tuple[str, tuple[tuple[str, str], ...]], float], want: workload.Truth) -> None:
    requests, errors, durations = by_model(want)
    for (model, outcome), n in requests.items():
        assert total(s, "app_requests_total", model=model, outcome=outcome) == n, (model, outcome)
    assert total(s, "app_requests_total") == sum(requests.values())
    # the peers keep the error names as logged; fold them the way the count does to compare
    got: Counter[tuple[str, str]] = Counter()
    for (name, labels), v in s.items():
        if name == "app_request_errors_total":
            lbl = dict(labels)
            got[(lbl["model"], workload.error_class(lbl["error_type"]))] += int(v)
    assert got == errors
    for model, n in durations.items():
        assert total(s, "app_request_duration_seconds_count", model=model) == n, model
    assert total(s, "app_queue_duration_seconds_count") == want.queue_n
    assert total(s, "app_queue_duration_seconds_sum") == pytest.approx(want.queue_s, rel=1e-9)
    assert total(s, "app_time_to_first_token_seconds_count") == want.ttft_n


def test_mtail_application_program_counts_every_request(app_log: tuple[Path, workload.Truth]) -> None:
    path, want = app_log
    s = mtail_one_shot(MTAIL / "app.mtail", path)
    check(s, want)
    for (method, p, code), n in want.access.items():
        assert total(s, "app_http_requests_total", method=method, path=p, code=code) == n


def test_baseline_exporter_counts_every_request(app_log: tuple[Path, workload.Truth]) -> None:
    path, want = app_log
    with path.open("rb") as fh:
        r = subprocess.run([sys.executable, str(ROOT / "bench" / "baseline_exporter.py"), "--print"], stdin=fh,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"{want.lines} lines in ")
    check(parse_metrics(r.stdout), want)


def test_mtail_server_program_reads_tgi_timings_vllm_stats_and_access_lines(tmp_path: Path) -> None:
    """On the real samples: every TGI Success line with its total time in seconds, every access line,
    and the last vLLM stats line's gauges."""
    mix = tmp_path / "mix.log"
    inputs.server_mix(mix, sum(len((SAMPLES / n).read_bytes().splitlines()) for n in inputs.MIX_SAMPLES))
    s = mtail_one_shot(MTAIL / "server.mtail", mix)
    lines = mix.read_text(encoding="utf-8").splitlines()
    success = [x for x in lines if "text_generation_router::server" in x and x.endswith("Success")]
    assert len(success) == 5  # by hand: four generate{...} and one chat_completions{...}
    assert total(s, "tgi_requests_total", route="chat_completions") == 1
    assert total(s, "tgi_requests_total") == len(success)
    assert total(s, "tgi_request_duration_seconds_sum", route="chat_completions") == pytest.approx(0.735200735)
    assert total(s, "tgi_request_duration_seconds_count") == len(success)
    access = [x for x in lines if ' HTTP/1.1" ' in x and "INFO:" in x]
    assert total(s, "http_requests_total") == len(access) > 0
    stats = [x for x in lines if "Avg prompt throughput:" in x and "GPU KV cache usage" in x]
    last = stats[-1]
    gen = float(last.split("Avg generation throughput: ")[1].split(" ")[0])
    assert total(s, "vllm_generation_throughput_tokens_per_second") == pytest.approx(gen)
