#!/usr/bin/env bash
# Installs the release tools at pinned versions from the Go module proxy, once
# per version, into a cache outside the repository, and prints that directory.
#
#   hack/tools.sh        prints e.g. ~/.cache/image-cache-daemon/tools/v2  (goreleaser, krew, validate-krew-manifest)
set -euo pipefail

GORELEASER_VERSION=v2.14.3 # the newest v2 that builds with Go 1.26
KREW_VERSION=v0.4.3

cache=${ICD_CACHE:-$HOME/.cache/image-cache-daemon}
dir="$cache/tools/goreleaser-$GORELEASER_VERSION-krew-$KREW_VERSION"
mkdir -p "$dir"

install() { # install NAME PACKAGE@VERSION
  [[ -x $dir/$1 ]] && return 0
  echo "tools: go install $2" >&2
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath "$2"
}
install goreleaser github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION
install krew sigs.k8s.io/krew/cmd/krew@$KREW_VERSION
install validate-krew-manifest sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION
echo "$dir"
