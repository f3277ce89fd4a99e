#!/usr/bin/env bash
# Brings the local cluster down: removes every pod sandbox (so no container or
# containerd shim is left), stops exactly the processes up.sh started (by
# their recorded PID), unmounts what the kubelet and containerd mounted,
# removes kube-proxy's iptables rules, the bridge, the network namespaces and
# veth pairs of the slow registry and of the nodes beyond the first, and
# deletes the state.
# Safe to run when nothing is up, after a crash, or after a half-finished up.
#   --keep-logs  leave STATE/logs in place (up.sh uses it when it fails)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep_logs=false
[[ ${1:-} == --keep-logs ]] && keep_logs=true
[[ $(id -u) -eq 0 ]] || die "the local cluster needs root"

BIN=$(kube_bin_dir 2>/dev/null) || BIN=""
CRICTL=("$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK" --timeout 30s)

# The nodes beyond the first, each with its pods, parts and network.
# (A node whose bring-up failed half-way may have left only its namespace.)
for k in {2..8}; do
  if [[ -d $(node_state "$k") || -e /run/netns/$(node_netns "$k") ]]; then node_down "$k"; fi
done

# Nothing may recreate pods while they are being removed.
proc_stop kube-proxy kubelet

# Pod containers run under containerd shims that outlive containerd itself, so
# they are removed through the CRI. If containerd died (a crash), start it
# again on the same state so that it reconnects to its shims and can stop them.
remove_pods() {
  [[ -x ${CRICTL[0]} ]] || return 0
  "${CRICTL[@]}" rmp --all --force >/dev/null 2>&1 || true
  local left
  left=$("${CRICTL[@]}" pods -q 2>/dev/null | wc -l)
  [[ $left -eq 0 ]] || log "warning: $left pod sandboxes could not be removed"
}
if proc_alive containerd; then
  log "removing all pods"
  remove_pods
elif [[ -f $STATE/containerd/config.toml && -d $RUN/containerd/state ]]; then
  log "containerd is not running: starting it to remove the pods it left"
  proc_start containerd containerd --config "$STATE/containerd/config.toml"
  if wait_for containerd 30 "${CRICTL[@]}" info; then remove_pods; fi
fi
proc_stop containerd

proc_stop kube-scheduler kube-controller-manager kube-apiserver
proc_stop etcd slow-registry cluster-registry registry

# Unmount everything mounted under our directories (pod volumes, container
# root filesystems, sandbox /dev/shm).
unmount_under "$STATE" "$RUN"

if [[ -n $BIN && -x $BIN/kube-proxy ]] && iptables -t nat -S KUBE-SERVICES >/dev/null 2>&1; then
  "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || log "warning: kube-proxy --cleanup failed"
fi
# The kubelet's own chains (kube-proxy --cleanup leaves them).
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  for chain in INPUT OUTPUT; do
    while "$ipt" -t filter -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
  done
  for table_chain in filter/KUBE-FIREWALL filter/KUBE-KUBELET-CANARY nat/KUBE-KUBELET-CANARY \
    mangle/KUBE-KUBELET-CANARY mangle/KUBE-IPTABLES-HINT; do
    "$ipt" -t "${table_chain%/*}" -F "${table_chain#*/}" 2>/dev/null && "$ipt" -t "${table_chain%/*}" -X "${table_chain#*/}" 2>/dev/null
  done
done
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
slowreg_net_down
# The CNI bridge plugin turned on forwarding; put back what the machine had.
if [[ -f $STATE/ip_forward.saved ]]; then
  sysctl -qw net.ipv4.ip_forward="$(cat "$STATE/ip_forward.saved")" || true
fi

if $keep_logs; then
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null
else
  rm -rf "$STATE"
fi
rm -rf "$RUN"
# The kubelet links every container log from this fixed directory; drop the
# links that pointed into our (now removed) state.
find /var/log/containers -maxdepth 1 -xtype l -lname "$STATE/*" -delete 2>/dev/null
log "down"
