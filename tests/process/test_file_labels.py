"""--file-labels through the real file tail: kubelet's pod log layout (CRI lines), Docker's
json-file layout, and a path of neither kind, followed by one exporter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.helpers import Exporter, total

UID = "3f9a1d2e-5c4b-4e7a-9b1c-2d3e4f5a6b7c"
CID = "9c1a6f0e" * 8  # 64 hex digits, as Docker names a container


def app_line(i: int) -> bytes:
    return orjson.dumps({"request_id": f"r{i}", "model": "m", "status": "success", "duration_ms": 5 + i})


def cri(i: int) -> bytes:
    return b"2024-05-01T10:00:0%d.000000000Z stdout F " % (i % 10) + app_line(i) + b"\n"


def docker(i: int) -> bytes:
    return orjson.dumps({"log": app_line(i).decode() + "\n", "stream": "stdout",
                         "time": "2024-05-01T10:00:00.000000000Z"}) + b"\n"


def _layout(root: Path) -> list[Path]:
    """kubelet: /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log; Docker:
    /var/lib/docker/containers/<id>/<id>-json.log; and an application's own log file."""
    a = root / "var/log/pods" / f"llm_vllm-0_{UID}" / "vllm" / "0.log"
    b = root / "var/log/pods" / f"team-b_tgi-7d9f8c6b5-x2x4z_{UID[:-1]}d" / "server" / "1.log"
    c = root / "var/lib/docker/containers" / CID / f"{CID}-json.log"
    d = root / "srv" / "app.log"
    for p in (a, b, c, d):
        p.parent.mkdir(parents=True)
    a.write_bytes(b"".join(cri(i) for i in range(3)))
    b.write_bytes(b"".join(cri(i) for i in range(3, 5)))
    c.write_bytes(docker(5))
    d.write_bytes(app_line(6) + b"\n")
    return [a, b, c, d]


def _run(tmp_path: Path, *flags: str) -> dict:  # type: ignore[type-arg]
    files = _layout(tmp_path)
    args = ["--no-stdin", "--file-start", "beginning", *flags]
    for f in files:
        args += ["--file", str(f)]
    with Exporter(*args, stdout=subprocess.DEVNULL) as e:
        e.wait_ready()
        return e.wait_lines(7)


def test_pod_and_container_labels_from_the_path(tmp_path: Path) -> None:
    s = _run(tmp_path, "--file-labels")
    assert total(s, "llm_requests_total") == 7
    assert total(s, "llm_requests_total", k8s_namespace_name="llm", k8s_pod_name="vllm-0",
                 k8s_container_name="vllm", container_id="") == 3
    assert total(s, "llm_requests_total", k8s_namespace_name="team-b", k8s_pod_name="tgi-7d9f8c6b5-x2x4z",
                 k8s_container_name="server") == 2
    assert total(s, "llm_requests_total", container_id=CID, k8s_pod_name="") == 1
    assert total(s, "llm_requests_total", container_id="", k8s_pod_name="") == 1  # srv/app.log


def test_off_by_default(tmp_path: Path) -> None:
    s = _run(tmp_path)
    assert total(s, "llm_requests_total") == 7
    assert not any(dict(labels).get("k8s_pod_name") is not None or dict(labels).get("container_id") is not None
                   for _, labels in s)
