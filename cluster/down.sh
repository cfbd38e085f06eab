#!/usr/bin/env bash
# Stops exactly the processes cluster/up.sh started (by their PID files), removes the
# containers the kubelet left in containerd, the CNI state and the cluster state directory.
# Safe to run twice and on a half-started cluster.
source "$(dirname "$0")/lib.sh"
KEEP_STATE="${KEEP_STATE:-0}"
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)

stop_daemon kubelet 20
stop_daemon kube-scheduler
stop_daemon kube-controller-manager

# Pod containers outlive the kubelet (their shims are children of containerd): remove them
# through containerd's API while it still runs.
if is_running containerd; then
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
        "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [[ -z "$("${CTR[@]}" tasks ls -q 2>/dev/null | head -1)" ]] && break
        for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
            "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
        done
        sleep 0.5
    done
    for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
        "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
fi
stop_daemon containerd 20
stop_daemon kube-apiserver
stop_daemon etcd

# Sandboxes' network namespaces and the bridge belong to this cluster's CNI config.
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
    ip netns delete "$ns" 2>/dev/null || true
done
ip link delete triage0 2>/dev/null || true
rm -rf /var/lib/cni/networks/triage-bridge /etc/cni/net.d/10-triage-bridge.conflist

if [[ "$KEEP_STATE" != "1" && -d "$STATE" ]]; then
    # kubelet leaves bind mounts (secrets, emptyDirs) under its root dir.
    grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$STATE"
fi
log "cluster down"
