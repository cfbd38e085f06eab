"""Budgets for the scalability gate, and their evaluation as a pure function.

The budgets file is checked in next to the code it guards (triage/budgets/ci.yaml) so a
change that legitimately needs more memory raises its budget in the same PR, visibly, for a
reviewer to accept. Evaluation takes summaries and budgets and returns results, nothing else:
the gate's logic is testable without a cluster, a CLI or a file system.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from triage.errors import BudgetFileError
from triage.percentiles import nearest_rank
from triage.quantity import human_bytes, parse_quantity_bytes
from triage.report.summary import RunSummary

Status = Literal["pass", "fail", "skipped", "missing"]
MetricKind = Literal["bytes", "seconds", "count"]


@dataclass(frozen=True, slots=True)
class Metric:
    label: str
    kind: MetricKind
    read: Callable[[RunSummary], float | None]


def _latency(p: int) -> Callable[[RunSummary], float | None]:
    """Percentile `p` of created -> Running over every session of the burst.

    A runner that never started is a censored observation, not a missing one: it counts as
    slower than any that did. Percentiles over the started runners alone would let a run in
    which most runners never start pass on the few that did; when the percentile's rank
    falls among the unstarted, the value is infinite and the budget fails.
    """

    def read(s: RunSummary) -> float | None:
        if not s.latency or not s.latency.sessions:
            return None
        unstarted = s.latency.sessions - len(s.latency.durations)
        return nearest_rank([*s.latency.durations, *[math.inf] * unstarted], p)

    return read


def _not_started(s: RunSummary) -> float | None:
    if not s.latency:
        return None
    return float(s.latency.sessions - s.latency.reached_running)


def _opt(value: int | float | None) -> float | None:
    return None if value is None else float(value)


def _restart_peak(s: RunSummary) -> float | None:
    """The highest reading of a restarted operator: after an OOM, or at the cold start."""
    peaks = [s.restart_peak_bytes, s.cold_start.peak_bytes if s.cold_start else None]
    known = [p for p in peaks if p is not None]
    return max(known) if known else None


#: Budget keys accepted in the budgets file. Each is an upper bound on the named number.
METRICS: dict[str, Metric] = {
    "bytes_per_session": Metric(
        "bytes per session", "bytes", lambda s: s.fit.slope if s.fit else None
    ),
    "steady_rss": Metric(
        "steady memory (unreclaimable)", "bytes", lambda s: _opt(s.steady_measure_bytes)
    ),
    "peak_working_set": Metric(
        "peak working set", "bytes", lambda s: _opt(s.peak_working_set_bytes)
    ),
    "peak_after_restart": Metric("peak after restart", "bytes", _restart_peak),
    "ooms": Metric("cumulative OOMs", "count", lambda s: float(s.cumulative_ooms)),
    "latency_p50": Metric("startup latency P50", "seconds", _latency(50)),
    "latency_p90": Metric("startup latency P90", "seconds", _latency(90)),
    "latency_p99": Metric("startup latency P99", "seconds", _latency(99)),
    "not_started": Metric("runners never Running", "count", _not_started),
}


@dataclass(frozen=True, slots=True)
class Budgets:
    """Parsed budgets: scenario -> metric key -> upper bound (bytes, seconds or a count)."""

    scenarios: Mapping[str, Mapping[str, float]]
    source: str = ""


@dataclass(frozen=True, slots=True)
class BudgetResult:
    scenario: str
    metric: str
    limit: float
    actual: float | None
    status: Status
    run_id: str | None

    @property
    def label(self) -> str:
        return METRICS[self.metric].label

    @property
    def exceeded(self) -> bool:
        return self.status == "fail"

    def format(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if math.isinf(value):
            return "never (runners not started)"
        kind = METRICS[self.metric].kind
        if kind == "bytes":
            return human_bytes(value) + ("/session" if self.metric == "bytes_per_session" else "")
        if kind == "seconds":
            return f"{value:.2f}s"
        return f"{value:.0f}"

    @property
    def describe(self) -> str:
        """One line naming the budget, for the console and the CI log."""
        return (
            f"{self.scenario}: {self.label} {self.format(self.actual)} "
            f"> budget {self.format(self.limit)}"
            if self.exceeded
            else f"{self.scenario}: {self.label} {self.status}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "limit": self.limit,
            # JSON has no infinity: a percentile among unstarted runners is null + "never".
            "actual": None if self.actual is not None and math.isinf(self.actual) else self.actual,
            "never": self.actual is not None and math.isinf(self.actual),
            "status": self.status,
            "run_id": self.run_id,
        }


_SECONDS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m)?\s*$")


def _parse_limit(kind: MetricKind, value: object) -> float:
    if kind == "bytes":
        # parse_quantity_bytes rejects bools and anything else that is not a quantity.
        return float(parse_quantity_bytes(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a non-negative number, got {value!r}")
        return float(value)
    if kind == "seconds" and isinstance(value, str):
        m = _SECONDS.match(value)
        if m:
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
            return float(m.group(1)) * scale
    raise ValueError(
        f"expected {'a duration like 5s' if kind == 'seconds' else 'a number'}, got {value!r}"
    )


def parse_budgets(data: object, *, source: Path) -> Budgets:
    """Validate the parsed YAML of a budgets file."""
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise BudgetFileError(source, "expected a mapping with 'schema: 1'")
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, dict) or not scenarios:
        raise BudgetFileError(source, "'scenarios' must map scenario names to budgets")
    parsed: dict[str, dict[str, float]] = {}
    for scenario, entries in scenarios.items():
        if not isinstance(entries, dict):
            raise BudgetFileError(source, f"scenarios.{scenario} must be a mapping")
        parsed[str(scenario)] = {}
        for key, value in entries.items():
            if key not in METRICS:
                raise BudgetFileError(
                    source,
                    f"scenarios.{scenario}.{key}: unknown budget (known: {', '.join(METRICS)})",
                )
            try:
                parsed[str(scenario)][key] = _parse_limit(METRICS[key].kind, value)
            except ValueError as e:
                raise BudgetFileError(source, f"scenarios.{scenario}.{key}: {e}") from e
    return Budgets(scenarios=parsed, source=str(source))


def load_budgets(path: Path) -> Budgets:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BudgetFileError(path, "no such budgets file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise BudgetFileError(path, f"cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise BudgetFileError(path, f"not valid YAML: {e}") from e
    return parse_budgets(data, source=path)


def evaluate_budgets(summaries: Sequence[RunSummary], budgets: Budgets) -> list[BudgetResult]:
    """Check every budget against the run of its scenario.

    A budgeted scenario without a run is "missing"; a metric the run did not produce (no OOM,
    so no peak after restart; no burst, so no latency) is "skipped", which passes: a budget
    bounds a number, it does not demand that the number exist.
    """
    results: list[BudgetResult] = []
    for scenario, entries in budgets.scenarios.items():
        runs = [s for s in summaries if s.scenario == scenario]
        if not runs:
            results.extend(
                BudgetResult(scenario, key, limit, None, "missing", None)
                for key, limit in entries.items()
            )
            continue
        # Several runs of one scenario are each judged: the gate must see the worst of them.
        for run in runs:
            for key, limit in entries.items():
                actual = METRICS[key].read(run)
                status: Status = (
                    "skipped" if actual is None else ("fail" if actual > limit else "pass")
                )
                results.append(BudgetResult(scenario, key, limit, actual, status, run.run_id))
    return results
