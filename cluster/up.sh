#!/usr/bin/env bash
# Brings up a real single-node Kubernetes on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd + runc, CNI bridge and a kubelet.
# Idempotent: a healthy cluster is reused; missing pieces are started.
# Every daemon is started through start_daemon (PID file) and stopped by cluster/down.sh.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

healthy() {
    is_running etcd && is_running kube-apiserver && is_running kube-controller-manager &&
        is_running kube-scheduler && is_running containerd && is_running kubelet &&
        kc get --raw /readyz 2>/dev/null | grep -q ok &&
        kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

# An apiserver started before the client CA was added is restarted with it (the rest of the
# cluster, and everything on it, is kept).
apiserver_pid="$(cat "$(pid_file kube-apiserver)" 2>/dev/null || true)"
if [[ -n "$apiserver_pid" ]] && is_running kube-apiserver &&
    ! tr '\0' ' ' <"/proc/$apiserver_pid/cmdline" | grep -q -- --client-ca-file; then
    log "kube-apiserver predates the client CA; restarting it"
    stop_daemon kube-apiserver
fi

if [[ -f "$KUBECONFIG_OUT" ]] && healthy; then
    log "cluster already healthy; reusing it"
    [[ "${TRIAGE_SKIP_IMAGES:-0}" == 1 ]] || bash "$HERE/images.sh"
    echo "$KUBECONFIG_OUT"
    exit 0
fi

bash "$HERE/deps.sh"
bash "$HERE/build-k8s.sh"

PKI="$STATE/pki"
mkdir -p "$PKI" "$STATE/etcd" "$STATE/kubelet" "$STATE/pids" "$STATE/logs" "$(dirname "$KUBECONFIG_OUT")"

# --- credentials -----------------------------------------------------------------------
if [[ ! -f "$PKI/tokens.csv" ]]; then
    tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
        echo "$(tok),admin,admin,system:masters"
        echo "$(tok),system:kube-controller-manager,kcm"
        echo "$(tok),system:kube-scheduler,sched"
        echo "$(tok),system:node:$NODE_NAME,node,system:nodes"
    } >"$PKI/tokens.csv"
    chmod 600 "$PKI/tokens.csv"
