#!/usr/bin/env bash
# Installs the real tools the test suite runs, when they are missing. Debian packages via apt
# (root, or sudo when available); nothing here downloads outside the package registries.
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v mtail >/dev/null || need+=(mtail)
command -v chromium >/dev/null || need+=(chromium)  # the landing page's browser test
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "install-tools: missing ${need[*]} and no apt-get; the tests that need them will fail" >&2
    exit 1
  fi
fi
promtool --version 2>&1 | head -1
# helm (official binary, into .tools/bin) for the chart tests
bash "$(dirname "$0")/install-helm.sh"
