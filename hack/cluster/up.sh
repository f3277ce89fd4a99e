#!/usr/bin/env bash
# Brings up a Kubernetes cluster on this machine: etcd, the control plane,
# containerd, kubelet, kube-proxy and an image registry on 127.0.0.1:5000
# (and 10.88.0.1:5000, where pods and every node reach it),
# and a second, slow view of that registry behind a link shaped to
# 100 Mbit/s (lib.sh: SLOW_REGISTRY). Everything listens on loopback, on the
# CNI bridge or on private veth pairs.
#   NODES=2 hack/cluster/up.sh   one more node, in its own network namespace
#                                (lib.sh: node_up; hack/cluster/node.sh adds
#                                and removes nodes later)
# Idempotent: when the cluster is already up it only adds the nodes missing
# from NODES; when some part of it died, it starts that part again and keeps
# the cluster's state. Needs root, Linux and Go. See README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "the local cluster needs root (containerd, kubelet, iptables)"

NODES=${NODES:-1}
[[ $NODES =~ ^[1-8]$ ]] || die "NODES=$NODES: from 1 to 8 nodes"
components=(registry cluster-registry slow-registry containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
for k in $(extra_nodes); do read -ra parts <<<"$(node_parts "$k")"; components+=("${parts[@]}"); done

# add_nodes: brings up the nodes 2..NODES that are not up yet.
add_nodes() {
  local k
  for ((k = 2; k <= NODES; k++)); do
    [[ -d $(node_state "$k") ]] || node_up "$k"
  done
}

all_alive() {
  local c
  for c in "${components[@]}"; do proc_alive "$c" || return 1; done
}

BIN=$(kube_bin_dir)
KUBECTL=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN")

if all_alive && "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1; then
  log "already up"
  add_nodes
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  exit 0
fi

# A cluster that runs, but with a part that died (the registry, containerd,
# the kubelet...): start only the parts that are missing, in order, with the
# commands they were started with, on the state they left. The cluster's
# objects, images and pods are kept.
restartable() {
  local c
  [[ -f $PKI/ca.crt && -f $KUBECONFIG_ADMIN ]] || return 1
  for c in "${components[@]}"; do [[ -f $PIDS/$c.cmd ]] || return 1; done
  any_alive "${components[@]}"
}
if restartable; then
  restarted=()
  for c in "${components[@]}"; do
    proc_alive "$c" && continue
    if [[ $c == slow-registry && ! -e /run/netns/$SLOW_REGISTRY_NETNS ]]; then slowreg_net_up; fi
    proc_restart "$c"
    wait_for "$c" 90 part_ready "$c" || die "$c did not come back; see $LOGS/$c.log (make cluster-down, then cluster-up, starts afresh)"
    restarted+=("$c")
  done
  for node in "$NODE_NAME" $(for k in $(extra_nodes); do node_name "$k"; done); do
    "${KUBECTL[@]}" wait --for=condition=Ready "node/$node" --timeout=120s >/dev/null ||
      die "node $node is not Ready after restarting ${restarted[*]}"
  done
  log "restarted ${restarted[*]}; the cluster's state is kept"
  add_nodes
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  exit 0
fi
if [[ -d $STATE || -d $RUN ]]; then
  log "found the remains of an earlier cluster: bringing it down first"
  "$ICD_ROOT/hack/cluster/down.sh"
fi

"$ICD_ROOT/hack/cluster/deps.sh"
mkdir -p "$STATE" "$RUN" "$PKI" "$PIDS" "$LOGS"
# If anything below fails, leave nothing half-started behind.
trap 'rc=$?; if [[ $rc -ne 0 ]]; then log "up failed (exit $rc); logs are in $LOGS; cleaning up"; tail -n 20 "$LOGS"/*.log >&2 || true; "$ICD_ROOT/hack/cluster/down.sh" --keep-logs; fi' EXIT

# ---------------------------------------------------------------- certificates
log "creating certificates in $PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=icd-cluster-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null

cert apiserver kube-apiserver "" serverAuth \
  "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
cert kubelet-serving "system:node:$NODE_NAME" system:nodes serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
cert admin icd-admin system:masters clientAuth
cert controller-manager system:kube-controller-manager "" clientAuth
cert scheduler system:kube-scheduler "" clientAuth
cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
cert kube-proxy system:kube-proxy "" clientAuth
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI/sa.key" 2>/dev/null
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

for k in admin controller-manager scheduler kubelet kube-proxy; do kubeconfig "$k"; done

# ---------------------------------------------------------------- network
# The bridge exists before the API server starts so that its advertise
# address is on this machine; the CNI bridge plugin adopts it.
sysctl -n net.ipv4.ip_forward >"$STATE/ip_forward.saved"
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
ip addr replace "$NODE_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up
cni_config "$STATE/cni" "$POD_CIDR" "$NODE_IP"

# ---------------------------------------------------------------- registry
mkdir -p "$STATE/registry"
cat >"$STATE/registry.yaml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
  secret: $(openssl rand -hex 16)
EOF
log "starting registry on $REGISTRY"
proc_start registry docker-registry serve "$STATE/registry.yaml"
wait_for registry 30 curl -fsS "http://$REGISTRY/v2/" || die "registry did not answer on $REGISTRY"
log "pushing the pause image and the alpine stand-in"
(cd "$ICD_ROOT" && go run ./hack/images pause --registry "$REGISTRY" >/dev/null)
(cd "$ICD_ROOT" && go run ./hack/images alpine --registry "$REGISTRY" >/dev/null)

# The same storage on the bridge, for pods and every node (lib.sh).
readonly_registry_config "$STATE/cluster-registry.yaml" "$STATE/registry" "$CLUSTER_REGISTRY"
log "starting the registry's cluster address $CLUSTER_REGISTRY"
proc_start cluster-registry docker-registry serve "$STATE/cluster-registry.yaml"
wait_for cluster-registry 30 part_ready cluster-registry || die "the registry did not answer on $CLUSTER_REGISTRY"

# ---------------------------------------------------------------- slow registry
# The same storage served across a shaped link (see lib.sh): images pushed to
# REGISTRY are pulled as SLOW_REGISTRY_HOST/REPO:TAG at SLOW_REGISTRY_RATE.
slowreg_net_up
slowreg_start "$STATE/registry"

# ---------------------------------------------------------------- containerd
containerd_config "$STATE/containerd" "$RUN/containerd" "$CONTAINERD_SOCK" "$REGISTRY" "$STATE/cni/net.d"
log "starting containerd"
proc_start containerd containerd --config "$STATE/containerd/config.toml"
CRICTL=("$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK" --timeout 10s)
# The kubelet exits at once if the CRI plugin is not serving yet.
wait_for containerd 60 "${CRICTL[@]}" info || die "containerd's CRI did not answer"

# ---------------------------------------------------------------- etcd
log "starting etcd"
proc_start etcd "$BIN/etcd" --name icd --data-dir "$STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster icd=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --log-level warn
wait_for etcd 60 curl -fsS http://127.0.0.1:2381/health || die "etcd is not healthy"

# ---------------------------------------------------------------- control plane
log "starting kube-apiserver on $API_SERVER"
proc_start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --allow-privileged=true \
  --profiling=false
wait_for kube-apiserver 90 "${KUBECTL[@]}" get --raw /readyz || die "kube-apiserver is not ready"

log "starting kube-controller-manager and kube-scheduler"
proc_start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 \
  --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --use-service-account-credentials \
  --controllers '*,-nodeipam' \
  --profiling=false
proc_start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 \
  --profiling=false

# ---------------------------------------------------------------- node
mkdir -p "$STATE/kubelet"
kubelet_config "$STATE/kubelet.yaml" "$NODE_IP" "$PKI/kubelet-serving" "$CONTAINERD_SOCK" "$STATE/pod-logs"
log "starting kubelet as node $NODE_NAME"
proc_start kubelet "$BIN/kubelet" \
  --config "$STATE/kubelet.yaml" \
  --kubeconfig "$STATE/kubelet.kubeconfig" \
  --root-dir "$STATE/kubelet" \
  --cert-dir "$STATE/kubelet/pki" \
  --hostname-override "$NODE_NAME" \
  --node-ip "$NODE_IP"

kube_proxy_config "$STATE/kube-proxy.yaml" "$NODE_NAME" "$NODE_IP" "$STATE/kube-proxy.kubeconfig"
log "starting kube-proxy"
proc_start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

log "waiting for node $NODE_NAME to be Ready"
wait_for node 120 "${KUBECTL[@]}" get node "$NODE_NAME" || die "node $NODE_NAME never registered"
"${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null ||
  die "node $NODE_NAME is not Ready"
wait_for serviceaccount 60 "${KUBECTL[@]}" -n default get serviceaccount default ||
  die "the default service account was never created"

for c in "${components[@]}"; do proc_alive "$c" || die "$c exited; see $LOGS/$c.log"; done
add_nodes
trap - EXIT
log "up: $NODES node(s) Ready, registry on $REGISTRY (pods: $CLUSTER_REGISTRY), $SLOW_REGISTRY_HOST on $SLOW_REGISTRY behind $SLOW_REGISTRY_RATE"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
