"""Profilers that need nothing from the operator: memray, py-spy and pprof, one interface.

Users bring their own operators, so a profiler never relies on a hook inside one. Each
profiler says what it must check before any change (`preflight`), what it changes in the
pod spec for the run (`modify`: journaled and taken back by the restore like every other
change), what it takes at each batch (`snapshot`: off the critical path, on a worker thread,
so profiling never stretches a batch), and what it collects at the end (`finish`).

| profiler | for | needs in the image | what it gives |
| --- | --- | --- | --- |
| memray | Python | memray importable by the operator's interpreter | the Python heap by site with stacks |
| py-spy | Python | nothing (a sidecar brings py-spy) | where the threads are, not what holds memory |
| pprof | Go | net/http/pprof behind an env switch | the Go heap (inuse_space) by site with stacks |
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from triage.cluster import Cluster
from triage.rundir import RunWriter
from triage.target import Target

KINDS = ("memray", "py-spy", "pprof", "none")


@dataclass
class Settings:
    """What the command line said about profiling."""

    kind: str = "none"
    #: memray: native (C) stack frames; off by default (capture size, speed).
    native: bool = False
    #: memray: trace Python's allocator (objects, not arenas); the measured default.
    python_allocators: bool = True
    #: pprof: the port the operator serves /debug/pprof on (its own loopback is fine).
    pprof_port: int = 6060
    #: pprof: the env entry that turns the endpoint on.
    pprof_env: tuple[str, str] = ("ENABLE_PPROF", "true")
    #: py-spy: the sidecar image.
    pyspy_image: str = "localhost/triage-pyspy:dev"


@dataclass
class Created:
    """An object a profiler needs beside the Deployment (created and deleted journaled)."""

    path: str
    collection: str
    body: dict[str, Any]
    kind: str


class Profiler:
    """The no-op profiler, and the base of the real ones."""

    kind = "none"

    def __init__(
        self, cluster: Cluster, *, run: RunWriter, target: Target, settings: Settings
    ) -> None:
        self.cluster = cluster
        self.run = run
        self.target = target
        self.settings = settings
        self.notes: list[str] = []
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"triage-{self.kind}")
        self._pending: list[Future[None]] = []
        # Parsing what was already copied out needs nothing from the pod: it has its own
        # workers, so a long read never delays a copy that must finish before the restore.
        # Two: a crash loop leaves a big capture (the killed process) and a small one (the
        # restart), and the small one should not wait its turn behind the big one.
        self._reader = ThreadPoolExecutor(2, thread_name_prefix=f"triage-{self.kind}-read")
        self._reads: list[Future[None]] = []
        #: For the report: what the profiler ran with.
        self.info: dict[str, Any] = {}

    def preflight(self, *, pod: str | None) -> None:
        """Raise PreflightError (exit 3) when the profiler cannot work on this target."""

    def modify(self, spec: dict[str, Any], *, planned_sessions: int) -> list[Created]:
        """Change the pod template for the run; return objects to create beside it."""
        return []

    def snapshot(self, batch: int, pod: str, *, oom: bool = False) -> None:
        """Take this batch's profile in the background (never blocks the batch loop)."""

    def guard(self, batch: int, pod: str, *, node: str) -> str | None:
        """After a batch: why the load must stop for the profiler's sake, or None."""
        return None

    def collect(self) -> None:
        """Copy out what must leave the pod before the restore takes the pod away.

        Waits for the pod-bound work only, never for reads of what was copied before: the
        restore (and the cold start) must not queue behind a parse of a local file."""
        self._drain(self._pending)

    def read_ended(self) -> None:
        """The processes whose data `collect()` just copied are about to end (a cold start
        restarts them): what they left may be parsed now, at low CPU priority, beside the
        measurement that follows."""

    def start_reading(self) -> None:
        """After the last measurement: start parsing what was collected and is not being
        parsed yet, in the background, while the restore runs. At full priority only now: a
        read beside a cold start (`read_ended`) would otherwise take the CPU the restarted
        operator is timed on."""

    def finish(self) -> None:
        """After the restore: the parsing done (blocking)."""
        self._drain(self._pending)
        self._drain(self._reads)

    @staticmethod
    def _drain(futures: list[Future[None]]) -> None:
        for f in futures:
            with contextlib.suppress(Exception):
                f.result()
        futures.clear()

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=False)
        self._reader.shutdown(wait=True, cancel_futures=False)

    def _submit(self, what: str, fn: Any, *args: Any, read: bool = False) -> None:
        """Run `fn(*args)` in the background; `read`: it parses local files only."""

        def job() -> None:
            try:
                fn(*args)
            except Exception as e:  # a profile is a note, never a failed run
                self.notes.append(f"{what}: {e.__class__.__name__}: {e}")

        if read:
            self._reads.append(self._reader.submit(job))
        else:
            self._pending.append(self._worker.submit(job))


@dataclass
class Factory:
    settings: Settings = field(default_factory=Settings)

    def build(self, cluster: Cluster, *, run: RunWriter, target: Target) -> Profiler:
        kind = self.settings.kind
        if kind == "memray":
            from triage.profiling.memray import MemrayProfiler

            return MemrayProfiler(cluster, run=run, target=target, settings=self.settings)
        if kind == "py-spy":
            from triage.profiling.pyspy import PySpyProfiler

            return PySpyProfiler(cluster, run=run, target=target, settings=self.settings)
        if kind == "pprof":
            from triage.profiling.pprof import PprofProfiler

            return PprofProfiler(cluster, run=run, target=target, settings=self.settings)
        return Profiler(cluster, run=run, target=target, settings=self.settings)
