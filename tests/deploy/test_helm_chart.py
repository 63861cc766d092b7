"""The Helm chart: real `helm lint --strict` and `helm template` for every scenario, the rendered
manifests validated against the Kubernetes schemas by `kubernetes-validate --strict`, and pytest
assertions over the rendered objects (helm-unittest cannot be installed here)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_exporter.cli import daemon_parser, settings_from_args
from tests.deploy_tools import deploy_tool
from tests.helpers import ROOT, Exporter, app_logs, total

CHART = ROOT / "helm" / "llm-exporter"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
K8S_VERSIONS = ("1.29.0", "1.37.0")  # the first with native sidecars, and the newest schemas here


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([deploy_tool("helm"), *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def render(*args: str, release: str = "rel") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", "llm", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def values_args(scenario: str | None) -> list[str]:
    return ["-f", str(CHART / "ci" / scenario)] if scenario else []


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no container {name}")


def exporter_argv(docs: list[dict[str, Any]]) -> list[str]:
    """The llm-exporter argv the pod runs, in whichever mode."""
    spec = pod_spec(docs)
    names = [c["name"] for c in spec["containers"] + spec.get("initContainers", [])]
    if "llm-exporter" in names:
        return list(container(spec, "llm-exporter")["args"])
    server = container(spec, "server")
    assert server["command"] == ["llm-exporter"]
    return list(server["args"])


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_chart_lints_strictly(scenario: str | None) -> None:
    """`helm lint --strict` passes with the default values and with every ci/ scenario."""
    r = helm("lint", "--strict", str(CHART), *values_args(scenario))
    assert "0 chart(s) failed" in r.stdout


@pytest.mark.parametrize("scenario", [None, *SCENARIOS])
def test_rendered_manifests_pass_kubernetes_schemas(scenario: str | None, tmp_path: Path) -> None:
    """Every rendered object except the Prometheus Operator's CRDs passes strict schema validation."""
    docs = render(*values_args(scenario))
    builtin = [d for d in docs if d["kind"] not in CRD_KINDS]
    assert {d["apiVersion"] for d in docs if d["kind"] in CRD_KINDS} <= {"monitoring.coreos.com/v1"}
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    for version in K8S_VERSIONS:
        r = subprocess.run([deploy_tool("kubernetes-validate"), "--strict", "-k", version, str(path)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.count(" passed for resource ") == len(builtin), r.stdout + r.stderr


def test_schema_validation_rejects_a_misplaced_field(tmp_path: Path) -> None:
    """The validator is strict: an unknown container field in a rendered Deployment fails it."""
    dep = one(render(), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["port"] = 8000
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dep))
    r = subprocess.run([deploy_tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "'port' was unexpected" in r.stdout + r.stderr


def test_defaults_deploy_no_operator_objects_and_no_network_policy() -> None:
    """ServiceMonitor, PodMonitor, PrometheusRule and NetworkPolicy are off unless asked for."""
    kinds = sorted(d["kind"] for d in render())
    assert kinds == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]


def test_exporter_container_has_safe_defaults() -> None:
    """Non-root fixed uid, read-only root filesystem, no capabilities, requests, /healthz and /readyz."""
    c = container(pod_spec(render()), "llm-exporter")
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10060
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 10060, "protocol": "TCP"}]


