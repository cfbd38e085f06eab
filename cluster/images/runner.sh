#!/bin/sh
# Stand-in for the ambient-code runner on the local node (no registry, no real runner image).
# Its behaviour is driven by the session's environment variables so tests can steer a pod:
#   RUNNER_EXIT_AFTER=N   exit after N seconds (default: run until stopped)
#   RUNNER_EXIT_CODE=C    the exit code used then (default 0: the session completes)
#   RUNNER_ALLOCATE=1     allocate memory without bound (ends OOMKilled under a memory limit)
trap 'exit 0' TERM INT
echo "runner: started (session ${AGENTIC_SESSION_NAME:-unknown})"
if [ "${RUNNER_ALLOCATE:-0}" = "1" ]; then
    exec tail /dev/zero
fi
if [ -n "${RUNNER_EXIT_AFTER:-}" ]; then
    sleep "${RUNNER_EXIT_AFTER}" &
    wait $!
    echo "runner: exiting with ${RUNNER_EXIT_CODE:-0}"
    exit "${RUNNER_EXIT_CODE:-0}"
fi
while :; do
    sleep 3600 &
    wait $!
done
