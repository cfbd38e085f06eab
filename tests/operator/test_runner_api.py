"""The runner API through the apiserver's service proxy, against a real pod on the node.

The runner stand-in image carries busybox, whose httpd serves a directory: enough to be a
runner answering JSON, an oversized answer, and something that is not JSON, through the
same Service shape (`session-<name>`, port `agui`) the operator creates for a session.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentic_operator._objects import RUNNER_PORT, service_name
from agentic_operator._runner_api import RUNNER_BODY_CAP, RunnerApi, RunnerApiError
from agentic_operator.kube import KubeClient
from tests.conftest import wait_until
from tests.operator.conftest import create_admitted_pod

pytestmark = [pytest.mark.cluster, pytest.mark.node]

SESSION = "api-probe"
BIG = RUNNER_BODY_CAP + 1024
# httpd serves /www; the files stand for runner endpoints.
SCRIPT = f"""
mkdir -p /www/repos
printf '{{"repos":[{{"name":"platform","branch":"main"}}]}}' > /www/repos/list
printf '{{"ok":true}}' > /www/health
head -c {BIG} /dev/zero | tr '\\0' 'x' > /www/huge
printf 'not json' > /www/text
exec busybox httpd -f -p {RUNNER_PORT} -h /www
"""


def _runner(kube: KubeClient, ns: str) -> None:
    labels = {"app": "ambient-code-runner", "agentic-session": SESSION}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{SESSION}-runner", "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "runner",
                    "image": "localhost/ambient-runner:dev",
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", SCRIPT],
                    "ports": [{"name": "agui", "containerPort": RUNNER_PORT}],
                    "readinessProbe": {
                        "tcpSocket": {"port": RUNNER_PORT},
                        "periodSeconds": 1,
                    },
                    "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
                }
            ],
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(SESSION)},
        "spec": {
            "selector": labels,
            "ports": [{"name": "agui", "port": RUNNER_PORT, "targetPort": "agui"}],
        },
    }
    create_admitted_pod(kube, ns, pod)
    kube.create(f"/api/v1/namespaces/{ns}/services", svc)

    def ready() -> bool:
        ep = kube.get_or_none(f"/api/v1/namespaces/{ns}/endpoints/{service_name(SESSION)}")
        return any(s.get("addresses") for s in (ep or {}).get("subsets") or [])

    wait_until(ready, timeout=90, what="the runner's endpoint")


def test_runner_api_through_the_service_proxy(kube: KubeClient, namespace: str) -> None:
    _runner(kube, namespace)
    api = RunnerApi(kube, timeout=10)

    def answer() -> Any:
        try:
            return api.call(namespace=namespace, session=SESSION, method="GET", path="/health")
        except RunnerApiError:
            return None

    assert wait_until(answer, timeout=60, what="the runner's first answer") == {"ok": True}
    listed = api.call(namespace=namespace, session=SESSION, method="GET", path="repos/list")
    assert listed == {"repos": [{"name": "platform", "branch": "main"}]}

    # Over the cap: refused with a clear error, never read whole into memory.
    with pytest.raises(RunnerApiError, match="over 64 KiB"):
        api.call(namespace=namespace, session=SESSION, method="GET", path="/huge")
    with pytest.raises(RunnerApiError, match="not JSON"):
        api.call(namespace=namespace, session=SESSION, method="GET", path="/text")
    # A missing endpoint is the runner's 404, named with its path.
    with pytest.raises(RunnerApiError, match="/nope: 404"):
        api.call(namespace=namespace, session=SESSION, method="GET", path="/nope")
    # The proxy path names the session's Service and its agui port, as the operator builds it.
    assert RunnerApi.proxy_path(namespace, SESSION, "/x").endswith(
        f"/services/{service_name(SESSION)}:agui/proxy/x"
    )
