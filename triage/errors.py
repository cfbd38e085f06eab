"""Typed errors of the triage CLI, each carrying the exit code it ends the process with.

Commands catch `TriageError` at their boundary and print its one-line message; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from triage.exitcodes import ExitCode


class TriageError(Exception):
    """A failure the user can act on: a one-line message and a documented exit code."""

    def __init__(self, message: str, *, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(TriageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.USAGE)


class PreflightError(TriageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.PREFLIGHT)


class ContextRefusedError(TriageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.CONTEXT_REFUSED)


class RunFailedError(TriageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.RUN_FAILED)


class RestoreError(TriageError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=ExitCode.RESTORE_FAILED)
