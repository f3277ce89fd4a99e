# Shared settings and helpers of the local cluster scripts (up.sh, down.sh).
# Sourced, not run.

ICD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Everything the cluster writes lives in STATE (removed by down.sh) or RUN
# (sockets and runtime state of containerd, also removed).
STATE=${ICD_CLUSTER_DIR:-/var/lib/icd-cluster}
RUN=${ICD_CLUSTER_RUN:-/run/icd-cluster}
PKI=$STATE/pki
PIDS=$STATE/pids
LOGS=$STATE/logs
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig

NODE_NAME=${ICD_NODE_NAME:-icd-node}
# The CNI bridge: its gateway address is where the API server and the kubelet
# listen, so that both the host and the pods reach them and nothing listens on
# an outside interface.
BRIDGE=icd0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
# Every node's pods: node 1 has 10.88.0.0/16, node K 10.(87+K).0.0/16, up to
# node 8; kube-proxy takes the whole range for the cluster's pods.
CLUSTER_CIDR=10.88.0.0/13
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
API_SERVER=https://$NODE_IP:$API_PORT
REGISTRY=127.0.0.1:5000
# The same registry (its storage, read-only) as pods and every node's
# kubelet reach it: the bridge's gateway. 127.0.0.1 is a pod's own loopback,
# so the planner, which checks tags from its pod, checks images named
# CLUSTER_REGISTRY/REPO:TAG under the name the kubelets pull by. Push to
# REGISTRY; a tag pushed there reads at once here (nothing is cached).
CLUSTER_REGISTRY=$NODE_IP:5000
PAUSE_IMAGE=$REGISTRY/pause:3.10
CONTAINERD_SOCK=$RUN/containerd/containerd.sock

# The slow registry: a second registry process serving REGISTRY's storage
# (read-only) from its own network namespace, behind a veth pair shaped to
# SLOW_REGISTRY_RATE, so that a benchmark pulls through a link like a real
# one (hack/bench/slow.go) without pushing through it. containerd reaches it
# as the mirror of the made-up registry SLOW_REGISTRY_HOST (.test never
# resolves), so pods name its images SLOW_REGISTRY_HOST/REPO:TAG.
# The /30 is from 198.18.0.0/15, the range RFC 2544 sets aside for
# benchmarks: it cannot clash with POD_CIDR, SERVICE_CIDR or a real network.
# The ICD_SLOW_REGISTRY_* overrides let a test build a second one beside a
# running cluster. hack/bench/slow.go has the same defaults and reads
# ICD_SLOW_REGISTRY_IP too.
SLOW_REGISTRY_HOST=slow.icd.test
SLOW_REGISTRY_NETNS=${ICD_SLOW_REGISTRY_NETNS:-icd-slowreg}
# The host's end of the veth pair; the end in the namespace is named ...-ns.
SLOW_REGISTRY_VETH=${ICD_SLOW_REGISTRY_VETH:-icd-slowreg}
SLOW_REGISTRY_HOST_IP=${ICD_SLOW_REGISTRY_HOST_IP:-198.18.0.1}
SLOW_REGISTRY_IP=${ICD_SLOW_REGISTRY_IP:-198.18.0.2}
SLOW_REGISTRY=$SLOW_REGISTRY_IP:5000
SLOW_REGISTRY_RATE=100mbit

