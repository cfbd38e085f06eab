"""Typed errors of the report side.

Every failure the commands can meet while reading a run directory is one of these, so the
command layer can print a single clear line and exit with the usage code instead of a
traceback: a reviewer pointing the CLI at the wrong directory should not have to read Python.
"""

from __future__ import annotations

from pathlib import Path


class ReportError(Exception):
    """Base of every error raised while loading, analysing or rendering a run."""


class RunDirError(ReportError):
    """A run directory is missing, incomplete or does not follow docs/architecture.md.

    The message always names the offending file, because "invalid run" alone sends the reader
    on a hunt through a directory of CSVs.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class BudgetFileError(ReportError):
    """The budgets file is missing or malformed."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
