"""Offline reports of triage runs: load a run directory, analyse it, render it.

The package renders from a run directory alone and never imports cluster code (enforced by
import-linter in pyproject.toml): a report must be reproducible from a CI artifact long after
the cluster that produced it is gone.
"""

from __future__ import annotations

from triage.report.budgets import BudgetResult, Budgets, evaluate_budgets, load_budgets
from triage.report.compare import Comparison, compare_runs
from triage.report.render import Written, render_compare, render_gate, render_report
from triage.report.summary import RunSummary, summarize

__all__ = [
    "BudgetResult",
    "Budgets",
    "Comparison",
    "RunSummary",
    "Written",
    "compare_runs",
    "evaluate_budgets",
    "load_budgets",
    "render_compare",
    "render_gate",
    "render_report",
    "summarize",
]