log() { printf '%s cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# kube_bin_dir builds (once per version) and prints the directory of the
# Kubernetes binaries.
kube_bin_dir() { "$ICD_ROOT/hack/kube/build.sh"; }

# proc_start NAME CMD... starts CMD in the background with its output in
# LOGS/NAME.log and records "PID STARTTIME" in PIDS/NAME.pid. The start time
# (from /proc) lets proc_stop tell our process from a later one that got the
# same PID.
proc_start() {
  local name=$1; shift
  mkdir -p "$PIDS" "$LOGS"
  # The command too, NUL-separated, so that up.sh can start this part alone
  # again on the same state (proc_restart).
  printf '%s\0' "$@" >"$PIDS/$name.cmd"
  # setsid: the cluster outlives the shell that started it and is not hit by
  # signals sent to that shell's process group; down.sh stops it by PID.
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(proc_starttime "$pid")" >"$PIDS/$name.pid"
}

proc_starttime() {
  # Field 22 of /proc/PID/stat; the command name (field 2) may hold spaces,
  # so count from the closing parenthesis. A zombie (state Z) has no start
  # time here: it is dead, only not yet reaped.
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  awk '$1 != "Z" {print $20}' <<<"$stat"
}

# proc_restart NAME: starts NAME again with the command proc_start recorded.
proc_restart() {
  local name=$1 argv=()
  [[ -f $PIDS/$name.cmd ]] || return 1
  mapfile -d '' -t argv <"$PIDS/$name.cmd"
  log "restarting $name"
  proc_start "$name" "${argv[@]}"
}

# part_ready NAME: true when the cluster part NAME answers as up.sh expects
# it to after starting it (the controller-manager and scheduler: running).
part_ready() {
  case $1 in
    registry) curl -fsS "http://$REGISTRY/v2/" ;;
    slow-registry) curl -fsS "http://$SLOW_REGISTRY/v2/" ;;
    cluster-registry) curl -fsS "http://$CLUSTER_REGISTRY/v2/" ;;
    containerd) "${BIN:-$(kube_bin_dir)}/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 10s info ;;
    etcd) curl -fsS http://127.0.0.1:2381/health ;;
    kube-apiserver) "${BIN:-$(kube_bin_dir)}/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" get --raw /readyz ;;
    kubelet) curl -fsS http://127.0.0.1:10248/healthz ;;
    kube-proxy) curl -fsS http://127.0.0.1:10256/healthz ;;
    node[2-8]-registry) curl -fsS "http://$(node_registry "${1:4:1}")/v2/" ;;
    node[2-8]-containerd) "${BIN:-$(kube_bin_dir)}/crictl" --runtime-endpoint "unix://$(node_sock "${1:4:1}")" --timeout 10s info ;;
    node[2-8]-kubelet) in_node "${1:4:1}" curl -fsS http://127.0.0.1:10248/healthz ;;
    node[2-8]-proxy) in_node "${1:4:1}" curl -fsS http://127.0.0.1:10256/healthz ;;
    *) proc_alive "$1" ;;
  esac
}

# proc_alive NAME: true when the process recorded for NAME still runs.
proc_alive() {
  local f="$PIDS/$1.pid" pid start
  [[ -f $f ]] || return 1
  read -r pid start <"$f" || return 1
  [[ -n $pid && -n $start && $(proc_starttime "$pid") == "$start" ]]
}

