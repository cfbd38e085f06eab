"""Refuses to break an operator on a cluster that is not a disposable one.

`triage reproduce` lowers the operator's memory limit until it is OOMKilled: on a shared or
production context that is an outage. Only kind clusters and the project's local cluster are
accepted unless the user says otherwise with --allow-any-context.
"""

from __future__ import annotations

from triage.cluster import Cluster
from triage.errors import ContextRefusedError


def check_context(cluster: Cluster, *, allow_any: bool) -> None:
    """Raise ContextRefusedError unless the context is kind, local, or explicitly allowed."""
    if cluster.kind in {"kind", "local"} or allow_any:
        return
    raise ContextRefusedError(
        f"refusing context {cluster.context!r} ({cluster.server}): it is neither a kind cluster "
        "(context kind-*, server on localhost) nor the local cluster (triage-local), and this "
        "command deliberately OOM-kills the operator; pass --allow-any-context if you mean it"
    )
