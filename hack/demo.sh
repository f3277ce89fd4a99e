#!/usr/bin/env bash
# The main job end to end on the local cluster (make demo brings it up and
# pushes the project image first): install, add alpine, status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"
export KUBECONFIG=$KUBECONFIG_ADMIN
plugin="$ICD_ROOT/bin/kubectl-imagecache"

# The plugin installs the release image of its own version,
# ghcr.io/dcherman/image-cache-daemon:VERSION; make image pushed it to the
# local registry, which the cluster's containerd uses as its ghcr.io mirror.
run() { echo "+ kubectl imagecache $*"; "$plugin" "$@"; echo; }
run install --wait
run add alpine --wait
run status
run list

echo "The cluster stays up. To use it: export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "  $plugin status -o wide     # per node"
echo "  make cluster-down          # stop it"
