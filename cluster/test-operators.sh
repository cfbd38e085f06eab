#!/usr/bin/env bash
# Builds and imports the third-party test operators that stand for users' operators, and the
# py-spy sidecar image triage attaches to Python operators that have no py-spy of their own:
#
#   localhost/triage-kopf-sessions:dev   kopf operator; its venv has memray, not py-spy
#   localhost/triage-client-sessions:dev `kubernetes`-client operator; neither memray nor py-spy
#   localhost/triage-go-informer:dev     client-go informer operator: only its static binary
#   localhost/triage-pyspy:dev           busybox + the static py-spy binary from the PyPI wheel
#
# As for the project's operator, the Python images hold only empty dirs and symlinks: the
# Deployments in deploy/test-operators/*/local mount /usr (Debian's python3 runs them) and the
# runtime venvs built here under $VENVS. Idempotent: inputs are hashed, and a second run with
# nothing changed does no pip, go or ctr work.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENVS="${TEST_OPERATOR_VENVS:-/opt/triage-test-operators}"
OUT="$CACHE_DIR/images"
OPS="$REPO/tests/operators"
PY=/usr/bin/python3
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)
BB=/bin/busybox
[[ -x "$BB" ]] || BB=/usr/bin/busybox
mkdir -p "$OUT" "$VENVS"

# Not `grep -q`: with pipefail, an early exit SIGPIPEs ctr and reads as "missing".
have_image() { "${CTR[@]}" images ls -q 2>/dev/null | grep -x "$1" >/dev/null; }
sum_of() { cat "$@" | sha256sum | cut -c1-16; }

# import_if_changed NAME KEY TAR-BUILDER ARGS... : rebuild and import when KEY changed.
import_if_changed() {
    local name="$1" key="$2" short="${1#localhost/}"
    shift 2
    short="${short%%:*}"
    if [[ "$(cat "$OUT/$short.sum" 2>/dev/null)" == "$key" ]] && have_image "$name"; then
        return 0
    fi
    "$@" --name "$name" --out "$OUT/$short.tar"
    "${CTR[@]}" images import --no-unpack=false "$OUT/$short.tar" >/dev/null
    echo "$key" >"$OUT/$short.sum"
    log "imported $name"
}

oci() { python3 "$HERE/oci_image.py" "$@"; }

# venv NAME PACKAGE-DIR EXTRA-REQUIREMENT... : the runtime venv of one Python test operator.
venv() {
    local name="$1" pkg="$2" dir="$VENVS/$1/venv"
    shift 2
    local key
    key="$(printf '%s\n' "$@" | cat - "$pkg"/pyproject.toml "$pkg"/*.py "$0" | sha256sum | cut -c1-16)"
    if [[ -x "$dir/bin/python" && "$(cat "$dir/.triage-key" 2>/dev/null)" == "$key" ]]; then
        return 0
    fi
    [[ -x "$dir/bin/python" ]] || "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@" "$pkg"
    # Reinstall the operator itself even when its version did not change.
    "$dir/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$pkg"
    rm -rf "$pkg/build" "$pkg"/*.egg-info
    echo "$key" >"$dir/.triage-key"
    log "runtime venv of $name ready at $dir"
}

python_image_dirs=(--dir /usr --dir /tmp --dir /profiles --dir /etc --dir /proc --dir /sys --dir /dev
    --dir /opt --dir /root --dir /var/run/secrets/kubernetes.io/serviceaccount
    --symlink /lib:usr/lib --symlink /lib64:usr/lib64 --symlink /bin:usr/bin --symlink /sbin:usr/sbin)

# --- kopf-sessions: kopf, memray (an image that ships memray), no py-spy --------------------
venv kopf-sessions "$OPS/kopf_sessions" "memray>=1.13"
kopf_venv="$VENVS/kopf-sessions/venv"
[[ ! -e "$kopf_venv/bin/py-spy" ]] || { log "py-spy must not be in $kopf_venv"; exit 1; }
entry='["'"$kopf_venv"'/bin/kopf","run","--standalone","--liveness=http://0.0.0.0:18090/healthz","-m","kopf_sessions","--all-namespaces"]'
import_if_changed localhost/triage-kopf-sessions:dev "$(echo "$entry" | sha256sum | cut -c1-16)" \
    oci "${python_image_dirs[@]}" --entrypoint "$entry"

# --- client-sessions: the kubernetes client only (no memray, no py-spy) ---------------------
venv client-sessions "$OPS/client_sessions"
client_venv="$VENVS/client-sessions/venv"
for tool in memray py-spy; do
    [[ ! -e "$client_venv/bin/$tool" ]] || { log "$tool must not be in $client_venv"; exit 1; }
done
entry='["'"$client_venv"'/bin/client-sessions"]'
import_if_changed localhost/triage-client-sessions:dev "$(echo "$entry" | sha256sum | cut -c1-16)" \
    oci "${python_image_dirs[@]}" --entrypoint "$entry"

# --- go-informer: the static binary and nothing else (no shell, like distroless) ------------
go_bin="$(bash "$HERE/build-go-operator.sh")"
import_if_changed localhost/triage-go-informer:dev "$(sum_of "$go_bin")" \
    oci --file "$go_bin:/go-informer:0755" --entrypoint '["/go-informer"]'

# --- triage-pyspy: busybox and py-spy, to run beside a Python operator ----------------------
# The PyPI wheel's py-spy is a static-pie binary: it runs in a busybox image as it is.
pyspy_dir="$CACHE_DIR/py-spy"
if [[ ! -x "$pyspy_dir/py-spy" ]]; then
    rm -rf "$pyspy_dir.tmp"
    mkdir -p "$pyspy_dir.tmp"
    "$kopf_venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$pyspy_dir.tmp" "py-spy>=0.3.14"
    python3 - "$pyspy_dir.tmp" <<'PY'
import pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
(wheel,) = d.glob("py_spy-*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [n for n in z.namelist() if n.endswith(".data/scripts/py-spy")]
    (d / "py-spy").write_bytes(z.read(member))
(d / "py-spy").chmod(0o755)
(d / "VERSION").write_text(wheel.name.split("-")[1] + "\n")
PY
    rm -f "$pyspy_dir.tmp"/*.whl
    rm -rf "$pyspy_dir"
    mv "$pyspy_dir.tmp" "$pyspy_dir"
    log "py-spy $(cat "$pyspy_dir/VERSION") extracted from its wheel"
fi
applets=(ps pidof ls cat grep find xargs sleep tr head tail)
links=(--symlink /bin/sh:busybox)
for a in "${applets[@]}"; do links+=(--symlink "/bin/$a:busybox"); done
import_if_changed localhost/triage-pyspy:dev "$(sum_of "$pyspy_dir/py-spy" "$BB" "$0")" \
    oci --file "$BB:/bin/busybox:0755" --file "$pyspy_dir/py-spy:/usr/local/bin/py-spy:0755" \
    "${links[@]}" --dir /tmp --dir /etc --dir /proc --dir /sys --dir /dev \
    --entrypoint '["/bin/busybox","sleep","2147483647"]'

log "test operators ready (venvs in $VENVS)"
