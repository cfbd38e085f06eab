"""What a run was asked to do, and everything about it that can be checked without a cluster.

Every check here runs before the first connection: a typo must never cost a half-patched
operator. Each failure is one line naming the option and what is accepted (exit 2). The run
directory is checked the same way: a directory that already holds a run (its journal may be
the only record of how to restore it), one that cannot be written, a disk too full for the
captures, all refused before any change.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from triage.errors import UsageError
from triage.profiling import KINDS, Settings
from triage.quantity import format_bytes, parse_memory
from triage.scenario import Scenario, default_scenario, get

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A run directory needs room for its samples, reports and copied captures.
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class ReproduceOptions:
    mem_limit: str = "128Mi"
    scenario: str = ""
    namespaces: int | None = None
    sessions_per_ns: int | None = None
    batch_size: int | None = None
    size: str = "full"
    max_batches: int | None = None
    profile: str = "memray"
    container: str | None = None
    target_command: str | None = None
    native: bool = False
    python_allocators: bool = True
    pprof_port: int = 6060
    pprof_env: str = "ENABLE_PPROF=true"
    pyspy_image: str = "localhost/triage-pyspy:dev"
    #: Restart the operator once this many sessions exist, and measure the re-list.
    restart_at: int | None = None
    #: Measure a cold start at the end of a run that survived.
    cold_start: bool = True
    shape_sweep: bool = False
    cleanup: bool = False
    #: Wait for the background cleanup before exiting (CI, tests).
    cleanup_wait: bool = False
    context: str | None = None
    kubeconfig: str | None = None
    operator_namespace: str = "ambient-code"
    operator_deployment: str = "agentic-operator"
    concurrency: int = 32
    #: The longest a batch may take to settle (the operator idle, its memory still).
    settle_max: float = 30.0
    settle_after_oom: float = 30.0
    #: The run directory itself; default `<reports_root>/<run-id>`.
    out: Path | None = None
    reports_root: Path = Path("reports")
    allow_any_context: bool = False
    set_env: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    rollout_timeout: float = 180.0
    cleanup_timeout: float = 300.0
    render_report: bool = True

    @classmethod
    def for_scenario(
        cls, scenario: str, *, size: str, out: Path, kubeconfig: Path | str | None
    ) -> ReproduceOptions:
        """What `triage ci` runs: a budgeted scenario at a CI size, measured, cleaned up.

        The limit is generous on purpose: the gate measures steady memory against budgets
        and must not end in an OOM of its own making.
        """
        return cls(
            mem_limit="256Mi",
            scenario=scenario,
            size=size,
            profile="none",
            cleanup=True,
            cleanup_wait=True,
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            settle_max=15.0,
            settle_after_oom=10.0,
            reports_root=out,
        )


@dataclass(frozen=True)
class Validated:
    limit_bytes: int
    scenario: Scenario
    plans: int
    profiler: Settings


def parse_env_pairs(pairs: list[str], *, option: str = "--set-env") -> dict[str, str]:
    """`KEY=VALUE` strings into a dict; UsageError on anything else."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(f"{option} {pair!r} is not KEY=VALUE with a valid variable name")
        out[key] = value
    return out


def validate(options: ReproduceOptions) -> Validated:
    """Everything that can be checked without the cluster; raises UsageError naming the option."""
    limit = parse_memory(options.mem_limit, option="--mem-limit")
    if options.profile not in KINDS:
        raise UsageError(f"--profile {options.profile!r} is not one of {', '.join(KINDS)}")
    for name in ("namespaces", "sessions_per_ns", "batch_size", "max_batches", "restart_at"):
        value = getattr(options, name)
        low = 0 if name == "sessions_per_ns" else 1
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} {value} must be at least {low}")
    if not 1 <= options.concurrency <= 512:
        raise UsageError(f"--concurrency {options.concurrency} must be between 1 and 512")
    if not 1 <= options.pprof_port <= 65535:
        raise UsageError(f"--pprof-port {options.pprof_port} is not a port (1-65535)")
    for name in ("settle_max", "settle_after_oom"):
        if getattr(options, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more seconds")
    for key in options.set_env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"--set-env {key!r}: not a valid environment variable name")
    ((pprof_key, pprof_value),) = parse_env_pairs([options.pprof_env], option="--pprof-env").items()
    if options.container is not None and not options.container.strip():
        raise UsageError("--container must name a container")
    scenario = get(options.scenario or default_scenario()).sized(
        options.size,
        namespaces=options.namespaces,
        sessions_per_ns=options.sessions_per_ns,
        batch_size=options.batch_size,
    )
    if options.shape_sweep:
        from dataclasses import replace

        scenario = replace(scenario, shape_sweep=True)
    plans = len(scenario.plan())
    if options.max_batches is not None:
        plans = min(plans, options.max_batches)
    return Validated(
        limit_bytes=limit,
        scenario=scenario,
        plans=plans,
        profiler=Settings(
            kind=options.profile,
            native=options.native,
            python_allocators=options.python_allocators,
            pprof_port=options.pprof_port,
            pprof_env=(pprof_key, pprof_value),
            pyspy_image=options.pyspy_image,
        ),
    )


def check_run_dir(path: Path, *, need_bytes: int = MIN_FREE_BYTES) -> None:
    """Refuse a run directory that holds a run, cannot be written, or has no room."""
    if (path / "journal.json").exists():
        # That journal may be the only record of how to restore an earlier run.
        raise UsageError(f"--out {path} already holds a run (journal.json); pick a new directory")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a directory")
    # The probe leaves nothing behind: a run refused later (preflight, the lock) must not
    # leave an empty run directory that looks like a run that happened.
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True) as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise UsageError(
                f"--out {path} cannot hold a run: {e.strerror or e} (need a writable directory)"
            ) from e
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise UsageError(
                f"--out {path} has {format_bytes(free)} free; a run needs at least "
                f"{format_bytes(need_bytes)} (samples, reports and profiler captures)"
            )
    finally:
        for p in made:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
