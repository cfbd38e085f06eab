"""The report tests' synthetic runs serve the reader's tests too."""

from tests.report.conftest import oom_run

__all__ = ["oom_run"]
