# The operator image for kind (`make image CLUSTER=kind`). Only the operator's runtime
# dependencies go in: the CLI's (pandas, matplotlib, kubernetes) stay out of the pod.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agentic_operator ./agentic_operator
COPY triage ./triage
RUN python -m venv /opt/agentic-operator/venv \
 && /opt/agentic-operator/venv/bin/pip install --no-cache-dir "urllib3>=2.3" "PyYAML>=6" "memray>=1.13" "py-spy>=0.3.14" \
 && /opt/agentic-operator/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
COPY --from=build /opt/agentic-operator/venv /opt/agentic-operator/venv
RUN mkdir -p /profiles && chown 65532:65532 /profiles
USER 65532:65532
ENTRYPOINT ["/opt/agentic-operator/venv/bin/agentic-operator"]
