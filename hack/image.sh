#!/usr/bin/env bash
# Builds the project image from the Dockerfile with buildah (no Docker engine,
# no network: the Dockerfile is FROM scratch and only copies), one image per
# platform from that platform's prebuilt binaries, gathered in a manifest
# list; pushes the list to DEST and prints IMAGE@DIGEST (the list's digest).
#
#   hack/image.sh IMAGE DEST PLATFORM=DIR[,DIR] ...
#
# Each DIR holds image-cache-daemon and/or warden for PLATFORM. Examples:
#   hack/image.sh 127.0.0.1:5000/dcherman/image-cache-daemon:dev docker://127.0.0.1:5000/dcherman/image-cache-daemon:dev linux/amd64=bin
#   hack/image.sh ghcr.io/dcherman/image-cache-daemon:v0.1.0 oci-archive:image.tar \
#     linux/amd64=dist/image-cache-daemon_linux_amd64_v1,dist/warden_linux_amd64_v1 \
#     linux/arm64=dist/image-cache-daemon_linux_arm64_v8.0,dist/warden_linux_arm64_v8.0
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: image.sh IMAGE DEST PLATFORM=DIR[,DIR] ..."
image=${1:?$usage}
dest=${2:?$usage}
shift 2
[[ $# -gt 0 ]] || { echo "$usage" >&2; exit 2; }

if ! command -v buildah >/dev/null; then
  echo "image.sh: buildah is missing: run hack/cluster/deps.sh (installs Debian's buildah)" >&2
  exit 1
fi
# vfs needs no kernel overlay support and works inside containers; the
# storage is buildah's own, apart from the cluster's containerd.
buildah=(buildah --storage-driver vfs)

work=$(mktemp -d)
list="localhost/icd-image-list-$$"
# Whatever happens, buildah's storage (full copies under vfs) keeps nothing:
# DEST holds the result.
cleanup() {
  "${buildah[@]}" manifest rm "$list" >/dev/null 2>&1 || true
  for id in $(cat "$work/ids" 2>/dev/null); do "${buildah[@]}" rmi "$id" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"${buildah[@]}" manifest create "$list" >/dev/null
for spec in "$@"; do
  platform=${spec%%=*}
  ctx="$work/${platform//\//-}"
  mkdir -p "$ctx"
  cp "$root/Dockerfile" "$ctx/"
  IFS=, read -r -a dirs <<<"${spec#*=}"
  for bin in image-cache-daemon warden; do
    for d in "${dirs[@]}"; do
      [[ -f $d/$bin ]] && cp "$d/$bin" "$ctx/"
    done
    [[ -f $ctx/$bin ]] || { echo "image.sh: no $bin for $platform in ${spec#*=}" >&2; exit 1; }
  done
  "${buildah[@]}" bud --quiet --layers=false --platform "$platform" --iidfile "$ctx.iid" \
    -f "$ctx/Dockerfile" "$ctx" >/dev/null
  cat "$ctx.iid" >>"$work/ids"; echo >>"$work/ids"
  "${buildah[@]}" manifest add "$list" "$(cat "$ctx.iid")" >/dev/null
done
tls=()
case $dest in
  docker://127.0.0.1:* | docker://localhost:*) tls=(--tls-verify=false) ;; # the local registry speaks HTTP
esac
"${buildah[@]}" manifest push --quiet --all "${tls[@]}" --digestfile "$work/digest" "$list" "$dest"
echo "$image@$(cat "$work/digest")"
