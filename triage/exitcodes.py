"""Exit codes of the `triage` CLI, one place so the README, --help and tests agree.

They are part of the public contract: CI jobs and scripts branch on them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The run finished but found what it was asked to guard against (a budget exceeded).
    BUDGET_EXCEEDED = 1
    #: Bad input: an option value, a quantity, an unknown scenario, a missing run directory.
    USAGE = 2
    #: Preflight failed before any change: cluster unreachable, CRD or Deployment missing, RBAC.
    PREFLIGHT = 3
    #: The kube context is not a kind or the project's local cluster (see --allow-any-context).
    CONTEXT_REFUSED = 4
    #: The run failed after it started changing the cluster; the Deployment was restored.
    RUN_FAILED = 5
    #: Restoring the Deployment failed; `triage restore RUN_DIR` finishes the job.
    RESTORE_FAILED = 6
    #: Interrupted (Ctrl-C / SIGTERM); the Deployment was restored.
    INTERRUPTED = 130
