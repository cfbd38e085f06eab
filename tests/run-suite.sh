#!/usr/bin/env bash
# The whole suite against the real cluster, in the time CI allows (`make test` runs this).
#
# Most of the wall time is waiting (rollouts, settles, OOM kills, the kubelet's stats), not
# CPU, so two pytest processes run side by side: the node tests of tests/e2e (each in
# namespaces of its own, run namespaces prefixed by the test) and everything else. Tests
# marked `disruptive` restart the apiserver and would pull it from under the other half, and
# tests marked `alone` need the cluster to themselves (more runner CPU requests than fit
# beside the other half, or figures that the other half's objects would move):
# they run last, alone. Each half writes its own log; both are printed whatever happens.
#
# Both children are started here, their PIDs recorded in $LOGS/*.pid, and stopped by those
# PIDs if this script is interrupted.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/pytest ${PYTEST_ARGS:-})
LOGS="${TEST_LOGS:-reports/test-logs}"
KUBECONFIG_FILE="${TRIAGE_KUBECONFIG:-$HOME/.kube/triage-local.yaml}"
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.pid

# Cluster-wide objects both halves need, applied once here rather than by both at once.
kubectl --kubeconfig "$KUBECONFIG_FILE" apply -k deploy/crds >/dev/null
kubectl --kubeconfig "$KUBECONFIG_FILE" apply -k deploy/triage >/dev/null

stop_children() {
    for f in "$LOGS"/*.pid; do
        [[ -f "$f" ]] || continue
        pid="$(cat "$f")"
        kill -TERM "$pid" 2>/dev/null || true
    done
}
trap 'stop_children; exit 130' INT TERM

start=$(date +%s)
# Waits on the cluster are stretched while the two halves share the node (tests/conftest.py).
export TRIAGE_TEST_WAIT_SCALE="${TRIAGE_TEST_WAIT_SCALE:-3}"
# Each half its own loopback ports, below the kernel's ephemeral range (tests/processes.py).
TRIAGE_TEST_PORTS=20000-25999 "${PYTEST[@]}" -m "not disruptive and not alone" tests/e2e \
    >"$LOGS/e2e.log" 2>&1 &
echo $! >"$LOGS/e2e.pid"
TRIAGE_TEST_PORTS=26000-31999 "${PYTEST[@]}" -m "not disruptive and not alone" --ignore=tests/e2e \
    >"$LOGS/main.log" 2>&1 &
echo $! >"$LOGS/main.pid"

wait "$(cat "$LOGS/e2e.pid")"; rc_e2e=$?
wait "$(cat "$LOGS/main.pid")"; rc_main=$?
rm -f "$LOGS"/*.pid
mid=$(date +%s)

for half in main e2e; do
    printf '\n======== %s (exit %s) ========\n' "$half" "$([[ $half == main ]] && echo $rc_main || echo $rc_e2e)"
    cat "$LOGS/$half.log"
done

TRIAGE_TEST_WAIT_SCALE=1 "${PYTEST[@]}" -m "disruptive or alone" 2>&1 | tee "$LOGS/disruptive.log"
rc_dis=${PIPESTATUS[0]}
printf '\nside by side: %ss; disruptive and alone, after: %ss\n' "$((mid - start))" "$(($(date +%s) - mid))"

# pytest's 5 is "no tests collected": a failure here too.
for rc in "$rc_main" "$rc_e2e" "$rc_dis"; do
    [[ $rc -eq 0 ]] || { echo "test suite failed (exit codes: main $rc_main, e2e $rc_e2e, disruptive $rc_dis)" >&2; exit 1; }
done
echo "test suite passed"
