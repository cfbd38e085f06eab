#!/bin/sh
# Stand-in for the ambient-code runner on the local node (no registry, no real runner image).
# Its behaviour is driven by the session's environment variables so tests can steer a pod:
#   RUNNER_EXIT_AFTER=N   exit after N seconds (default: run until stopped)
#   RUNNER_EXIT_CODE=C    the exit code used then (default 0: the session completes)
#   RUNNER_ALLOCATE=1     touch a 512 MiB buffer (ends OOMKilled under any smaller memory limit)
trap 'exit 0' TERM INT
echo "runner: started (session ${AGENTIC_SESSION_NAME:-unknown})"
if [ "${RUNNER_ALLOCATE:-0}" = "1" ]; then
    # dd allocates one buffer of the block size and read(2) from /dev/zero fills all of it,
    # so every page is touched at once and the kernel OOM-kills it under any smaller limit.
    # exec: dd must be the container's PID 1, or the OOM killer picks it and the shell
    # lives on. (`tail /dev/zero` grew its line buffer by realloc and could fail that
    # allocation itself, exiting 1 instead of being OOMKilled.)
    exec dd if=/dev/zero of=/dev/null bs=512M count=1
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
