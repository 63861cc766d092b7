"""Workload labels from a followed file's path (`--file-labels`): which pod or container wrote it.

One exporter on a node's log directory or a shared volume can then tell workloads apart. Known
layouts (OpenTelemetry resource attribute names, dots as underscores):

- kubelet's pod logs `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` (also rotated
  `<n>.log.<timestamp>` and compressed siblings): `k8s_namespace_name`, `k8s_pod_name`,
  `k8s_container_name`;
- kubelet's symlinks `/var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log`: the
  same three;
- Docker's json-file logs `/var/lib/docker/containers/<id>/<id>-json.log[.N]`: `container_id`.

Any other path gives no labels (the label is then empty). Values are bounded like every label
value (`--label-limit` folds new values past it into `_OTHER`).
"""

from __future__ import annotations

import re

#: the labels `--file-labels` adds to the request families, in this order
NAMES = ("k8s_namespace_name", "k8s_pod_name", "k8s_container_name", "container_id")

# Kubernetes names: DNS labels / subdomains (lowercase letters, digits, '-', '.'); a uid is a UUID
_POD_DIR = re.compile(r"(?:^|/)pods/([a-z0-9][a-z0-9-]*)_([a-z0-9][a-z0-9.-]*)_([0-9a-f-]{8,36})/"
                      r"([a-z0-9][a-z0-9-]*)/\d+\.log(?:\.[^/]*)?$")
_CONTAINERS_LINK = re.compile(r"(?:^|/)containers/([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9-]*)_"
                              r"([a-z0-9][a-z0-9-]*)-[0-9a-f]{64}\.log$")
_DOCKER = re.compile(r"(?:^|/)containers/([0-9a-f]{64})/\1-json\.log(?:\.\d+)?$")


def path_labels(path: str) -> dict[str, str]:
    """The workload labels a log file's path names (empty when it follows no known layout)."""
    m = _POD_DIR.search(path)
    if m is not None:
        return {"k8s_namespace_name": m.group(1), "k8s_pod_name": m.group(2), "k8s_container_name": m.group(4)}
    m = _CONTAINERS_LINK.search(path)
    if m is not None:
        return {"k8s_namespace_name": m.group(2), "k8s_pod_name": m.group(1), "k8s_container_name": m.group(3)}
    m = _DOCKER.search(path)
    if m is not None:
        return {"container_id": m.group(1)}
    return {}
