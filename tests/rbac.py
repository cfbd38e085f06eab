"""A kubeconfig for triage's least-privilege identity (deploy/triage), for the node tests.

The node tests run `triage` as the `triage` ServiceAccount bound to the shipped ClusterRole,
not as the cluster admin: a verb the role forgot fails the test that needs it. v1.20 mints
a token Secret for every ServiceAccount; its token and the cluster's CA make the kubeconfig.
The context is named `triage-local` so the disposable-cluster guard accepts it as the local
cluster, exactly as it does for the admin kubeconfig.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import KUBECONFIG, REPO, kubectl

NAMESPACE = "triage-system"
ACCOUNT = "triage"


def _token(timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sa = json.loads(kubectl("-n", NAMESPACE, "get", "serviceaccount", ACCOUNT, "-o", "json"))
        for ref in sa.get("secrets") or []:
            secret = json.loads(
                kubectl("-n", NAMESPACE, "get", "secret", ref["name"], "-o", "json", check=False)
                or "{}"
            )
            token = (secret.get("data") or {}).get("token")
            if token:
                return base64.b64decode(token).decode()
        time.sleep(0.5)
    raise TimeoutError(f"no token for serviceaccount {NAMESPACE}/{ACCOUNT}")


def least_privilege_kubeconfig(path: Path) -> Path:
    """Apply deploy/triage and write a kubeconfig for its ServiceAccount at `path`."""
    kubectl("apply", "-k", str(REPO / "deploy" / "triage"))
    admin = yaml.safe_load(KUBECONFIG.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "triage-local", "cluster": cluster}],
        "users": [{"name": "triage", "user": {"token": _token()}}],
        "contexts": [
            {"name": "triage-local", "context": {"cluster": "triage-local", "user": "triage"}}
        ],
        "current-context": "triage-local",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


#: The user the expiring client certificates name (bound to the same ClusterRole).
EXPIRING_USER = "triage-expiring"
PKI = Path("/var/lib/triage-local/pki")


def expiring_kubeconfig(path: Path, *, lifetime: float, log: Path) -> Path:
    """A kubeconfig whose credential is an exec plugin issuing `lifetime`-second certificates.

    The user is bound to the shipped `triage` ClusterRole, so this identity can do exactly
    what the ServiceAccount can, only its credential keeps expiring.
    """
    kubectl("apply", "-k", str(REPO / "deploy" / "triage"))
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": EXPIRING_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "triage"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": EXPIRING_USER}],
    }  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps(binding))
    admin = yaml.safe_load(KUBECONFIG.read_text())
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": [str(REPO / "tests" / "credplugin.py"), "--ca-cert", str(PKI / "client-ca.crt"),
                 "--ca-key", str(PKI / "client-ca.key"), "--user", EXPIRING_USER,
                 "--lifetime", str(lifetime), "--log", str(log)],
    }  # fmt: skip
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "triage-local", "cluster": dict(admin["clusters"][0]["cluster"])}],
        "users": [{"name": EXPIRING_USER, "user": {"exec": plugin}}],
        "contexts": [
            {"name": "triage-local", "context": {"cluster": "triage-local", "user": EXPIRING_USER}}
        ],
        "current-context": "triage-local",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path
