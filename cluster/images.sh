#!/usr/bin/env bash
# Builds and imports the node's images: the sandbox image (pause), the runner stand-in and
# the operator image. No registry can be reached, so all are assembled from local files.
# The operator image holds only empty dirs and symlinks: the Deployment overlay in
# deploy/local mounts /usr, the interpreter prefix and the operator's runtime virtualenv.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="$CACHE_DIR/images"
mkdir -p "$OUT"
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)
BB=/bin/busybox
[[ -x "$BB" ]] || BB=/usr/bin/busybox

have_image() { "${CTR[@]}" images ls -q 2>/dev/null | grep -qx "$1"; }

import() { # NAME TAR
    "${CTR[@]}" images import --no-unpack=false "$2" >/dev/null
    log "imported $1"
}

build_busybox_image() { # NAME OUT extra args...
    local name="$1" out="$2"
    shift 2
    python3 "$HERE/oci_image.py" --name "$name" --out "$out" \
        --file "$BB:/bin/busybox:0755" --symlink /bin/sh:busybox \
        --dir /tmp --dir /etc --dir /proc --dir /sys --dir /dev "$@"
}

if ! have_image registry.k8s.io/pause:3.6; then
    build_busybox_image registry.k8s.io/pause:3.6 "$OUT/pause.tar" \
        --entrypoint '["/bin/busybox","sleep","2147483647"]'
    import registry.k8s.io/pause:3.6 "$OUT/pause.tar"
fi

runner_sum=$(sha256sum "$HERE/images/runner.sh" | cut -c1-12)
if [[ "$(cat "$OUT/runner.sum" 2>/dev/null)" != "$runner_sum" ]] || ! have_image localhost/ambient-runner:dev; then
    build_busybox_image localhost/ambient-runner:dev "$OUT/runner.tar" \
        --file "$HERE/images/runner.sh:/runner.sh:0755" \
        --entrypoint '["/bin/sh","/runner.sh"]'
    import localhost/ambient-runner:dev "$OUT/runner.tar"
    echo "$runner_sum" >"$OUT/runner.sum"
fi

# The operator's runtime virtualenv: a non-editable install of this project with only what the
# operator process needs (the CLI's heavy dependencies stay out of the pod).
bash "$HERE/operator-venv.sh"

if ! have_image localhost/agentic-operator:dev; then
    python3 "$HERE/oci_image.py" --name localhost/agentic-operator:dev --out "$OUT/operator.tar" \
        --dir /usr --dir /tmp --dir /profiles --dir /etc --dir /proc --dir /sys --dir /dev \
        --dir /opt --dir /root --dir /var/run/secrets/kubernetes.io/serviceaccount \
        --symlink /lib:usr/lib --symlink /lib64:usr/lib64 --symlink /bin:usr/bin \
        --symlink /sbin:usr/sbin \
        --entrypoint '["/opt/agentic-operator/venv/bin/agentic-operator"]'
    import localhost/agentic-operator:dev "$OUT/operator.tar"
fi
