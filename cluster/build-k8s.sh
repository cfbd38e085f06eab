#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from
# Debian's kubernetes source package, once. The binaries are cached in $BIN_DIR
# (KUBEBUILDER_ASSETS when set, following envtest's convention) and reused.
source "$(dirname "$0")/lib.sh"

BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
# The cache is keyed on this recipe: a changed recipe rebuilds (KUBEBUILDER_ASSETS is trusted).
RECIPE_ID="$(sha256sum "$0" | cut -c1-16)"
have_all() {
    local b
    for b in "${BINS[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
    [[ -n "${KUBEBUILDER_ASSETS:-}" ]] || [[ "$(cat "$BIN_DIR/.recipe" 2>/dev/null)" == "$RECIPE_ID" ]]
}
if have_all; then
    log "Kubernetes $K8S_VERSION binaries cached in $BIN_DIR"
    exit 0
fi
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks some of: ${BINS[*]}; building into it"
fi

export PATH="/usr/lib/go-1.19/bin:$PATH"
command -v go >/dev/null || { log "go 1.19 missing: run cluster/deps.sh first"; exit 1; }

work="$CACHE_DIR/build"
rm -rf "$work"
mkdir -p "$work" "$BIN_DIR"
cd "$work"
log "fetching Debian's kubernetes source package"
apt-get source -qq --download-only kubernetes >/dev/null
dpkg-source -x --skip-patches ./kubernetes_*.dsc src >/dev/null
tree="$work/src"
cd "$tree"
log "applying Debian patches"
while read -r p; do
    [[ -z "$p" || "$p" == \#* ]] && continue
    patch -p1 -s <"debian/patches/$p"
done <debian/patches/series

# reflect2 1.0.1 faults under Go >= 1.18 on the first CRD write; use Debian's 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete

# The tarball pins a placeholder version in two base.go files (component-base serves /version,
# client-go reports the client); make both say what this is, so clients see a real v1.20.
for f in staging/src/k8s.io/component-base/version/base.go staging/src/k8s.io/client-go/pkg/version/base.go; do
    sed -i -E "s/(gitVersion +(string )?= )\"[^\"]*\"/\1\"$K8S_VERSION\"/; s/(gitMajor +(string )?= )\"[^\"]*\"/\1\"1\"/; s/(gitMinor +(string )?= )\"[^\"]*\"/\1\"20\"/; s/(gitTreeState +(string )?= )\"[^\"]*\"/\1\"clean\"/" "$f"
done

export GOPATH="$tree/.go" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="$CACHE_DIR/gocache"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$tree" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

log "generating OpenAPI code (make generated_files)"
make generated_files >"$work/generated.log" 2>&1 || { tail -30 "$work/generated.log"; exit 1; }

vpkg=k8s.io/kubernetes/vendor/k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=20"
for b in "${BINS[@]}"; do
    log "building $b"
    go build -ldflags "$ldflags" -o "$BIN_DIR/$b.tmp" "./cmd/$b"
    mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
done
echo "$RECIPE_ID" >"$BIN_DIR/.recipe"
cd /
rm -rf "$work"
log "Kubernetes $K8S_VERSION binaries built into $BIN_DIR"
