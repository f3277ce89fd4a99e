#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries that the local cluster runs, at the
# version pinned in hack/kube/go.mod, into a cache outside the repository, plus
# crictl (CRI client used to clean up pods when the cluster goes down).
# A second run with the same version finds them there and builds nothing.
# Prints the directory that holds the binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

crictl_version=v1.37.0
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
cache=${ICD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-cache-daemon}
out="$cache/kube/$version/bin"
bins=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl etcd)

complete=true
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || complete=false; done
if ! $complete; then
  major=${version#v}; major=${major%%.*}
  minor=${version#v*.}; minor=${minor%%.*}
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

  tmp="$out.tmp.$$"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"
  echo "building Kubernetes $version binaries into $out (first run: about 10 minutes)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kubectl \
    ./etcd
  [[ -d $out ]] && cp -p "$out"/crictl "$tmp"/ 2>/dev/null || true
  rm -rf "$out"
  mv "$tmp" "$out"
fi
if [[ ! -x "$out/crictl" ]]; then
  GOBIN="$out" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version" >&2
fi
echo "$out"
