# The kopf test operator for kind (`make image CLUSTER=kind`). The local node runs the same
# venv from a host mount (cluster/test-operators.sh). memray is in the image; py-spy is not.
FROM python:3.11-slim
COPY tests/operators/kopf_sessions /src/kopf_sessions
RUN python -m venv /opt/triage-test-operators/kopf-sessions/venv \
 && /opt/triage-test-operators/kopf-sessions/venv/bin/pip install --no-cache-dir "memray>=1.13" /src/kopf_sessions \
 && rm -rf /src
USER 65532:65532
ENTRYPOINT ["/opt/triage-test-operators/kopf-sessions/venv/bin/kopf", "run", "--standalone", "--liveness=http://0.0.0.0:18090/healthz", "-m", "kopf_sessions", "--all-namespaces"]
