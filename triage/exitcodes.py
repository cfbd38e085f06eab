"""Exit codes of the `triage` CLI, one place so the README, --help and tests agree.

They are part of the public contract: CI jobs and scripts branch on them. Every typed error
in `triage.errors` carries one of these, and `triage.cli.main` is the one place that turns an
error into its line on stderr and its code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The run finished but found what it was asked to guard against (a budget exceeded).
    BUDGET_EXCEEDED = 1
    #: Bad input: an option value, a quantity, a scenario or template, a run directory, an
    #: --out that cannot hold a run. Nothing was changed on the cluster.
    USAGE = 2
    #: Preflight failed before any change: cluster unreachable, CRD, Deployment, RBAC, the
    #: target's interpreter cannot import memray, pod security forbids a profiler sidecar.
    PREFLIGHT = 3
    #: The kube context is not a kind or the project's local cluster (see --allow-any-context).
    CONTEXT_REFUSED = 4
    #: The run failed after it started changing the cluster; the Deployment was restored.
    RUN_FAILED = 5
    #: Restoring the Deployment failed; `triage restore RUN_DIR` finishes the job.
    RESTORE_FAILED = 6
    #: Another run holds the lock on this Deployment (its run id and start time are named).
    LOCKED = 7
    #: Another writer changed the Deployment during the run; the load was stopped and what
    #: triage changed was undone (their change kept, see the restore rule).
    CHANGED_BY_OTHERS = 8
    #: A bug: an unexpected error, printed with its traceback.
    INTERNAL = 70
    #: Interrupted (Ctrl-C / SIGTERM); the Deployment was restored.
    INTERRUPTED = 130


#: One line per code for `--help` epilogs and the README table.
DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.BUDGET_EXCEEDED: "a budget was exceeded (`triage ci`)",
    ExitCode.USAGE: "bad input (option, quantity, scenario, template, run directory, --out); "
    "nothing was changed",
    ExitCode.PREFLIGHT: "preflight failed (cluster, CRDs, Deployment, RBAC, profiler "
    "prerequisites); nothing was changed",
    ExitCode.CONTEXT_REFUSED: "the kube context is not kind or the local cluster "
    "(`--allow-any-context` to override)",
    ExitCode.RUN_FAILED: "the run failed after it started; the Deployment was restored",
    ExitCode.RESTORE_FAILED: "restoring failed; `triage restore RUN_DIR` finishes it",
    ExitCode.LOCKED: "another run holds this Deployment's lock; nothing was changed",
    ExitCode.CHANGED_BY_OTHERS: "another writer changed the Deployment during the run; the "
    "load stopped and triage's own changes were undone",
    ExitCode.INTERNAL: "internal error (a bug); the traceback is printed",
    ExitCode.INTERRUPTED: "interrupted; the Deployment was restored",
}
