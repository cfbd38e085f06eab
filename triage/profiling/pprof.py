"""pprof for Go operators: the heap profile after every batch, read through a port-forward.

The upstream reproducer added an opt-in pprof server (ENABLE_PPROF=true, port 6060) and its
review asked for it to listen on loopback only. A port-forward reaches a pod's loopback, so
that is what triage uses: the env switch is set for the run (journaled, restored), and
`/debug/pprof/heap` is fetched after every batch on a worker thread. The raw profiles are
kept as profiles/raw/heap-batch-NNNN.pb.gz (`go tool pprof -base` reads them), and triage
parses them itself (`triage.pprof`), so the report renders without a Go toolchain.
"""

from __future__ import annotations

import urllib.request
from typing import Any

from triage import pprof
from triage.patch import set_env
from triage.podio import PortForward
from triage.profiling import Created, Profiler
from triage.rundir import Frame, HeapProfile, Site


def heap_profile(raw: bytes, *, source: str, limit: int = 25) -> HeapProfile:
    """A Go heap profile as the run directory's record: inuse_space by site, with stacks."""
    profile = pprof.parse(raw)
    sites = pprof.top_sites(profile, "inuse_space", limit=limit, depth=6)
    objects = {
        tuple(f.function for f in s.frames): s.value
        for s in pprof.top_sites(profile, "inuse_objects", limit=10_000, depth=6)
    }
    return HeapProfile(
        heap_bytes=profile.total("inuse_space"),
        allocations=profile.total("inuse_objects"),
        top=tuple(
            Site(
                function=s.function,
                file=s.frames[0].filename if s.frames else "",
                line=s.frames[0].line if s.frames else 0,
                bytes=s.value,
                count=objects.get(tuple(f.function for f in s.frames), s.samples),
                stack=tuple(Frame(f.function, f.filename, f.line) for f in s.frames),
            )
            for s in sites
        ),
        profiler="pprof",
        source=source,
    )


class PprofProfiler(Profiler):
    kind = "pprof"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forward: PortForward | None = None

    def modify(self, spec: dict[str, Any], *, planned_sessions: int) -> list[Created]:
        container = next(
            c for c in spec["template"]["spec"]["containers"] if c["name"] == self.target.container
        )
        key, value = self.settings.pprof_env
        set_env(container, key, value)
        self.info = {"env": f"{key}={value}", "port": self.settings.pprof_port}
        return []

    def _fetch(self, batch: int, pod: str) -> None:
        fwd = self._forward
        if fwd is None or not fwd.alive or fwd.pod != pod:
            if fwd is not None:
                fwd.stop()
            fwd = self._forward = PortForward(
                self.cluster, namespace=self.target.namespace, pod=pod,
                port=self.settings.pprof_port,
            )  # fmt: skip
            if not fwd.alive:
                self._forward = None
                raise RuntimeError(
                    f"cannot port-forward to {pod}:{self.settings.pprof_port} "
                    f"(is {self.settings.pprof_env[0]} what turns pprof on?)"
                )
        with urllib.request.urlopen(f"{fwd.url}/debug/pprof/heap", timeout=30) as resp:  # noqa: S310
            raw = resp.read()
        raw_dir = self.run.path / "profiles" / "raw"
        raw_dir.mkdir(parents=True, exist_ok=True)
        (raw_dir / f"heap-batch-{batch:04d}.pb.gz").write_bytes(raw)
        self.run.write_profile(batch, heap_profile(raw, source=f"heap-batch-{batch:04d}.pb.gz"))

    def snapshot(self, batch: int, pod: str, *, oom: bool = False) -> None:
        if oom:
            self.notes.append(
                f"batch {batch}: the Go heap at the kill cannot be read (the process is gone); "
                "the last profile before it stands for it"
            )
            return
        self._submit(f"batch {batch}: pprof heap", self._fetch, batch, pod)

    def close(self) -> None:
        super().close()
        if self._forward is not None:
            self._forward.stop()
            self._forward = None
