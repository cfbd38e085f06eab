#!/usr/bin/env bash
# Builds the Go test operator (tests/operators/go_informer/main.go): a client-go dynamic-informer
# controller that stands for users' Go operators. No Go module can be downloaded here, so it is
# built the way the node's own binaries are: in GOPATH mode inside Debian's kubernetes source
# tree, against the client-go and apimachinery that tree vendors, with Debian's Go 1.19.
#
# The extracted tree (~280 MB) is kept in $CACHE_DIR/k8s-src (build-k8s.sh deletes its own) and
# re-extracted when missing; the binary is cached per hash of main.go and this script, so a
# second run does nothing. Prints the binary's path on stdout.
# Usage: cluster/build-go-operator.sh [--print-tree]
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
MAIN="$REPO/tests/operators/go_informer/main.go"
TREE="$CACHE_DIR/k8s-src"
GO=/usr/lib/go-1.19/bin/go
NAME=go-informer

if [[ "${1:-}" == --print-tree ]]; then
    echo "$TREE"
    exit 0
fi

key="$(cat "$MAIN" "$0" | sha256sum | cut -c1-16)"
OUT="$CACHE_DIR/$NAME/$key"
if [[ -x "$OUT/$NAME" ]]; then
    log "Go test operator cached: $OUT/$NAME"
    echo "$OUT/$NAME"
    exit 0
fi
[[ -x "$GO" ]] || { log "$GO missing: run cluster/deps.sh first"; exit 1; }

mkdir -p "$CACHE_DIR"
# Worktrees on one machine share the cache: one build at a time.
exec 9>"$CACHE_DIR/$NAME.lock"
flock 9

extract_tree() {
    local work="$TREE.extract"
    rm -rf "$work"
    mkdir -p "$work"
    log "fetching Debian's kubernetes source package into $TREE"
    (cd "$work" && apt-get source -qq --download-only kubernetes >/dev/null) || {
        log "apt-get source kubernetes failed: cluster/deps.sh adds the deb-src entry it needs"
        exit 1
    }
    (cd "$work" && dpkg-source -x --skip-patches ./kubernetes_*.dsc src >/dev/null)
    # reflect2 1.0.1 faults under Go >= 1.18 (see build-k8s.sh); use Debian's 1.0.2.
    rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$work/src/vendor/github.com/modern-go/reflect2"
    find "$work/src/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete
    rm -rf "$TREE"
    mv "$work/src" "$TREE"
    rm -rf "$work"
    touch "$TREE/.triage-ready"
}
[[ -f "$TREE/.triage-ready" ]] || extract_tree

# GOPATH layout as for the node's binaries: the tree is k8s.io/kubernetes, so vendor/ resolves
# k8s.io/client-go and friends. Our main.go goes into the tree (never into this repository).
gopath="$CACHE_DIR/$NAME-gopath"
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$TREE" "$gopath/src/k8s.io/kubernetes"
mkdir -p "$TREE/test/triage-$NAME"
install -m 0644 "$MAIN" "$TREE/test/triage-$NAME/main.go"

export GOPATH="$gopath" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="$CACHE_DIR/gocache"
mkdir -p "$OUT"
log "building $NAME (GOPATH mode, vendored client-go)"
t0=$(date +%s)
(cd "$gopath/src/k8s.io/kubernetes" && "$GO" build -trimpath -ldflags "-s -w" -o "$OUT/$NAME.tmp" "./test/triage-$NAME")
mv "$OUT/$NAME.tmp" "$OUT/$NAME"
log "built $OUT/$NAME in $(($(date +%s) - t0)) s"
echo "$OUT/$NAME"