# proc_stop NAME...: SIGTERM to each, then SIGKILL to those still running
# after a grace period; only processes whose recorded PID and start time
# still match, so a recycled PID is never hit.
proc_stop() {
  local name pid start i running=()
  for name in "$@"; do
    if proc_alive "$name"; then
      read -r pid start <"$PIDS/$name.pid"
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      running+=("$name")
    fi
  done
  for ((i = 0; i < 100; i++)); do
    any_alive "${running[@]}" || break
    sleep 0.2
  done
  for name in "${running[@]}"; do
    if proc_alive "$name"; then
      read -r pid start <"$PIDS/$name.pid"
      log "$name did not stop in 20s, killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 50; i++)); do any_alive "${running[@]}" || break; sleep 0.1; done
  for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

any_alive() {
  local name
  for name in "$@"; do proc_alive "$name" && return 0; done
  return 1
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# containerd_mirror CERTS_D NAME SERVER MIRROR: containerd (config_path
# CERTS_D) fetches the images of registry NAME from MIRROR, a plain-HTTP
# registry on this machine, before it tries SERVER.
containerd_mirror() {
  mkdir -p "$1/$2"
  cat >"$1/$2/hosts.toml" <<EOF
server = "$3"

[host."http://$4"]
  capabilities = ["pull", "resolve"]
EOF
}

# slowreg_net_up: the slow registry's network namespace and veth pair, both
# ends shaped to SLOW_REGISTRY_RATE (a symmetric link: downloads are shaped
# at the registry's end, uploads at the host's). Whatever an earlier run
# left under the same names is removed first.
slowreg_net_up() {
  local ns=$SLOW_REGISTRY_NETNS host=$SLOW_REGISTRY_VETH peer=$SLOW_REGISTRY_VETH-ns
  slowreg_net_down
  ip netns add "$ns"
  # The peer is born in the namespace: the host never holds both ends.
  ip link add "$host" type veth peer name "$peer" netns "$ns"
  ip addr add "$SLOW_REGISTRY_HOST_IP/30" dev "$host"
  ip -n "$ns" addr add "$SLOW_REGISTRY_IP/30" dev "$peer"
  ip link set "$host" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$peer" up
  # Replies to the other nodes' namespaces go back through the host.
  ip -n "$ns" route add default via "$SLOW_REGISTRY_HOST_IP"
  { slowreg_shape "$host" && slowreg_shape "$peer" "$ns"; } ||
    die "tc could not shape $host to $SLOW_REGISTRY_RATE: the kernel needs the tbf qdisc (CONFIG_NET_SCH_TBF)"
}

# slowreg_shape DEV [NETNS]: a token bucket filter (tbf) at
# SLOW_REGISTRY_RATE on DEV's egress. tbf, not htb+fq_codel or netem: one
# rate on one link is all it takes, and the kernels of these machines have
# neither fq_codel nor netem. The 64 KiB burst lets a whole GSO packet
# through; "latency 20ms" bounds the queue like a router's buffer, so TCP
# meets the limit through losses instead of filling a deep queue that
# would hold the small manifest requests behind a layer.
slowreg_shape() {
  local dev=$1 ns=${2:-} tc=(tc)
  [[ -n $ns ]] && tc=(tc -n "$ns")
  "${tc[@]}" qdisc replace dev "$dev" root tbf rate "$SLOW_REGISTRY_RATE" burst 64kb latency 20ms
}

# slowreg_net_down: removes the namespace and the veth pair; safe when
# either does not exist. Deleting one end of a veth pair deletes both.
slowreg_net_down() {
  if ip link show "$SLOW_REGISTRY_VETH" >/dev/null 2>&1; then ip link del "$SLOW_REGISTRY_VETH"; fi
  if [[ -e /run/netns/$SLOW_REGISTRY_NETNS ]]; then ip netns del "$SLOW_REGISTRY_NETNS"; fi
}

# readonly_registry_config FILE ROOTDIR ADDR: the configuration of a
# docker-registry process that serves ROOTDIR (REGISTRY's storage) on ADDR
# without writing to it: the slow registry, CLUSTER_REGISTRY and node K's
# view of the registry. Its access log (on its standard output, so in
# LOGS/NAME.log) has a line per request, with the user agent. No
# storage.cache: only blob descriptors could be cached (tags never are), and
# with none every request reads the storage, so a tag pushed to REGISTRY
# reads here at once.
readonly_registry_config() {
  cat >"$1" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $2}
  maintenance:
    # REGISTRY owns the storage: this one only reads it, and never purges
    # the uploads REGISTRY has in flight.
    readonly: {enabled: true}
    uploadpurging: {enabled: false}
http:
  addr: $3
  secret: $(openssl rand -hex 16)
EOF
}

# slowreg_start ROOTDIR: writes the slow registry's configuration, starts it
# in its namespace serving ROOTDIR (REGISTRY's storage) read-only, and waits
# until it answers across the link. `ip netns exec` enters the namespace and
# then execs the registry, so the PID proc_start records is the registry's.
slowreg_start() {
  mkdir -p "$STATE"
  readonly_registry_config "$STATE/slow-registry.yaml" "$1" "$SLOW_REGISTRY"
  log "starting the slow registry on $SLOW_REGISTRY (namespace $SLOW_REGISTRY_NETNS, link $SLOW_REGISTRY_RATE)"
  proc_start slow-registry ip netns exec "$SLOW_REGISTRY_NETNS" docker-registry serve "$STATE/slow-registry.yaml"
  wait_for slow-registry 30 curl -fsS "http://$SLOW_REGISTRY/v2/" ||
    die "the slow registry did not answer on $SLOW_REGISTRY; see $LOGS/slow-registry.log"
}

# ---------------------------------------------------------------- shared by every node
# cert NAME CN ORG EXTKEYUSAGE [SAN]: a key and certificate in PKI signed by
# the cluster's CA.
cert() {
  local name=$1 cn=$2 org=$3 eku=$4 san=${5:-} subj ext
  subj="/CN=$cn"; [[ -n $org ]] && subj+="/O=$org"
  ext="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=$eku"
  [[ -n $san ]] && ext+="\nsubjectAltName=$san"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile <(printf "$ext") -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr"
}

# kubeconfig NAME: STATE/NAME.kubeconfig for the identity in PKI/NAME.{crt,key}.
kubeconfig() {
  cat >"$STATE/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: icd
  cluster:
    server: $API_SERVER
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $PKI/$1.crt
    client-key: $PKI/$1.key
contexts:
- name: icd
  context: {cluster: icd, user: $1}
current-context: icd
EOF
}

# cni_config DIR POD_CIDR GATEWAY: the CNI configuration of a node's pods in
# DIR/net.d, its address leases in DIR/ipam. The bridge is BRIDGE in the
# node's network namespace, with GATEWAY on it (the node's IP).
cni_config() {
  local dir=$1
  mkdir -p "$dir/net.d" "$dir/ipam"
  cat >"$dir/net.d/10-icd.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "icd",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/ipam",
        "ranges": [[{"subnet": "$2", "gateway": "$3"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}

# containerd_config DIR RUNDIR SOCK MIRROR CNI_CONF_DIR [RUNC_ROOT]: a
# containerd configuration in DIR/config.toml (its root in DIR/root, its
# state in RUNDIR) serving CRI on SOCK, that fetches REGISTRY's images, and
# those of the registries the local registry stands in for, from MIRROR
# (REGISTRY itself, or an address of it that the node can reach).
containerd_config() {
  local dir=$1 run=$2 sock=$3 mirror=$4 cni=$5 runc_root=${6:-}
  mkdir -p "$dir/certs.d/$REGISTRY" "$run"
  # MIRROR is REGISTRY's server, not only a mirror tried first: a pull that
  # fails there (not found) must fail with the registry's own message, not
  # with that of a fallback to an address the node cannot reach.
  cat >"$dir/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$mirror"

[host."http://$mirror"]
  capabilities = ["pull", "resolve", "push"]
EOF
  # This machine reaches no public registry: docker.io images come from the
  # local registry (where the harness pushes library/alpine), as a mirror would.
  containerd_mirror "$dir/certs.d" docker.io https://registry-1.docker.io "$mirror"
  # Likewise ghcr.io, where releases publish the project image: make image
  # pushes it as dcherman/image-cache-daemon:VERSION, so a plain `kubectl
  # imagecache install` (ghcr.io/dcherman/image-cache-daemon:VERSION) works here.
  containerd_mirror "$dir/certs.d" ghcr.io https://ghcr.io "$mirror"
  # The slow registry's made-up name is served by its mirror across the
  # shaped link; the name itself never resolves (.test), so a failing mirror
  # shows as a failed pull, not as a pull from somewhere else.
  containerd_mirror "$dir/certs.d" "$SLOW_REGISTRY_HOST" "https://$SLOW_REGISTRY_HOST" "$SLOW_REGISTRY"
  # The registry's cluster-wide address, over plain HTTP, from every node.
  containerd_mirror "$dir/certs.d" "$CLUSTER_REGISTRY" "http://$CLUSTER_REGISTRY" "$CLUSTER_REGISTRY"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$run/state"

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false${runc_root:+
        Root = \"$runc_root\"}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
EOF
}

# kubelet_config FILE NODE_IP CERT SOCK POD_LOGS [CGROUP_ROOT]: a kubelet
# configuration serving on NODE_IP with CERT.{crt,key}, on the containerd of
# SOCK, its pods' logs in POD_LOGS and their cgroups under CGROUP_ROOT.
kubelet_config() {
  local file=$1 ip=$2 crt=$3 sock=$4 logs=$5 cgroot=${6:-}
  cat >"$file" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $crt.crt
tlsPrivateKeyFile: $crt.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
podLogsDir: $logs
# Report every image in node.status.images (the kubelet's default is the 50
# largest): the e2e tests check there that an image is on the node, and a
# run pushes more than 50 small ones.
nodeStatusMaxImages: -1
# Room for the original's model in make bench (one prefetch pod per image,
# 100 images) under the daemon's own bound of a quarter of the node's pods.
# registryPullQPS and registryBurst stay at the kubelet's defaults (5, 10).
maxPods: 440
# The machine's disk may be nearly full on a busy CI box; only evict when it
# really is, so that tests are not disturbed by evictions.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
EOF
  if [[ -n $cgroot ]]; then echo "cgroupRoot: $cgroot" >>"$file"; fi
}

# kube_proxy_config FILE NODE_NAME NODE_IP KUBECONFIG
kube_proxy_config() {
  cat >"$1" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $4
mode: iptables
hostnameOverride: $2
clusterCIDR: $CLUSTER_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$3/32"]
conntrack:
  maxPerCore: 0
EOF
}

# unmount_under DIR...: unmounts, deepest first, everything mounted under
# the DIRs (pod volumes, container root filesystems, sandbox /dev/shm).
unmount_under() {
  local dir
  for dir in "$@"; do
    findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1' | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
  done
}

# ---------------------------------------------------------------- more nodes
# Node K (2..8) is one more kubelet on this machine, in a network namespace
# of its own (icd-nodeK): its own containerd (root, state, socket, runc
# root), kubelet (root directory, node name icd-nodeK, cgroup root
# /icd-nodeK) and kube-proxy. Its bridge holds 10.(87+K).0.1, the node's IP
# and gateway of its pods' 10.(87+K).0.0/16. A veth pair joins the namespace
# to the host over 198.18.0.4(K-1)/30 (the slow registry has .0/30): the
# namespace routes everything to the host and the host routes the node's pods
# to the namespace, so pods on every node reach the API server, the
# registries and each other. containerd there reaches REGISTRY (127.0.0.1 is
# the namespace's own loopback) through a read-only registry that serves
# the same storage on the host's end of the pair, as its mirror. The parts
# run under `nsenter --net`, which enters the network namespace only (not
# `ip netns exec`, which also makes a mount namespace): the kubelet's volume
# mounts must be seen by containerd. STATE/nodes/K exists while node K is up.

node_name() { echo "icd-node$1"; }
node_netns() { echo "icd-node$1"; }
node_ip() { echo "10.$((87 + $1)).0.1"; }
node_pod_cidr() { echo "10.$((87 + $1)).0.0/16"; }
node_host_ip() { echo "198.18.0.$((4 * ($1 - 1) + 1))"; }
node_link_ip() { echo "198.18.0.$((4 * ($1 - 1) + 2))"; }
node_registry() { echo "$(node_host_ip "$1"):5000"; }
node_state() { echo "$STATE/nodes/$1"; }
node_run() { echo "$RUN/nodes/$1"; }
node_sock() { echo "$(node_run "$1")/containerd/containerd.sock"; }
node_parts() { echo "node$1-registry node$1-containerd node$1-kubelet node$1-proxy"; }
# in_node K CMD...: runs CMD in node K's network namespace.
in_node() { local k=$1; shift; nsenter --net="/run/netns/$(node_netns "$k")" "$@"; }

# extra_nodes: the numbers of the nodes other than node 1 that are up.
extra_nodes() {
  local d
  for d in "$STATE"/nodes/*; do [[ -d $d ]] && basename "$d"; done | sort -n
}

# node_net_up K: node K's namespace, bridge, veth pair and routes.
node_net_up() {
  local k=$1 ns
  ns=$(node_netns "$k")
  node_net_down "$k"
  ip netns add "$ns"
  ip link add "$ns" type veth peer name "$ns-ns" netns "$ns"
  ip addr add "$(node_host_ip "$k")/30" dev "$ns"
  ip link set "$ns" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(node_link_ip "$k")/30" dev "$ns-ns"
  ip -n "$ns" link set "$ns-ns" up
  ip -n "$ns" link add "$BRIDGE" type bridge
  ip -n "$ns" addr add "$(node_ip "$k")/16" dev "$BRIDGE"
  ip -n "$ns" link set "$BRIDGE" up
  ip -n "$ns" route add default via "$(node_host_ip "$k")"
  ip route replace "$(node_pod_cidr "$k")" via "$(node_link_ip "$k")" dev "$ns"
  in_node "$k" sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.ipv4.ip_forward=1
}

# node_net_down K: removes node K's namespace and veth pair (the host's
# route goes with its end); safe when neither exists.
node_net_down() {
  local ns
  ns=$(node_netns "$1")
  if ip link show "$ns" >/dev/null 2>&1; then ip link del "$ns"; fi
  if [[ -e /run/netns/$ns ]]; then ip netns del "$ns"; fi
}

# node_cgroups K: node K's cgroup root in every hierarchy (the kubelet
# refuses a cgroup root that does not exist).
node_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do echo "$h$(node_netns "$1")"; done
}

node_cgroups_up() {
  local cg
  for cg in $(node_cgroups "$1"); do
    mkdir -p "$cg"
    if [[ $cg == /sys/fs/cgroup/cpuset/* ]]; then
      cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$cg/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems >"$cg/cpuset.mems"
    fi
  done
}

# node_cgroups_down K: removes node K's cgroups, deepest first (they are
# empty once its pods are gone).
node_cgroups_down() {
  local cg
  for cg in $(node_cgroups "$1"); do
    [[ -d $cg ]] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || log "warning: could not remove cgroup $cg"
  done
}

# node_up K [KUBELET_FLAG...]: brings node K up and waits until it is Ready.
# Extra flags go to its kubelet (--register-with-taints=KEY=VALUE:NoSchedule).
node_up() {
  local k=$1; shift
  [[ $k =~ ^[2-8]$ ]] || die "node number $k: nodes 2 to 8 can be added"
  local name state run sock ip BIN ns
  name=$(node_name "$k"); state=$(node_state "$k"); run=$(node_run "$k")
  sock=$(node_sock "$k"); ip=$(node_ip "$k"); ns=/run/netns/$(node_netns "$k")
  BIN=$(kube_bin_dir)
  log "bringing up node $name ($ip, network namespace $(node_netns "$k"))"
  mkdir -p "$state/kubelet" "$run"
  node_net_up "$k"
  node_cgroups_up "$k"

  cert "node$k-kubelet-serving" "system:node:$name" system:nodes serverAuth "IP:$ip,DNS:$name"
  cert "node$k-kubelet" "system:node:$name" system:nodes clientAuth
  kubeconfig "node$k-kubelet"
  # kube-proxy's identity is the same on every node.

  readonly_registry_config "$state/registry.yaml" "$STATE/registry" "$(node_registry "$k")"
  proc_start "node$k-registry" docker-registry serve "$state/registry.yaml"
  wait_for "node$k-registry" 30 part_ready "node$k-registry" ||
    die "node $name's view of the registry did not answer on $(node_registry "$k")"

  cni_config "$state/cni" "$(node_pod_cidr "$k")" "$ip"
  containerd_config "$state/containerd" "$run/containerd" "$sock" "$(node_registry "$k")" "$state/cni/net.d" "$run/runc"
  proc_start "node$k-containerd" nsenter --net="$ns" containerd --config "$state/containerd/config.toml"
  wait_for "node$k-containerd" 60 part_ready "node$k-containerd" || die "node $name's containerd did not answer"

  kubelet_config "$state/kubelet.yaml" "$ip" "$PKI/node$k-kubelet-serving" "$sock" "$state/pod-logs" "/$(node_netns "$k")"
  proc_start "node$k-kubelet" nsenter --net="$ns" "$BIN/kubelet" \
    --config "$state/kubelet.yaml" \
    --kubeconfig "$STATE/node$k-kubelet.kubeconfig" \
    --root-dir "$state/kubelet" \
    --cert-dir "$state/kubelet/pki" \
    --hostname-override "$name" \
    --node-ip "$ip" "$@"
  kube_proxy_config "$state/kube-proxy.yaml" "$name" "$ip" "$STATE/kube-proxy.kubeconfig"
  proc_start "node$k-proxy" nsenter --net="$ns" "$BIN/kube-proxy" --config "$state/kube-proxy.yaml"

  local kubectl=("$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN") p
  wait_for "node $name" 120 "${kubectl[@]}" get node "$name" || die "node $name never registered; see $LOGS/node$k-kubelet.log"
  "${kubectl[@]}" wait --for=condition=Ready "node/$name" --timeout=120s >/dev/null || die "node $name is not Ready"
  for p in $(node_parts "$k"); do proc_alive "$p" || die "$p exited; see $LOGS/$p.log"; done
  log "node $name Ready"
}

# node_down K: stops node K's parts (its pods first), unmounts what its
# kubelet and containerd mounted, removes its cgroups, network and state.
# The Node object is left to the caller (a machine that goes away leaves it).
node_down() {
  local k=$1 state run sock BIN
  state=$(node_state "$k"); run=$(node_run "$k"); sock=$(node_sock "$k")
  BIN=$(kube_bin_dir 2>/dev/null) || BIN=""
  proc_stop "node$k-proxy" "node$k-kubelet"
  local crictl=("$BIN/crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 30s)
  if ! proc_alive "node$k-containerd" && [[ -f $state/containerd/config.toml && -e /run/netns/$(node_netns "$k") ]]; then
    log "node$k-containerd is not running: starting it to remove the pods it left"
    proc_start "node$k-containerd" nsenter --net="/run/netns/$(node_netns "$k")" containerd --config "$state/containerd/config.toml"
    wait_for "node$k-containerd" 30 "${crictl[@]}" info || true
  fi
  if proc_alive "node$k-containerd" && [[ -x ${crictl[0]} ]]; then
    "${crictl[@]}" rmp --all --force >/dev/null 2>&1 || log "warning: node $k's pods could not all be removed"
  fi
  proc_stop "node$k-containerd" "node$k-registry"
  unmount_under "$state" "$run"
  node_cgroups_down "$k"
  # Its iptables rules live in its namespace and go with it.
  node_net_down "$k"
  rm -rf "$state" "$run" "$STATE/node$k-kubelet.kubeconfig" "$PKI/node$k-kubelet"*
  rm -f "$PIDS/node$k-"*
  log "node $(node_name "$k") down"
}
