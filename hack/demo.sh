#!/usr/bin/env bash
# The main job end to end on the local cluster (make demo brings it up and
# pushes the project image first): install, add alpine, status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
export KUBECONFIG=$KUBECONFIG_ADMIN
image=$(cat "$ICD_ROOT/bin/image-ref")
plugin="$ICD_ROOT/bin/kubectl-imagecache"

run() { echo "+ kubectl imagecache $*"; "$plugin" "$@"; echo; }
run install --image "$image" --wait
run add alpine --wait
run status
run list

echo "The cluster stays up. To use it: export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "  $plugin status -o wide     # per node"
echo "  make cluster-down          # stop it"
