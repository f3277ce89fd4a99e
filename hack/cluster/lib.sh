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
