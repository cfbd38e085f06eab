# The kubernetes-client test operator for kind (`make image CLUSTER=kind`). The local node runs
# the same venv from a host mount (cluster/test-operators.sh). Neither memray nor py-spy is in
# the image: triage brings py-spy in a sidecar (pyspy.Dockerfile).
FROM python:3.11-slim
COPY tests/operators/client_sessions /src/client_sessions
RUN python -m venv /opt/triage-test-operators/client-sessions/venv \
 && /opt/triage-test-operators/client-sessions/venv/bin/pip install --no-cache-dir /src/client_sessions \
 && rm -rf /src
USER 65532:65532
ENTRYPOINT ["/opt/triage-test-operators/client-sessions/venv/bin/client-sessions"]
