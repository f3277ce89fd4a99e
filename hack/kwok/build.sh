#!/usr/bin/env bash
# Builds kwok's controller (sigs.k8s.io/kwok/cmd/kwok, only that binary: no
# kwokctl, no cluster of its own) from the Go module proxy into the cache that
# holds hack/kube/build.sh's binaries, in a directory of its own beside
# theirs (kube/VERSION/bin is replaced whole when they are rebuilt), and
# prints the directory that holds it. A second run finds it there and builds
# nothing. The fleet benchmark (hack/bench/fleet.go) runs it against the local
# cluster's API server to simulate nodes.
#
# kwok also needs its Stage objects (it refuses to start without them): they
# are copied from the same module version into $out/stages/.
set -euo pipefail

kwok_version=${KWOK_VERSION:-v0.8.0}
cache=${ICD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-cache-daemon}
out="$cache/kwok/$kwok_version/bin"
bin="$out/kwok"

if [[ ! -x $bin ]]; then
  mkdir -p "$out"
  tmp=$(mktemp -d "$out/kwok.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building kwok $kwok_version into $out (first run: a few minutes)" >&2
  # Outside any module (GOFLAGS=-mod=mod would touch ours): go install
  # pkg@version builds with kwok's own go.mod.
  (cd "$tmp" && GOBIN="$tmp" GOFLAGS= CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version" \
    "sigs.k8s.io/kwok/cmd/kwok@$kwok_version")
  mv "$tmp/kwok" "$bin"
fi
if [[ ! -d $out/stages ]]; then
  src=$(cd "$out" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [[ -d $src/kustomize/stage ]] || { echo "no kustomize/stage in $src" >&2; exit 1; }
  rm -rf "$out/stages.tmp"
  cp -r "$src/kustomize/stage" "$out/stages.tmp"
  chmod -R u+w "$out/stages.tmp"
  mv "$out/stages.tmp" "$out/stages"
fi
echo "$out"
