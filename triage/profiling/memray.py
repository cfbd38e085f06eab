"""memray for any Python operator: the operator's own command, run under memray by triage.

The run puts triage's launcher (`triage/memray_launch.py`, shipped in a ConfigMap) in front
of the container's command, run by the operator's own interpreter: the Tracker API plus
runpy, not `python -m memray run`, whose live-view UI would add ~23 MiB to the very figure
being measured. Each container start writes its own capture into a disk-backed emptyDir
(an OOM-killed process's capture survives the kill; the restarted one opens a new file).

The capture volume has no sizeLimit: a capture grows with the work the operator does, and
operators differ by two orders of magnitude there (about 3 KB per session for ours, about
290 KB for kopf, measured), so any limit set before the run is a guess, and a wrong guess
gets the pod evicted and the captures with it. Instead the captures are measured after every
batch (`guard`) against what they may use: the node's free disk above a reserve well clear
of the kubelet's eviction threshold, and, where the pod declares ephemeral-storage limits,
the allowance the keeper adds to them. When another two batches like the biggest so far
would not fit, the load stops there, before anything is evicted.

A keeper container sleeps beside the operator with the same image and mounts: an operator
in a crash loop lives a second or two between back-offs, too short to exec into, and the
capture of the process that was killed is the one that matters most. Captures are copied
out through it once, before the restore takes the pod away; the heap at every batch then
comes out of one pass over each capture (`memray_timeline`), off the run's critical path.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import time
from pathlib import Path
from typing import Any

from agentic_operator.resources import CONFIG_MAPS
from triage.memray_capture import CaptureError, trim_zero_tail
from triage.memray_cost import CaptureBudget, capture_stop
from triage.memray_timeline import profiles_isolated
from triage.memsources import NodeProxy
from triage.podio import exec_in, exec_to_file
from triage.profiling import Created, Profiler
from triage.rundir import Frame, HeapProfile, Site
from triage.target import live_pods

LAUNCHER = Path(__file__).resolve().parent.parent / "memray_launch.py"
LAUNCHER_DIR = "/triage-memray"
CAPTURE_DIR = "/triage-memray-captures"
KEEPER = "triage-memray-keeper"
LAUNCHER_VOLUME = "triage-memray-launcher"
CAPTURE_VOLUME = "triage-memray-captures"
#: memray's RSS snapshots pace the heap timeline; batches are seconds apart.
SNAPSHOT_MS = 100
#: Measured by bench/memray_modes.py with python allocators traced (docs/memray.md).
BUDGET = CaptureBudget(bytes_per_session=2934, start_bytes=196 * 1024, idle_bytes_per_s=871)
_LIST = (
    "import os, sys\n"
    "d = sys.argv[1]\n"
    "for n in sorted(os.listdir(d)):\n"
    "    if n.endswith('.bin'): print(n, os.path.getsize(os.path.join(d, n)))\n"
)
_SLEEP = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: exit(0))\n"
    "while True: time.sleep(3600)"
)
#: Free space the captures must leave on the node's filesystem: the kubelet starts evicting
#: at 10% available by default (nodefs.available<10%); keep 5% of the disk more.
NODE_RESERVE_FRACTION = 0.15
NODE_RESERVE_MIN = 2 * 2**30
#: Batches like the biggest so far that must still fit for the load to go on.
HEADROOM_BATCHES = 2
#: 1 MiB chunks: the default 64 KiB makes sixteen times the syscalls for a capture of
#: hundreds of MB, in a container with a CPU limit.
_CAT = (
    "import sys, shutil\nshutil.copyfileobj(open(sys.argv[1], 'rb'), sys.stdout.buffer, 1 << 20)\n"
)


class MemrayProfiler(Profiler):
    kind = "memray"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (batch, epoch seconds, the process was just killed)
        self._marks: list[tuple[int, float, bool]] = []
        self._copied: dict[str, Path] = {}
        #: capture name -> its timeline once read (None: the read failed).
        self._timelines: dict[str, dict[str, Any] | None] = {}
        #: Captures whose read has been started.
        self._reading: set[str] = set()
        #: PIDs of the reads running niced (beside a cold start), to raise when it ends.
        self._niced: set[int] = set()
        #: Until start_reading(): a measurement may still be going on.
        self._measuring = True
        #: Bytes the pod's ephemeral-storage limits allow the captures (None: no such limit).
        self._pod_allowance: int | None = None
        #: (batch, capture bytes in the live pod) after every batch, for the guard.
        self._sizes: list[tuple[int, int]] = []
        #: The most the captures grew in one batch so far.
        self._max_step = 0
        self._listing_error = ""
        self._node_proxy = NodeProxy(self.cluster, namespace=self.target.namespace)

    @property
    def _interpreter(self) -> str:
        return self.target.interpreter or "python3"

    def modify(self, spec: dict[str, Any], *, planned_sessions: int) -> list[Created]:
        pod = spec["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == self.target.container)
        command = self.target.command
        if not command:
            raise RuntimeError("memray needs the operator's command (preflight checks it)")
        name = f"triage-memray-{self.run.run_id.rsplit('-', 1)[-1]}-{self.run.run_id[9:15]}"
        size = BUDGET.size_limit(planned_sessions, duration_s=600, starts=3)
        pod.setdefault("volumes", []).extend(
            [
                {"name": LAUNCHER_VOLUME, "configMap": {"name": name, "defaultMode": 0o555}},
                # Disk-backed: on tmpfs the capture would count against the operator's limit.
                # No sizeLimit: going over one evicts the pod (module docstring).
                {"name": CAPTURE_VOLUME, "emptyDir": {}},
            ]
        )
        # Where the pod declares ephemeral-storage limits, an emptyDir counts against their
        # sum: the keeper adds the capture allowance to it, so the operator keeps its own.
        limited = any(
            "ephemeral-storage" in ((c.get("resources") or {}).get("limits") or {})
            for c in pod["containers"]
        )
        mounts = [
            {"name": LAUNCHER_VOLUME, "mountPath": LAUNCHER_DIR, "readOnly": True},
            {"name": CAPTURE_VOLUME, "mountPath": CAPTURE_DIR},
        ]
        keeper_mounts = copy.deepcopy(container.get("volumeMounts") or []) + mounts[1:]
        container.setdefault("volumeMounts", []).extend(mounts)
        flags = ["--output-dir", CAPTURE_DIR, "--memory-interval-ms", str(SNAPSHOT_MS)]
        flags.append(
            "--trace-python-allocators"
            if self.settings.python_allocators
            else "--no-trace-python-allocators"
        )
        if self.settings.native:
            flags.append("--native")
        container["command"] = [
            self._interpreter, f"{LAUNCHER_DIR}/memray_launch.py", *flags, "--", *command
        ]  # fmt: skip
        container.pop("args", None)
        keeper: dict[str, Any] = {
            "name": KEEPER,
            "image": container["image"],
            "command": [self._interpreter, "-c", _SLEEP],
            "volumeMounts": keeper_mounts,
            "resources": {
                "requests": {"cpu": "1m", "memory": "16Mi"},
                # A whole core at most: it sleeps all run, then copies the captures out
                # (hundreds of MB for a big run) while the run waits for them.
                "limits": {"cpu": "1", "memory": "96Mi"},
            },
        }
        if limited:
            keeper["resources"]["requests"]["ephemeral-storage"] = "1Mi"
            keeper["resources"]["limits"]["ephemeral-storage"] = f"{size // 2**20}Mi"
            self._pod_allowance = size
        for key in ("imagePullPolicy", "securityContext", "workingDir"):
            if key in container:
                keeper[key] = copy.deepcopy(container[key])
        if not any(c["name"] == KEEPER for c in pod["containers"]):
            pod["containers"].append(keeper)
        launcher = LAUNCHER.read_bytes()
        self.info = {
            "launcher": f"{LAUNCHER_DIR}/memray_launch.py",
            "python_allocators": self.settings.python_allocators,
            "native": self.settings.native,
            "capture_volume": "emptyDir without sizeLimit, measured after every batch",
            "capture_pod_allowance": f"{size // 2**20}Mi" if limited else None,
            "capture_budget": BUDGET.formula(),
        }
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.target.namespace,
                "labels": {"app.kubernetes.io/managed-by": "triage"},
            },
            "binaryData": {"memray_launch.py": base64.b64encode(launcher).decode("ascii")},
        }
        return [
            Created(
                path=CONFIG_MAPS.path(self.target.namespace, name),
                collection=CONFIG_MAPS.path(self.target.namespace),
                body=body,
                kind="ConfigMap",
            )
        ]

    def snapshot(self, batch: int, pod: str, *, oom: bool = False) -> None:
        # Only the moment: the heap then comes out of the capture later, in one pass.
        self._marks.append((batch, time.time(), oom))

    # -- the guard: the captures never get the pod evicted ------------------------------------

    def guard(self, batch: int, pod: str, *, node: str) -> str | None:
        """Why the load must stop before the next batch, or None while the captures fit."""
        listing = self._listing(pod)
        if listing is None:
            return None
        used = sum(size for _, size in listing)
        previous = self._sizes[-1][1] if self._sizes else 0
        self._sizes.append((batch, used))
        # Smaller than before: a new container start, whose capture is all new.
        self._max_step = max(self._max_step, used - previous if used >= previous else used)
        self.info["capture_bytes_by_batch"] = [list(x) for x in self._sizes]
        fs = self._node_proxy.node_fs(node) if node else None
        return capture_stop(
            batch=batch,
            used=used,
            step=self._max_step,
            pod_allowance=self._pod_allowance,
            node_available=None if fs is None else fs[0],
            node_reserve=None
            if fs is None
            else max(NODE_RESERVE_MIN, int(NODE_RESERVE_FRACTION * fs[1])),
            headroom_batches=HEADROOM_BATCHES,
        )

    def _listing(self, pod: str) -> list[tuple[str, int]] | None:
        """(name, bytes) of each capture in the pod, through the keeper; None if unreadable."""
        listing = exec_in(
            self.cluster, namespace=self.target.namespace, pod=pod, container=KEEPER,
            argv=[self._interpreter, "-c", _LIST, CAPTURE_DIR], timeout=30,
        )  # fmt: skip
        if not listing.ok:
            self._listing_error = listing.error(160)
            return None
        found = []
        for line in listing.stdout.decode("utf-8", "replace").splitlines():
            name, _, size = line.rpartition(" ")
            if name and size.isdigit():
                found.append((name, int(size)))
        return found

    # -- collection: copy the captures out while the pod exists ------------------------------

    def collect(self) -> None:
        super().collect()
        pods = live_pods(self.cluster, namespace=self.target.namespace,
                         deployment=self.target.deployment)  # fmt: skip
        raw = self.run.path / "profiles" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for pod in pods:
            name = pod["metadata"]["name"]
            listing = self._listing(name)
            if listing is None:
                self.notes.append(f"cannot list the captures in {name}: {self._listing_error}")
                continue
            for capture, _size in listing:
                if capture in self._copied:
                    continue
                local = raw / capture
                data = exec_to_file(
                    self.cluster, namespace=self.target.namespace, pod=name, container=KEEPER,
                    argv=[self._interpreter, "-c", _CAT, f"{CAPTURE_DIR}/{capture}"],
                    out=local, timeout=600,
                )  # fmt: skip
                if not data.ok:
                    local.unlink(missing_ok=True)
                    self.notes.append(f"cannot copy {capture} from {name}: {data.error(160)}")
                    continue
                # The zeros memray pads a capture with cost every read of it more than the
                # records do (trim_zero_tail): cut once here, where the copy lands.
                trimmed = self.info.setdefault("capture_zero_tail_bytes", {})
                trimmed[capture] = trim_zero_tail(local)
                self._copied[capture] = local

    # -- after the last measurement: one pass per capture for every batch it covers ----------

    def read_ended(self) -> None:
        # The captures just copied belong to processes the cold start is about to end: no
        # later mark can fall inside them, so each can be read now. Reading is the longest
        # step after the load (a minute for 10,000 sessions with Python allocators traced)
        # and needs nothing from the cluster; beside the cold start it runs niced, in a child
        # process, on CPU the operator being timed leaves idle.
        self._start_reads(nice=19)

    def start_reading(self) -> None:
        # After the last measurement: the rest, at full speed, while the restore waits on
        # its rollout. A read started niced beside the cold start is the longest of all
        # (the killed process's capture): nothing is timed any more, so it gets full priority
        # too.
        self._measuring = False  # before the loop: a read that starts now sees it (started())
        for pid in list(self._niced):
            _raise_priority(pid)
        self._start_reads(nice=0)

    def _start_reads(self, *, nice: int) -> None:
        if not self._marks:
            return
        for name in sorted(self._copied):
            if name not in self._reading:
                self._reading.add(name)
                self._submit("timeline", self._read_timeline, name, nice, read=True)

    def _read_timeline(self, name: str, nice: int = 0) -> None:
        """The heap at every batch mark so far from capture `name` (no later one is in it)."""
        self._timelines[name] = None  # read, whatever comes of it
        times = [t * 1000 for _, t, _ in self._marks]
        if not self._measuring:  # queued beside the cold start, started after it ended
            nice = 0
        pids: list[int] = []

        def started(pid: int) -> None:
            pids.append(pid)
            if nice:
                self._niced.add(pid)
                if not self._measuring:  # start_reading() came first and did not see it
                    _raise_priority(pid)

        try:
            self._timelines[name] = profiles_isolated(
                self._copied[name], times, nice=nice, started=started
            )
        except CaptureError as e:
            self.notes.append(str(e))
        finally:
            self._niced.difference_update(pids)

    def finish(self) -> None:
        super().finish()  # waits for the reads start_reading() began
        if not self._marks:
            return
        if not self._copied:
            self.notes.append("no memray capture could be copied out of the pod")
            return
        found: dict[int, HeapProfile] = {}
        for name in sorted(self._copied):  # names sort in start order
            if name not in self._timelines:  # copied, but no read was started
                self._read_timeline(name)
            timeline = self._timelines[name]
            if timeline is None:  # its read failed (a note says why)
                continue
            last = timeline.get("last_ms")
            # A capture read beside a cold start saw the marks up to then (marks are only
            # ever appended); later ones belong to later processes.
            marks = self._marks[: len(timeline["at"])]
            for (batch, t, oom), doc in zip(marks, timeline["at"], strict=True):
                if doc is None or last is None:
                    continue
                if oom and timeline.get("end") is not None and last < t * 1000:
                    # The capture ended before the kill was seen: it is the killed process's.
                    # The first kill of a batch is the one its load caused; a restarted
                    # process killed again while re-listing does not replace it.
                    if batch not in found:
                        found[batch] = _profile(timeline["end"], truncated=timeline["truncated"])
                elif not oom and t * 1000 <= last + 2 * SNAPSHOT_MS:
                    found[batch] = _profile(doc, truncated=timeline["truncated"])
        for batch, profile in sorted(found.items()):
            self.run.write_profile(batch, profile)
        missing = [b for b, _, _ in self._marks if b not in found]
        if missing:
            self.notes.append(f"no memray heap for batch(es) {sorted(set(missing))}")


def _raise_priority(pid: int) -> None:
    """Give a niced read triage's own priority back. That takes root (CAP_SYS_NICE); without
    it the read stays niced, which only makes it slower when the machine is busy."""
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0))


def _profile(doc: dict[str, Any], *, truncated: bool) -> HeapProfile:
    return HeapProfile(
        heap_bytes=int(doc["heap_bytes"]),
        allocations=int(doc["allocations"]),
        top=tuple(
            Site(
                function=s["function"],
                file=s["file"],
                line=int(s["line"]),
                bytes=int(s["bytes"]),
                count=int(s["count"]),
                stack=tuple(Frame(f["function"], f["file"], int(f["line"])) for f in s["stack"]),
            )
            for s in doc["top"]
        ),
        profiler="memray",
        peak_bytes=doc.get("peak_bytes"),
        total_allocations=doc.get("total_allocations"),
        source=str(doc.get("source", "")),
        python_allocators=doc.get("python_allocators"),
        truncated=truncated,
    )
