#!/usr/bin/env bash
# Adds a node to the running local cluster, or removes one (see lib.sh:
# node_up). Nodes are numbered 2 to 8; node K is named icd-nodeK.
#
#   hack/cluster/node.sh add K [KUBELET_FLAG...]
#       e.g. add 3 --register-with-taints=KEY=VALUE:NoSchedule
#       (waits until the node is Ready; says so if it is up already)
#   hack/cluster/node.sh remove K [--delete]
#       stops the node's parts and removes its pods, network and state;
#       --delete also deletes its Node object (otherwise it goes NotReady,
#       as a machine that vanished)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "the local cluster needs root"
[[ $# -ge 2 && $2 =~ ^[2-8]$ ]] || usage
cmd=$1 k=$2; shift 2
[[ -f $KUBECONFIG_ADMIN && -f $PKI/ca.key ]] || die "no cluster is up (make cluster-up)"
BIN=$(kube_bin_dir)

case $cmd in
  add)
    if [[ -d $(node_state "$k") ]]; then
      log "node $(node_name "$k") is up already"
      exit 0
    fi
    trap 'rc=$?; if [[ $rc -ne 0 ]]; then log "adding node $k failed (exit $rc); see $LOGS/node$k-*.log"; node_down "$k"; fi' EXIT
    node_up "$k" "$@"
    trap - EXIT
    ;;
  remove)
    delete=false
    case ${1:-} in --delete) delete=true ;; "") ;; *) usage ;; esac
    node_down "$k"
    if $delete; then
      "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" delete node "$(node_name "$k")" --ignore-not-found
    fi
    ;;
  *) usage ;;
esac
