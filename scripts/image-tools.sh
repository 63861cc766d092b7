#!/usr/bin/env bash
# Prepares this machine to build and run the llm-exporter image without a Docker engine:
# podman, buildah and runc from Debian, a containers.conf for hosts where crun and rlimits fail,
# and, when the Dockerfile's base image cannot be pulled, a Debian bookworm base made with
# debootstrap and tagged as docker.io/library/python:3.11-slim. Idempotent and fast when done.
# Prints the environment to export (CONTAINERS_CONF, BUILDAH_ISOLATION) on its last lines.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$ROOT/.tools/containers
BASE=docker.io/library/python:3.11-slim
mkdir -p "$WORK"

need=()
for t in podman buildah runc debootstrap; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    podman buildah runc debootstrap fuse-overlayfs slirp4netns netavark conmon >/dev/null
fi

# runc instead of crun (crun refuses hybrid cgroups here), and rlimits a process without
# CAP_SYS_RESOURCE may set
cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$WORK/containers.conf BUILDAH_ISOLATION=chroot

if ! podman image exists "$BASE"; then
  if ! podman pull -q "$BASE" >/dev/null 2>&1; then
    echo "image-tools: $BASE cannot be pulled; making it from Debian packages with debootstrap" >&2
    rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
      bookworm "$rootfs" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
  fi
fi
echo "podman $(podman version --format '{{.Client.Version}}'), base image $BASE ready"
echo "export CONTAINERS_CONF=$CONTAINERS_CONF BUILDAH_ISOLATION=chroot"
