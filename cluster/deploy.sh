#!/usr/bin/env bash
# Deploys the operator (CRDs, RBAC, Deployment) to the current cluster and waits for it.
# On the local node the code runs from a host-mounted virtualenv, so a redeploy reinstalls
# it and restarts the pod; with kind the image was loaded by `make image`.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OVERLAY="${OVERLAY:-local}"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_OUT}"
if [[ "$OVERLAY" == local ]]; then
    bash "$HERE/operator-venv.sh"
fi
kubectl apply -k "$REPO/deploy/crds" >/dev/null
kubectl wait --for=condition=Established crd/agenticsessions.vteam.ambient-code crd/projectsettings.vteam.ambient-code --timeout=60s >/dev/null
kubectl apply -k "$REPO/deploy/$OVERLAY"
kubectl -n ambient-code rollout restart deployment/agentic-operator >/dev/null
kubectl -n ambient-code rollout status deployment/agentic-operator --timeout=180s

# Sessions wait for the prerequisite Secret ambient-runner-secrets in their namespace (as
# upstream's do, unless USE_VERTEX is set). The local cluster has no real API key; a
# placeholder lets the managed namespaces that exist now run runners.
# Whatever creates managed namespaces later (tests, triage scenarios) creates it there.
for ns in $(kubectl get namespaces -l ambient-code.io/managed=true -o name | cut -d/ -f2); do
    kubectl -n "$ns" create secret generic ambient-runner-secrets \
        --from-literal=ANTHROPIC_API_KEY=local-placeholder --dry-run=client -o yaml |
        kubectl apply -f - >/dev/null
done