def test_tail_mode_shares_a_log_volume() -> None:
    """tail: the server writes tail.logDir, the exporter sidecar follows logDir/*.log read-only."""
    spec = pod_spec(render("-f", str(CHART / "ci" / "tail-values.yaml")))
    server, exp = container(spec, "server"), container(spec, "llm-exporter")
    assert [c["name"] for c in spec["containers"]] == ["server", "llm-exporter"]
    assert server["command"][:2] == ["/bin/bash", "-c"] and server["command"][3] == "/var/log/llm/server.log"
    assert {"name": "logs", "mountPath": "/var/log/llm"} in server["volumeMounts"]
    assert {"name": "logs", "mountPath": "/var/log/llm", "readOnly": True} in exp["volumeMounts"]
    assert "--file=/var/log/llm/*.log" in exp["args"] and "--file-start=beginning" in exp["args"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["logs"]["emptyDir"]["sizeLimit"] == "1Gi" and "emptyDir" in vols["state"]


def test_native_sidecar_is_an_always_restarting_init_container() -> None:
    """tail.nativeSidecar puts the exporter in initContainers with restartPolicy Always."""
    spec = pod_spec(render("-f", str(CHART / "ci" / "tail-native-values.yaml")))
    assert [c["name"] for c in spec["containers"]] == ["server"]
    assert [(c["name"], c["restartPolicy"]) for c in spec["initContainers"]] == [("llm-exporter", "Always")]


def test_native_sidecar_is_refused_before_kubernetes_1_29() -> None:
    """Rendering a native sidecar for Kubernetes 1.28 fails with one clear message."""
    r = helm("template", "rel", str(CHART), "-f", str(CHART / "ci" / "tail-native-values.yaml"),
             "--kube-version", "1.28.0", check=False)
    assert r.returncode != 0
    assert "tail.nativeSidecar needs Kubernetes 1.29 or later" in r.stderr


def test_wrapper_mode_runs_the_server_under_llm_exporter() -> None:
    """wrapper: one container whose command is llm-exporter, the server's argv after `--`."""
    docs = render("-f", str(CHART / "ci" / "wrapper-values.yaml"))
    spec = pod_spec(docs)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [c["name"] for c in spec["containers"]] == ["server"]
    server = container(spec, "server")
    args = server["args"]
    assert args[args.index("--") + 1:] == values["server"]["command"] + values["server"]["args"]
    assert "--gpu=auto" in args  # the exporter shares the server's GPUs
    assert {p["name"] for p in server["ports"]} == {"http", "metrics"}
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "volumes" not in spec


def test_push_mode_takes_the_token_from_a_secret() -> None:
    """push: --http-ingest, the bearer token from a Secret, and a NetworkPolicy on both ports."""
    docs = render("-f", str(CHART / "ci" / "push-values.yaml"))
    exp = container(pod_spec(docs), "llm-exporter")
    assert "--http-ingest" in exp["args"]
    env = {e["name"]: e for e in exp["env"]}
    ref = env["LLM_EXPORTER_HTTP_INGEST_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = one(docs, "Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert base64.b64decode(secret["data"][ref["key"]]) == b"change-me"
    policy = one(docs, "NetworkPolicy")
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == ["metrics", "http"]
    assert len(policy["spec"]["ingress"][0]["from"]) == 2


def test_push_mode_without_a_token_needs_a_network_policy() -> None:
    """push with neither a token nor a NetworkPolicy naming who may push does not render (one
    line saying what to set); with such a policy it renders the explicit unauthenticated flag,
    which the exporter accepts."""
    r = helm("template", "rel", str(CHART), "--set", "mode=push", check=False)
    assert r.returncode != 0 and "push.token" in r.stderr and "networkPolicy" in r.stderr, r.stderr
    r = helm("template", "rel", str(CHART), "--set", "mode=push", "--set", "networkPolicy.enabled=true",
             check=False)
    assert r.returncode != 0, "a policy that lets every peer in is no guard"
    docs = render("--set", "mode=push", "--set", "networkPolicy.enabled=true",
                  "--set", "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=shipper")
    args = container(pod_spec(docs), "llm-exporter")["args"]
    assert "--http-ingest" in args and "--http-ingest-allow-unauthenticated" in args
    assert "env" not in container(pod_spec(docs), "llm-exporter")
    settings = settings_from_args(daemon_parser().parse_args(args), [])
    assert settings.http_ingest_allow_unauthenticated and settings.http_ingest_token is None
    assert not any(d["kind"] == "Secret" for d in docs)
    with_token = container(pod_spec(render("-f", str(CHART / "ci" / "push-values.yaml"))), "llm-exporter")
    assert "--http-ingest-allow-unauthenticated" not in with_token["args"]


@pytest.mark.parametrize("scenario", [None, *(s for s in SCENARIOS if s != "sidecar-only-values.yaml")])
def test_rendered_exporter_flags_are_accepted_by_llm_exporter(scenario: str | None) -> None:
    """The exporter's argv in every scenario parses with the real command line and settings."""
    docs = render(*values_args(scenario))
    argv = exporter_argv(docs)
    own, command = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    settings = settings_from_args(daemon_parser().parse_args(own), command)
    assert settings.host_port == ("0.0.0.0", 10060)


def test_monitors_select_the_metrics_port() -> None:
    """ServiceMonitor and PodMonitor select the chart's labels and a port named metrics that exists."""
    docs = render("-f", str(CHART / "ci" / "monitoring-values.yaml"))
    svc, pod = one(docs, "Service"), one(docs, "Deployment")["spec"]["template"]
    sm, pm = one(docs, "ServiceMonitor"), one(docs, "PodMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_prometheus_rule_renders_the_example_rules(tmp_path: Path) -> None:
    """The PrometheusRule holds exactly examples/prometheus/rules.yaml, and promtool accepts it."""
    rule = one(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    example = yaml.safe_load((ROOT / "examples" / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == example["groups"]
    (tmp_path / "from-chart.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([deploy_tool("promtool"), "check", "rules", str(tmp_path / "from-chart.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chart_copies_of_rules_and_dashboard_are_identical() -> None:
    """The chart's files/rules.yaml and dashboards/llm-exporter.json equal the examples byte for byte."""
    assert (CHART / "files" / "rules.yaml").read_bytes() == (ROOT / "examples/prometheus/rules.yaml").read_bytes()
    assert ((CHART / "dashboards" / "llm-exporter.json").read_bytes()
            == (ROOT / "examples/grafana/llm-exporter.json").read_bytes())


def test_dashboard_configmap_is_found_by_grafana_sidecar() -> None:
    """The dashboard ConfigMap carries grafana_dashboard: "1" and the example dashboard JSON."""
    cm = one(render(), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    example = json.loads((ROOT / "examples" / "grafana" / "llm-exporter.json").read_text())
    assert json.loads(cm["data"]["llm-exporter.json"]) == example


def test_names_are_cut_to_63_characters() -> None:
    """A 53-character release name (helm's longest) still gives valid names of at most 63 characters."""
    release = "a" * 50 + "xyz"
    docs = render("-f", str(CHART / "ci" / "monitoring-values.yaml"), release=release)
    for d in docs:
        name = d["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_unknown_mode_fails_with_a_clear_message() -> None:
    """mode=sidecar is refused naming the three modes."""
    r = helm("template", "rel", str(CHART), "--set", "mode=sidecar", check=False)
    assert r.returncode != 0 and 'mode must be wrapper, tail or push, not "sidecar"' in r.stderr


def test_every_values_key_is_commented() -> None:
    """Each key of values.yaml has a comment line above it, or belongs to a documented key's value."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_at: int | None = None  # indent of the documented key whose value we are inside
    prev = ""
    for line in lines:
        m = re.match(r"^(\s*)(- )?([A-Za-z_][\w.-]*):", line)
        if not m or m.group(2):
            prev = line if line.strip() else prev
            continue
        indent = len(m.group(1))
        if documented_at is not None and indent > documented_at:
            prev = line
            continue
        documented_at = None
        assert prev.strip().startswith("#"), f"values.yaml key without a comment: {line.strip()}"
        if prev.strip().startswith("# --"):
            documented_at = indent
        prev = line


def test_helm_test_pod_fetches_metrics_from_the_service() -> None:
    """The test hook's script passes against a live exporter and fails against something else."""
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    cmd = pod["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["python3", "-c"] and cmd[3] == "http://rel-llm-exporter:10060/metrics"
    with Exporter("--no-passthrough", "--gpu", "off") as exp:
        exp.wait_ready()
        ok = subprocess.run([sys.executable, "-c", cmd[2], exp.url + "/metrics"], capture_output=True, text=True,
                            timeout=30)
        bad = subprocess.run([sys.executable, "-c", cmd[2], exp.url + "/healthz"], capture_output=True,
                             text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0


def test_tail_mode_server_command_copies_output_to_the_log_file(tmp_path: Path) -> None:
    """The rendered bash wrapper writes the server's stdout and stderr to the shared file and to the
    container log, and keeps the server's exit code."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.workload import main; main(['200', '3']); "
              "sys.stdout.flush(); print('warn', file=sys.stderr); sys.exit(3)")
    command = json.dumps(["python3", "-c", script])
    docs = render("--set", f"tail.logDir={tmp_path}", "--set-json", f"server.command={command}",
                  "--set-json", "server.args=[]")
    server = container(pod_spec(docs), "server")
    r = subprocess.run(server["command"] + server.get("args", []), capture_output=True, text=True, timeout=60)
    expected = app_logs(200, 3).decode()
    assert r.returncode == 3
    assert r.stdout == expected + "warn\n"  # stderr joins stdout, as in a container log
    assert (tmp_path / "server.log").read_text() == expected + "warn\n"


PARENT_DEPLOYMENT = """\
{{- $chart := dict "Name" "llm-exporter" "AppVersion" "0.1.0" }}
{{- $exp := dict "Values" (index .Values "llm-exporter") "Chart" $chart "Release" .Release }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
spec:
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
        {{- include "llm-exporter.selectorLabels" $exp | nindent 8 }}
    spec:
      containers:
        - name: app
          image: myapp:1
        {{- include "llm-exporter.container" $exp | nindent 8 }}
"""


def test_container_snippet_adds_the_sidecar_to_your_own_deployment(tmp_path: Path) -> None:
    """A parent chart depending on this one puts the exporter into its own pods with the
    llm-exporter.container snippet; the subchart's Service and ServiceMonitor then find them."""
    parent = tmp_path / "myapp"
    (parent / "templates").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "myapp", "version": "1.0.0",
        "dependencies": [{"name": "llm-exporter", "version": "0.1.0", "repository": f"file://{CHART}"}]}))
    sub = yaml.safe_load((CHART / "ci" / "sidecar-only-values.yaml").read_text())
    (parent / "values.yaml").write_text(yaml.safe_dump({"llm-exporter": {**sub, "mode": "push",
                                                                         "push": {"token": "t0k"}}}))
    (parent / "templates" / "deployment.yaml").write_text(PARENT_DEPLOYMENT)
    helm("dependency", "build", str(parent))
    out = helm("template", "rel", str(parent), "--namespace", "llm").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]))
    r = subprocess.run([deploy_tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    dep = one(docs, "Deployment")
    assert dep["metadata"]["name"] == "myapp"  # the subchart deploys no server of its own
    pod = dep["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "llm-exporter"]
    assert "--http-ingest" in container(pod["spec"], "llm-exporter")["args"]
    svc, sm = one(docs, "Service"), one(docs, "ServiceMonitor")
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def _json_lines(text: str) -> int:
    n = 0
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            continue
        n += 1
    return n


def _local_argv(argv: list[str], tmp_path: Path) -> list[str]:
    """The rendered exporter argv with the pod's listen address and state path moved to this machine."""
    out = [a for a in argv if not a.startswith("--listen=")]
    return [f"--state-dir={tmp_path / 'state'}" if a.startswith("--state-dir=") else a for a in out]


def test_tail_mode_pod_commands_count_every_server_line(tmp_path: Path) -> None:
    """The rendered server command (bash + tee) and exporter argv, run as processes: every line the
    server wrote is read from the shared directory, and the requests match the lines."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.workload import main; main(['1500', '8'])"
    logs = tmp_path / "logs"
    logs.mkdir()
    command = json.dumps(["python3", "-c", script])
    docs = render("--set", f"tail.logDir={logs}", "--set-json", f"server.command={command}",
                  "--set-json", "server.args=[]")
    server = container(pod_spec(docs), "server")
    out = subprocess.run(server["command"], capture_output=True, text=True, timeout=60, check=True).stdout
    with Exporter(*_local_argv(exporter_argv(docs), tmp_path)) as exp:
        exp.wait_ready()
        samples = exp.wait_lines(out.count("\n"))
    assert total(samples, "llm_exporter_lines_total") == out.count("\n") == 1500
    assert total(samples, "llm_requests_total") == _json_lines(out)


def test_wrapper_mode_container_argv_counts_the_childs_lines(tmp_path: Path) -> None:
    """The rendered wrapper-mode argv, run as a process: llm-exporter runs the server command as its
    child and counts each of its lines."""
    script = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from bench.workload import main; "
              "main(['1200', '9']); sys.stdout.flush(); time.sleep(30)")
    docs = render("-f", str(CHART / "ci" / "wrapper-values.yaml"), "--set-json",
                  "server.command=" + json.dumps([sys.executable, "-c", script]), "--set-json", "server.args=[]")
    expected = app_logs(1200, 9).decode()
    with Exporter(*_local_argv(exporter_argv(docs), tmp_path), stdout=subprocess.DEVNULL) as exp:
        exp.wait_ready()
        samples = exp.wait_lines(1200)
        exp.stop()  # SIGTERM reaches the child through the exporter
    assert total(samples, "llm_exporter_lines_total") == 1200
    assert total(samples, "llm_requests_total") == _json_lines(expected)


def test_push_mode_exporter_accepts_lines_with_the_rendered_token(tmp_path: Path) -> None:
    """The rendered push-mode argv and the token from the rendered Secret, run for real: /ingest
    refuses a request without the token and counts every line of one with it."""
    docs = render("-f", str(CHART / "ci" / "push-values.yaml"))
    token = base64.b64decode(one(docs, "Secret")["data"]["token"]).decode()
    lines = app_logs(800, 4).decode().splitlines(keepends=True)
    body = "".join(line for line in lines if line.startswith("{")).encode()  # /ingest takes NDJSON only
    n = body.count(b"\n")
    with Exporter(*_local_argv(exporter_argv(docs), tmp_path),
                  env={"LLM_EXPORTER_HTTP_INGEST_TOKEN": token}) as exp:
        exp.wait_ready()
        def post(headers: dict[str, str]) -> int:
            req = urllib.request.Request(exp.url + "/ingest", data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return int(r.status)
            except urllib.error.HTTPError as e:
                return int(e.code)
        assert post({"Content-Type": "application/x-ndjson"}) == 401
        assert post({"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"}) == 204
        samples = exp.wait_lines(n)
    assert total(samples, "llm_exporter_lines_total") == n > 700
    assert total(samples, "llm_requests_total") == _json_lines(body.decode()) == n


ROTATING_WRITER = r"""
import json, os, sys, time, urllib.request
url, logdir, result = sys.argv[1], sys.argv[2], sys.argv[3]
def counted():
    body = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith("llm_exporter_lines_total{"))
written, biggest, sizes = 0, 0, []
for batch in range(40):
    for i in range(100):
        print(json.dumps({"request_id": f"b{batch}-{i}", "model": "m", "status": "success",
                          "duration_ms": 100 + i, "input_tokens": 10, "output_tokens": 20, "pad": "x" * 60}))
    sys.stdout.flush()
    written += 100
    deadline = time.monotonic() + 120
    while counted() < written:  # the exporter's own count, not a fixed wait
        assert time.monotonic() < deadline, f"exporter stuck below {written}"
        time.sleep(0.05)
    names = sorted(os.listdir(logdir))
    biggest = max(biggest, sum(os.path.getsize(os.path.join(logdir, n)) for n in names))
    sizes.append({n: os.path.getsize(os.path.join(logdir, n)) for n in names})
json.dump({"written": written, "biggest": biggest, "sizes": sizes}, open(result, "w"))
"""


def test_tail_mode_log_volume_stays_bounded_past_the_rotation_size(tmp_path: Path) -> None:
    """The rendered server wrapper writing ten times tail.rotateSize: the log directory never holds
    more than two files of about that size, no line is cut between files, and the rendered exporter
    argv counts every line across the renames."""
    logs = tmp_path / "logs"
    logs.mkdir()
    cap = 64 * 1024
    with Exporter("--no-stdin", "--gpu", "off", "--no-passthrough", "--file-start", "beginning",
                  "--file", f"{logs}/*.log", "--state-dir", str(tmp_path / "state")) as exp:
        exp.wait_ready()
        command = json.dumps(["python3", "-c", ROTATING_WRITER, exp.url, str(logs), str(tmp_path / "result.json")])
        docs = render("--set", f"tail.logDir={logs}", "--set", "tail.rotateSize=64Ki",
                      "--set-json", f"server.command={command}", "--set-json", "server.args=[]")
        assert exporter_argv(docs)[exporter_argv(docs).index(f"--file={logs}/*.log")]  # the argv used above
        server = container(pod_spec(docs), "server")
        r = subprocess.run(server["command"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr + r.stdout[-2000:]
        samples = exp.wait_lines(4000)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["written"] == 4000 and len(r.stdout.splitlines()) == 4000  # the container log has them all
    assert total(samples, "llm_exporter_lines_total") == 4000
    assert total(samples, "llm_exporter_lines_total", outcome="record") == 4000  # no line cut in two
    assert total(samples, "llm_requests_total") == 4000
    assert result["biggest"] <= 2 * cap, result["biggest"]
    assert sum(1 for s in result["sizes"] if "server.log.1" in s) >= 5  # it did rotate, many times
    assert all(set(s) <= {"server.log", "server.log.1"} for s in result["sizes"])
    assert all(v <= cap for s in result["sizes"] for v in s.values())
    # what is left on disk is whole lines, the newest ones
    kept = (logs / "server.log.1").read_text() + (logs / "server.log").read_text()
    assert kept.endswith("\n") and r.stdout.endswith(kept)


def test_rotation_size_must_be_a_size() -> None:
    r = helm("template", "rel", str(CHART), "--set", "tail.rotateSize=lots", check=False)
    assert r.returncode != 0 and "tail.rotateSize must be a number of bytes or end in Ki, Mi or Gi" in r.stderr
