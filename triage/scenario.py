"""Declarative load scenarios: what a run creates, batch by batch, read from YAML.

The upstream reproducer hard-coded one load shape (terminal sessions) in shell. Memory
questions differ by shape: terminal sessions measure pure cache cost, Running ones the
per-live-session state, noise pods whether caches are scoped at all, bursts the startup
latency. Keeping the shapes as data (triage/scenarios/*.yaml) lets `triage ci` and a person at
a terminal run exactly the same thing, and lets a reviewer read a scenario without code.

A scenario compiles to a list of `BatchPlan`s; the loader only ever executes plans, so a new
scenario is a new YAML file unless it needs a new kind of object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from triage.bodies import NAMESPACE_PREFIX, SESSION_SHAPES, SessionShape
from triage.custom_objects import ObjectTemplate, parse_templates
from triage.errors import UsageError

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
PHASES = frozenset({"Completed", "Running", "Failed", "Stopped"})
#: Sizes `triage ci` asks for; "full" is the scenario's own defaults.
SIZES = ("full", "ci", "small")
_SIZE_KEYS = frozenset(
    {"namespaces", "sessions_per_ns", "batch_size", "noise_pods_per_ns", "churn_rounds", "scale"}
)
_MIX_KEYS = ("sessions", "project_settings", "namespaces", "pods", "runner_pods")


@dataclass(frozen=True)
class NamespacePlan:
    """One namespace of a batch and everything the run creates in it."""

    index: int  # global across the run, names are oom-repro-<run>-NNNN
    sessions: int
    managed: bool
    noise_pods: int = 0
    #: Sessions (the first N of the namespace) that are Running with a runner pod we create.
    runner_pods: int = 0


@dataclass(frozen=True)
class BatchPlan:
    number: int  # 1-based
    namespaces: tuple[NamespacePlan, ...]
    #: Status rewrites of every session created so far (condition-churn), after creation.
    churn_rounds: int = 0
    #: The session shape of this batch when the run sweeps shapes (None: the scenario's).
    shape: SessionShape | None = None

    @property
    def sessions(self) -> int:
        return sum(ns.sessions for ns in self.namespaces)

    @property
    def pods(self) -> int:
        return sum(ns.noise_pods + ns.runner_pods for ns in self.namespaces)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: Phase the sessions are moved to through the status subresource; None leaves them to
    #: the operator (Pending, it starts runners).
    session_phase: str | None
    namespaces: int
    sessions_per_ns: int
    batch_size: int  # namespaces per batch
    managed: bool = True
    session_shape: SessionShape = "production"
    noise_pods_per_ns: int = 0
    churn_rounds: int = 0
    burst: bool = False
    latency_timeout: float = 180.0
    #: Create the prerequisite Secret in every managed namespace (runners must start).
    runner_secrets: bool = False
    #: Alternate production and minimal sessions batch by batch (same count each): the
    #: report then separates the operator's cost per object from its cost per byte.
    shape_sweep: bool = False
    #: Objects from templates (any kind), created in each namespace; see custom_objects.
    objects: tuple[ObjectTemplate, ...] = ()
    #: Extra labels on every namespace the run creates.
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    #: Namespaces are `<prefix>-<run>-NNNN`: match an operator that watches names by glob.
    namespace_prefix: str = NAMESPACE_PREFIX
    mix: Mapping[str, int] | None = None
    scale: float = 1.0
    default: bool = False
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""

    @property
    def creates_runner_pods(self) -> bool:
        """Whether the operator is expected to start real runner pods for this load."""
        return self.session_phase is None and self.sessions_per_ns > 0

    def sized(
        self,
        size: str = "full",
        *,
        namespaces: int | None = None,
        sessions_per_ns: int | None = None,
        batch_size: int | None = None,
    ) -> Scenario:
        """This scenario at a named size, then with explicit command-line overrides."""
        if size not in SIZES:
            raise UsageError(f"unknown size {size!r}; known sizes: {', '.join(SIZES)}")
        out = self
        if size != "full":
            out = replace(out, **dict(self.sizes.get(size, {})))
        if out.mix:
            # A mix is sized by its scale factor; --namespaces picks the factor that gives
            # that many namespaces, and per-namespace counts follow the production ratios.
            scale = out.scale if namespaces is None else namespaces / out.mix["namespaces"]
            out = resize_mix(out, scale=scale)
            namespaces = sessions_per_ns = None
        overrides: dict[str, Any] = {}
        if namespaces is not None:
            overrides["namespaces"] = namespaces
        if sessions_per_ns is not None:
            overrides["sessions_per_ns"] = sessions_per_ns
        if batch_size is not None:
            overrides["batch_size"] = batch_size
        out = replace(out, **overrides)
        out._check()
        return out

    def _check(self) -> None:
        for key in ("namespaces", "batch_size"):
            if getattr(self, key) < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
        if self.sessions_per_ns < 0:
            raise UsageError("--sessions-per-ns must be 0 or more")

    # -- compiling to batches -----------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """What a complete run creates, for `scenarios show` and the live view."""
        plans = self.plan()
        sessions = sum(b.sessions for b in plans)
        pods = sum(b.pods for b in plans)
        if self.session_phase == "Running":
            # Every Running session gets a parked runner pod (see triage/load.py).
            pods += sessions - sum(ns.runner_pods for b in plans for ns in b.namespaces)
        return {
            "batches": len(plans),
            "namespaces": sum(len(b.namespaces) for b in plans),
            "sessions": sessions,
            "pods": pods,
            "managed_namespaces": sum(ns.managed for b in plans for ns in b.namespaces),
        }

    def plan(self) -> list[BatchPlan]:
        """Every batch of a complete run, in order."""
        namespaces = self._mix_namespaces() if self.mix else self._uniform_namespaces()
        batches: list[BatchPlan] = []
        sweep: tuple[SessionShape, ...] = ("production", "minimal")
        for start in range(0, len(namespaces), self.batch_size):
            chunk = tuple(namespaces[start : start + self.batch_size])
            number = len(batches) + 1
            shape = sweep[(number - 1) % 2] if self.shape_sweep else None
            batches.append(
                BatchPlan(
                    number=number, namespaces=chunk, churn_rounds=self.churn_rounds, shape=shape
                )
            )
        return batches

    def _uniform_namespaces(self) -> list[NamespacePlan]:
        return [
            NamespacePlan(
                index=i,
                sessions=self.sessions_per_ns,
                managed=self.managed,
                noise_pods=self.noise_pods_per_ns,
            )
            for i in range(self.namespaces)
        ]

    def _mix_namespaces(self) -> list[NamespacePlan]:
        # Spread the scaled production counts evenly: namespace i gets its share of each kind,
        # computed from cumulative rounding so the totals are exact.
        assert self.mix is not None
        want = {k: max(round(self.mix[k] * self.scale), 1) for k in _MIX_KEYS}
        n = want["namespaces"]
        managed = min(want["project_settings"], n)
        runners = min(want["runner_pods"], want["sessions"])
        noise = max(want["pods"] - runners, 0)

        def share(total: int, over: int, i: int) -> int:
            return (total * (i + 1)) // over - (total * i) // over

        plans: list[NamespacePlan] = []
        sessions_left_runners = runners
        for i in range(n):
            is_managed = i < managed
            sessions = share(want["sessions"], managed, i) if is_managed else 0
            r = min(sessions, share(runners, managed, i), sessions_left_runners)
            sessions_left_runners -= r
            plans.append(
                NamespacePlan(
                    index=i,
                    sessions=sessions,
                    managed=is_managed,
                    noise_pods=share(noise, n, i),
                    runner_pods=r,
                )
            )
        return plans


def _from_yaml(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read scenario file {path}: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise UsageError(f"scenario file {path} must be a mapping with a 'name'")
    phase = raw.get("session_phase")
    if phase is not None and phase not in PHASES:
        raise UsageError(
            f"scenario {raw['name']}: session_phase {phase!r} is not one of {sorted(PHASES)}"
        )
    shape = raw.get("session_shape", "production")
    if shape not in SESSION_SHAPES:
        raise UsageError(
            f"scenario {raw['name']}: session_shape {shape!r} is not one of "
            f"{', '.join(SESSION_SHAPES)}"
        )
    sizes = raw.get("sizes") or {}
    for size, values in sizes.items():
        unknown = set(values) - _SIZE_KEYS
        if unknown:
            raise UsageError(f"scenario {raw['name']}: size {size} has unknown keys {unknown}")
    mix = raw.get("mix")
    if mix is not None and set(mix) != set(_MIX_KEYS):
        raise UsageError(f"scenario {raw['name']}: mix needs exactly {', '.join(_MIX_KEYS)}")
    scenario = Scenario(
        name=raw["name"],
        description=str(raw.get("description", "")).strip(),
        session_phase=phase,
        namespaces=int(raw.get("namespaces", 0)),
        sessions_per_ns=int(raw.get("sessions_per_ns", 0)),
        batch_size=int(raw.get("batch_size", 10)),
        managed=bool(raw.get("managed", True)),
        session_shape=shape,
        noise_pods_per_ns=int(raw.get("noise_pods_per_ns", 0)),
        churn_rounds=int(raw.get("churn_rounds", 0)),
        burst=bool(raw.get("burst", False)),
        latency_timeout=float(raw.get("latency_timeout", 180)),
        # Sessions left to the operator start runners, and a runner waits for the
        # namespace's prerequisite Secret (as upstream): create it unless told not to.
        runner_secrets=bool(raw.get("runner_secrets", phase is None or mix is not None)),
        shape_sweep=bool(raw.get("shape_sweep", False)),
        objects=parse_templates(raw.get("objects"), source=str(path)),
        namespace_labels=_labels(raw.get("namespace_labels"), source=str(path)),
        namespace_prefix=_prefix(raw.get("namespace_prefix", NAMESPACE_PREFIX), source=str(path)),
        mix={k: int(v) for k, v in mix.items()} if mix else None,
        scale=float(raw.get("scale", 1.0)),
        default=bool(raw.get("default", False)),
        sizes={str(k): dict(v) for k, v in sizes.items()},
        source=str(path),
    )
    if scenario.mix:
        # Size is carried by the scale factor; namespaces only matter for batch counting.
        scenario = replace(
            scenario, namespaces=max(round(scenario.mix["namespaces"] * scenario.scale), 1)
        )
    return scenario


def _prefix(raw: object, *, source: str) -> str:
    # The longest run suffix and index ("-abcd-0000") must still fit a 63-character label.
    if not isinstance(raw, str) or not _PREFIX.fullmatch(raw):
        raise UsageError(
            f"{source}: namespace_prefix must be lowercase letters, digits and '-', starting "
            f"with a letter, at most 50 characters; got {raw!r}"
        )
    return raw


_PREFIX = re.compile(r"[a-z]([-a-z0-9]{0,48}[a-z0-9])?")


def _labels(raw: object, *, source: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise UsageError(f"{source}: namespace_labels must map label names to strings")
    return dict(raw)


@cache
def _load_all(directory: Path = SCENARIO_DIR) -> dict[str, Scenario]:
    found = (_from_yaml(p) for p in sorted(directory.glob("*.yaml")))
    return {s.name: s for s in found}


def scenarios() -> dict[str, Scenario]:
    """Every known scenario by name, the default first."""
    all_ = _load_all()
    return dict(sorted(all_.items(), key=lambda kv: (not kv[1].default, kv[0])))


def default_scenario() -> str:
    return next(name for name, s in scenarios().items() if s.default)


def get(name: str) -> Scenario:
    """The scenario called `name` (or a YAML file of one), or a UsageError listing the known ones."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"scenario file {name} does not exist (or name a built-in scenario)")
        return _from_yaml(path)
    known = scenarios()
    try:
        return known[name]
    except KeyError:
        raise UsageError(
            f"unknown scenario {name!r}; known scenarios: {', '.join(known)}"
        ) from None


def resize_mix(scenario: Scenario, *, scale: float) -> Scenario:
    """production-mix at another scale factor."""
    if scale <= 0 or not math.isfinite(scale):
        raise UsageError(f"--scale {scale!r} must be a positive number")
    out = replace(scenario, scale=scale)
    if out.mix:
        out = replace(out, namespaces=max(round(out.mix["namespaces"] * scale), 1))
    return out
