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

    def __init_subclass__(cls, exit_code: ExitCode | None = None, **kw: object) -> None:
        super().__init_subclass__(**kw)
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        #: The run directory the failure concerns, when there is one.
        self.run_dir: Path | None = None


class UsageError(TriageError, exit_code=ExitCode.USAGE):
    """Bad input: an option, a file or a value the user gave; nothing was changed."""


class PreflightError(TriageError, exit_code=ExitCode.PREFLIGHT):
    """The cluster or the target cannot take the run (RBAC, memray missing, unreachable)."""


class ContextRefusedError(TriageError, exit_code=ExitCode.CONTEXT_REFUSED):
    """The context is not a disposable cluster and --allow-any-context was not given."""


class RunFailedError(TriageError, exit_code=ExitCode.RUN_FAILED):
    """The run started and failed; the Deployment was restored."""


class RestoreError(TriageError, exit_code=ExitCode.RESTORE_FAILED):
    """The Deployment could not be put back; the message says how to finish."""


class LockHeldError(TriageError, exit_code=ExitCode.LOCKED):
    """Another run holds the operator's lock (or left it behind, killed)."""


class ChangedByOthersError(TriageError, exit_code=ExitCode.CHANGED_BY_OTHERS):
    """Someone else changed the Deployment mid-run; the load was stopped."""


class RunInterruptedError(TriageError, exit_code=ExitCode.INTERRUPTED):
    """Ctrl-C or SIGTERM; the Deployment was restored (or the restore error says why not)."""


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
