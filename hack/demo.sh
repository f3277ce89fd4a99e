#!/usr/bin/env bash
# The main job end to end on the local cluster (make demo brings it up first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
export KUBECONFIG=$KUBECONFIG_ADMIN
kubectl=("$(kube_bin_dir)/kubectl")

echo "+ kubectl get nodes -o wide"
"${kubectl[@]}" get nodes -o wide
echo
echo "The cluster stays up: export KUBECONFIG=$KUBECONFIG_ADMIN to use it; make cluster-down stops it."
