#!/usr/bin/env bash
# Builds the project image from the Dockerfile and the binaries in BIN with
# buildah (no Docker engine, no network: the Dockerfile is FROM scratch), pushes
# it to the local registry and prints the pushed reference with its digest.
#
#   hack/image.sh BIN IMAGE      e.g. hack/image.sh bin 127.0.0.1:5000/dcherman/image-cache-daemon:v0.1.0
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:?usage: image.sh BIN IMAGE}
image=${2:?usage: image.sh BIN IMAGE}

if ! command -v buildah >/dev/null; then
  echo "image.sh: buildah is missing: run hack/cluster/deps.sh (installs Debian's buildah)" >&2
  exit 1
fi
# vfs needs no kernel overlay support and works inside containers; the storage
# is buildah's own, apart from the cluster's containerd.
buildah=(buildah --storage-driver vfs)

ctx=$(mktemp -d)
digest=$(mktemp)
# Whatever happens, buildah's storage (full copies under vfs) does not keep
# the image: the registry holds it.
cleanup() {
  "${buildah[@]}" rmi "$image" >/dev/null 2>&1 || true
  rm -rf "$ctx" "$digest"
}
trap cleanup EXIT
cp "$root/Dockerfile" "$ctx/"
cp "$bin/image-cache-daemon" "$bin/warden" "$ctx/"

"${buildah[@]}" bud --quiet --layers=false -f "$ctx/Dockerfile" -t "$image" "$ctx" >/dev/null
"${buildah[@]}" push --quiet --tls-verify=false --digestfile "$digest" "$image" "docker://$image"
echo "$image@$(cat "$digest")"
