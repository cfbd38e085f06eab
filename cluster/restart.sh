#!/usr/bin/env bash
# Restarts one control-plane daemon by its PID file (tests use it to prove that watches
# survive an apiserver restart). Usage: cluster/restart.sh kube-apiserver [DOWN_SECONDS]
source "$(dirname "$0")/lib.sh"
name="${1:?daemon name}"
down="${2:-0}"
[[ -f "$(pid_file "$name")" ]] || { log "$name is not managed here"; exit 2; }
stop_daemon "$name"
sleep "$down"
TRIAGE_SKIP_IMAGES=1 bash "$(dirname "$0")/up.sh" >/dev/null
