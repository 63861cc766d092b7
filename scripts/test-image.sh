#!/usr/bin/env bash
# Builds the llm-exporter image from the Dockerfile with podman (no Docker engine needed) and runs
# tests/deploy/test_image.py against it: non-root, read-only root filesystem, /healthz, HEALTHCHECK, and
# metrics from piped input, and wrapper mode's derived image (examples/wrapper-image). Usage: scripts/test-image.sh [IMAGE_TAG]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
IMAGE=${1:-localhost/llm-exporter:$(sed -n 's/^__version__ = "\(.*\)"/\1/p' llm_exporter/__init__.py)}
eval "$(bash scripts/image-tools.sh | tail -n 1)"
# RUN steps download wheels: give them this host's CA bundle and pip settings (a registry mirror
# or a TLS-intercepting proxy needs them); both are read-only bind mounts, not image content.
mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
[ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
start=$(date +%s)
# --no-cache: with the build stage cached (a change outside llm_exporter/), podman cannot bind-mount
# that stage's /wheels into the final one ("couldn't find .../merged/wheels on host")
podman build --quiet --no-cache --format docker --pull=never "${mounts[@]}" \
  --build-arg "LLM_EXPORTER_REVISION=$(git rev-parse --short HEAD 2>/dev/null || true)" -t "$IMAGE" . >/dev/null
echo "built $IMAGE in $(( $(date +%s) - start )) s: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
LLM_EXPORTER_IMAGE=$IMAGE .venv/bin/pytest -q -p no:cacheprovider tests/deploy/test_image.py tests/deploy/test_wrapper_image.py
