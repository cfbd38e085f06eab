"""Typed errors of the triage CLI, each carrying the exit code it ends the process with.

Commands and the modules under them raise these; `triage.cli.main` catches `TriageError`
at the one boundary and prints its one-line message (memray's `commands/__init__.py` main()
is the model). Anything else is a bug and keeps its traceback. Stdlib only: the offline
report side raises these too.
"""

from __future__ import annotations

from pathlib import Path

from triage.exitcodes import ExitCode


class TriageError(Exception):
    """A failure the user can act on: a one-line message and a documented exit code."""

    exit_code: ExitCode = ExitCode.RUN_FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        #: The run directory the failure concerns, when there is one.
        self.run_dir: Path | None = None


class UsageError(TriageError):
    """Bad input: an option, a file or a value the user gave; nothing was changed."""

    exit_code = ExitCode.USAGE


class PreflightError(TriageError):
    """The cluster or the target cannot take the run (RBAC, memray missing, unreachable)."""

    exit_code = ExitCode.PREFLIGHT


class ContextRefusedError(TriageError):
    """The context is not a disposable cluster and --allow-any-context was not given."""

    exit_code = ExitCode.CONTEXT_REFUSED


class RunFailedError(TriageError):
    """The run started and failed; the Deployment was restored."""

    exit_code = ExitCode.RUN_FAILED


class RestoreError(TriageError):
    """The Deployment could not be put back; the message says how to finish."""

    exit_code = ExitCode.RESTORE_FAILED


class LockHeldError(TriageError):
    """Another run holds the operator's lock (or left it behind, killed)."""

    exit_code = ExitCode.LOCKED


class ChangedByOthersError(TriageError):
    """Someone else changed the Deployment mid-run; the load was stopped."""

    exit_code = ExitCode.CHANGED_BY_OTHERS


class RunInterruptedError(TriageError):
    """Ctrl-C or SIGTERM; the Deployment was restored (or the restore error says why not)."""

    exit_code = ExitCode.INTERRUPTED


class ReportError(UsageError):
    """Loading, analysing or rendering a run failed for a reason in its input."""


class PathError(ReportError):
    """A file a command reads is missing or malformed; the message names the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class RunDirError(PathError):
    """A run directory is missing, incomplete or does not follow the format."""


class BudgetFileError(PathError):
    """The budgets file is missing or malformed."""
