"""Runner start-up latency of a burst, split in stages, summarised nearest-rank.

Stages follow the agent-sandbox stress tool (created -> pod created -> scheduled -> running
-> ready), so a slow P99 says where the time went: the operator (created -> pod created),
the scheduler, or the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from triage.percentiles import nearest_rank
from triage.rundir import LatencyRow

PERCENTILES = (50, 90, 99)

#: Stages of a session's start-up, in order: (label, from-column, to-column).
LATENCY_STAGES: tuple[tuple[str, str, str], ...] = (
    ("created → pod created", "created", "pod_created"),
    ("pod created → scheduled", "pod_created", "scheduled"),
    ("scheduled → running", "scheduled", "running"),
    ("running → ready", "running", "ready"),
)
LATENCY_TOTAL = ("created → running", "created", "running")


@dataclass(frozen=True, slots=True)
class StagePercentiles:
    stage: str
    n: int
    #: percentile -> seconds (nearest-rank); empty when no session reached the stage.
    values: Mapping[int, float]
    mean: float | None
    max: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            **{f"p{k}": v for k, v in self.values.items()},
            "mean": self.mean,
            "max": self.max,
        }


@dataclass(frozen=True, slots=True)
class LatencySummary:
    sessions: int
    reached_running: int
    total: StagePercentiles
    stages: tuple[StagePercentiles, ...]
    #: created -> running durations in seconds, for the distribution figure.
    durations: tuple[float, ...]
    #: Why the runners that never reached Running were held, most frequent first.
    not_started_reasons: tuple[tuple[str, int], ...] = ()


def _stage(label: str, durations: Sequence[float]) -> StagePercentiles:
    if not durations:
        return StagePercentiles(label, 0, {}, None, None)
    return StagePercentiles(
        stage=label,
        n=len(durations),
        values={p: nearest_rank(durations, p) for p in PERCENTILES},
        mean=float(sum(durations) / len(durations)),
        max=float(max(durations)),
    )


def _durations(rows: Sequence[LatencyRow], start: str, end: str) -> list[float]:
    out: list[float] = []
    for r in rows:
        a, b = getattr(r, start), getattr(r, end)
        if a is not None and b is not None:
            out.append(max(0.0, float(b) - float(a)))
    return out


def summarize_latency(rows: Sequence[LatencyRow]) -> LatencySummary:
    label, start, end = LATENCY_TOTAL
    total = _durations(rows, start, end)
    return LatencySummary(
        sessions=len(rows),
        reached_running=sum(1 for r in rows if r.running is not None),
        total=_stage(label, total),
        stages=tuple(_stage(lbl, _durations(rows, a, b)) for lbl, a, b in LATENCY_STAGES),
        durations=tuple(total),
        not_started_reasons=tuple(
            Counter(
                r.waiting or "no runner pod seen" for r in rows if r.running is None
            ).most_common()
        ),
    )
