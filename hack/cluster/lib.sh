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
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
API_SERVER=https://$NODE_IP:$API_PORT
REGISTRY=127.0.0.1:5000
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
    containerd) "${BIN:-$(kube_bin_dir)}/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 10s info ;;
    etcd) curl -fsS http://127.0.0.1:2381/health ;;
    kube-apiserver) "${BIN:-$(kube_bin_dir)}/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" get --raw /readyz ;;
    kubelet) curl -fsS http://127.0.0.1:10248/healthz ;;
    kube-proxy) curl -fsS http://127.0.0.1:10256/healthz ;;
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

# slowreg_start ROOTDIR: writes the slow registry's configuration, starts it
# in its namespace serving ROOTDIR (REGISTRY's storage) read-only, and waits
# until it answers across the link. `ip netns exec` enters the namespace and
# then execs the registry, so the PID proc_start records is the registry's.
slowreg_start() {
  mkdir -p "$STATE"
  cat >"$STATE/slow-registry.yaml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $1}
  maintenance:
    # REGISTRY owns the storage: this one only reads it, and never purges
    # the uploads REGISTRY has in flight.
    readonly: {enabled: true}
    uploadpurging: {enabled: false}
http:
  addr: $SLOW_REGISTRY
  secret: $(openssl rand -hex 16)
EOF
  log "starting the slow registry on $SLOW_REGISTRY (namespace $SLOW_REGISTRY_NETNS, link $SLOW_REGISTRY_RATE)"
  proc_start slow-registry ip netns exec "$SLOW_REGISTRY_NETNS" docker-registry serve "$STATE/slow-registry.yaml"
  wait_for slow-registry 30 curl -fsS "http://$SLOW_REGISTRY/v2/" ||
    die "the slow registry did not answer on $SLOW_REGISTRY; see $LOGS/slow-registry.log"
}
