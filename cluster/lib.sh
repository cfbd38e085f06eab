# Shared settings and helpers for the local single-node cluster scripts.
# Sourced, never executed. Every daemon is started through start_daemon, which
# records its PID in $STATE/pids/<name>.pid so stop_daemon can stop exactly it.

set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.20.2}"
CACHE_DIR="${TRIAGE_CACHE_DIR:-$HOME/.cache/agentic-triage}"
BIN_DIR="${KUBEBUILDER_ASSETS:-$CACHE_DIR/k8s-$K8S_VERSION}"
STATE="${TRIAGE_CLUSTER_STATE:-/var/lib/triage-local}"
KUBECONFIG_OUT="${TRIAGE_KUBECONFIG:-$HOME/.kube/triage-local.yaml}"
CONTEXT_NAME="triage-local"
NODE_NAME="node1"

ETCD_PORT="${ETCD_PORT:-23790}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${APISERVER_PORT:-16443}"
# 198.18.0.0/15 is reserved for benchmarking (RFC 2544): outside the private ranges.
POD_CIDR="198.18.0.0/16"
SERVICE_CIDR="10.0.0.0/24"

log() { printf '[cluster] %s\n' "$*" >&2; }

pid_file() { echo "$STATE/pids/$1.pid"; }

is_running() {
    local f
    f="$(pid_file "$1")"
    [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_daemon NAME CMD... : start CMD in its own session, log to $STATE/logs/NAME.log
start_daemon() {
    local name="$1"
    shift
    mkdir -p "$STATE/pids" "$STATE/logs"
    if is_running "$name"; then
        log "$name already running (pid $(cat "$(pid_file "$name")"))"
        return 0
    fi
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$(pid_file "$name")"
    log "started $name (pid $!)"
}

# stop_daemon NAME [TIMEOUT]: SIGTERM the recorded PID, SIGKILL after TIMEOUT seconds.
stop_daemon() {
    local name="$1" timeout="${2:-15}" f pid i
    f="$(pid_file "$name")"
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
}

wait_for() {
    local what="$1" timeout="$2"
    shift 2
    local i
    for ((i = 0; i < timeout * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    log "timed out after ${timeout}s waiting for $what"
    return 1
}

kc() { kubectl --kubeconfig "$KUBECONFIG_OUT" "$@"; }
