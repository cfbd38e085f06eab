#!/usr/bin/env bash
# Installs the Debian packages the local node and the tests need. Idempotent:
# a machine that already has everything does no apt work at all.
source "$(dirname "$0")/lib.sh"

PKGS=(etcd-server golang-1.19-go rsync golang-github-modern-go-reflect2-dev
    containerd runc containernetworking-plugins busybox-static iptables conntrack
    dpkg-dev chromium fonts-dejavu-core python3-venv)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

src_list=/etc/apt/sources.list.d/triage-deb-src.sources
need_src=0
[[ -f "$src_list" ]] || need_src=1
# The source package is needed while the node's binaries or the Go test operator's tree
# (cluster/build-go-operator.sh) are missing.
[[ -x "$BIN_DIR/kube-apiserver" && -f "$CACHE_DIR/k8s-src/.triage-ready" ]] && need_src=0

if ((${#missing[@]} == 0 && need_src == 0)); then
    log "all Debian packages present"
    exit 0
fi

if [[ ! -f "$src_list" ]]; then
    # The source package of kubernetes needs a deb-src entry on the same mirror.
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri="${uri:-http://deb.debian.org/debian}"
    cat >"$src_list" <<EOF
Types: deb-src
URIs: $uri
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
log "apt-get update"
apt-get update -qq
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
log "Debian packages ready"