fi
[[ -f "$PKI/sa.key" ]] || openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
# A client CA: short-lived client certificates signed by it (tests/credplugin.py, an exec
# credential plugin) are how the tests prove that credentials expiring mid-run are renewed.
if [[ ! -f "$PKI/client-ca.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/client-ca.key" -out "$PKI/client-ca.crt" \
        -days 3650 -subj "/CN=triage-local-client-ca" 2>/dev/null
    chmod 600 "$PKI/client-ca.key"
fi
token_for() { awk -F, -v u="$1" '$2==u{print $1}' "$PKI/tokens.csv"; }

write_kubeconfig() { # FILE USER CONTEXT
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $3
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/apiserver.crt
users:
- name: $3-$2
  user:
    token: $(token_for "$2")
contexts:
- name: $3
  context: {cluster: $3, user: $3-$2}
current-context: $3
EOF
    chmod 600 "$1"
}

# --- node name must resolve to loopback (kubelet refuses a loopback node IP) ------------
grep -qE "^127\.0\.0\.1[[:space:]]+$NODE_NAME\b" /etc/hosts || echo "127.0.0.1 $NODE_NAME" >>/etc/hosts

# --- etcd -------------------------------------------------------------------------------
start_daemon etcd etcd --name triage --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "triage=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296 --auto-compaction-retention=5m
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver ---------------------------------------------------------------------
# GOGC=400: under bulk load a CPU profile of the apiserver spends a quarter of its time in
# the garbage collector (its heap is small, so GOGC=100 collects constantly); memory is
# plentiful on this node, CPU is not. `env` execs, so the recorded PID is the apiserver's.
start_daemon kube-apiserver env GOGC=400 "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --cert-dir "$PKI" --secure-port "$APISERVER_PORT" --bind-address 127.0.0.1 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --token-auth-file "$PKI/tokens.csv" \
    --client-ca-file "$PKI/client-ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$PKI/sa.key" --service-account-signing-key-file "$PKI/sa.key" \
    --allow-privileged=true --kubelet-preferred-address-types=Hostname \
    --max-requests-inflight 800 --max-mutating-requests-inflight 400 \
    --event-ttl 15m
wait_for "apiserver certificate" 60 test -f "$PKI/apiserver.crt"
write_kubeconfig "$KUBECONFIG_OUT" admin "$CONTEXT_NAME"
write_kubeconfig "$STATE/kcm.kubeconfig" system:kube-controller-manager "$CONTEXT_NAME"
write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler "$CONTEXT_NAME"
write_kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" "$CONTEXT_NAME"
wait_for "apiserver /readyz" 90 sh -c "kubectl --kubeconfig '$KUBECONFIG_OUT' get --raw /readyz | grep -q ok"

# --- controller-manager and scheduler ---------------------------------------------------
start_daemon kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$STATE/kcm.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --port 0 --secure-port 10257 \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/apiserver.crt" \
    --use-service-account-credentials=true \
    --controllers '*,-nodeipam,-cloud-node-lifecycle,-route,-service' \
    --concurrent-namespace-syncs 20 --concurrent-gc-syncs 40 \
    --kube-api-qps 200 --kube-api-burst 400
start_daemon kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --port 0 --secure-port 10259 \
    --kube-api-qps 200 --kube-api-burst 400

# --- containerd -------------------------------------------------------------------------
CTRD="$STATE/containerd"
mkdir -p "$CTRD"
runtime_bin=/usr/sbin/runc
if ! (echo -998 >/proc/self/oom_score_adj) 2>/dev/null; then
    # No CAP_SYS_RESOURCE here: runc would fail every sandbox; see images/runc-wrapper.sh.
    install -m 0755 "$HERE/images/runc-wrapper.sh" "$CTRD/runc-wrapper"
    runtime_bin="$CTRD/runc-wrapper"
fi
containerd config default >"$CTRD/config.toml"
python3 - "$CTRD/config.toml" "$runtime_bin" "$CTRD" <<'PY'
import re, sys
path, runtime, root = sys.argv[1:]
s = open(path).read()
s = re.sub(r'(?m)^root = .*$', f'root = "{root}/root"', s, count=1)
s = re.sub(r'(?m)^state = .*$', f'state = "{root}/state"', s, count=1)
s = re.sub(r'(?m)^(\s*)bin_dir = .*$', r'\1bin_dir = "/usr/lib/cni"', s)
s = re.sub(r'(?m)^(\s*)BinaryName = .*$', rf'\1BinaryName = "{runtime}"', s)
s = re.sub(r'(?m)^(\s*)SystemdCgroup = .*$', r'\1SystemdCgroup = false', s)
s = re.sub(r'(?m)^(\s*)sandbox_image = .*$', r'\1sandbox_image = "registry.k8s.io/pause:3.6"', s)
open(path, "w").write(s)
PY
mkdir -p /etc/cni/net.d
cat >/etc/cni/net.d/10-triage-bridge.conflist <<EOF
{
  "cniVersion": "0.4.0",
  "name": "triage-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "triage0", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
start_daemon containerd containerd --config "$CTRD/config.toml"
wait_for containerd 30 ctr --address /run/containerd/containerd.sock version

# --- images (pause, runner, tools, operator) ---------------------------------------------
[[ "${TRIAGE_SKIP_IMAGES:-0}" == 1 ]] || bash "$HERE/images.sh"

# --- kubelet ----------------------------------------------------------------------------
cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
maxPods: 250
serializeImagePulls: false
evictionHard: {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
imageGCHighThresholdPercent: 100
# emptyDir usage measured every 10 s instead of every minute: a pod over its emptyDir
# sizeLimit is evicted within seconds (the fault suite evicts one; a minute per test adds up).
volumeStatsAggPeriod: 10s
resolvConf: /etc/resolv.conf
EOF
start_daemon kubelet "$BIN_DIR/kubelet" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --config "$STATE/kubelet-config.yaml" \
    --container-runtime=remote \
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" \
    --cert-dir "$STATE/kubelet/pki" --network-plugin=cni
wait_for "node $NODE_NAME Ready" 120 sh -c \
    "kubectl --kubeconfig '$KUBECONFIG_OUT' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
wait_for "default service account" 60 kc get serviceaccount default -n default

log "cluster ready; kubeconfig: $KUBECONFIG_OUT (context $CONTEXT_NAME)"
echo "$KUBECONFIG_OUT"
