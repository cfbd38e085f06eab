"""Profiles of the operator per batch: memray captures copied out of the pod, py-spy dumps.

The upstream reproducer's pprof endpoint listened on all interfaces and died with the process
it profiled, so the one heap profile that mattered (the one at the OOM) was never taken.
Here the operator writes memray captures into an emptyDir (/profiles), which outlives an
OOMKilled container; triage copies them out through `kubectl exec` (never by dialling the
pod) and keeps the raw captures in profiles/raw/ so anyone can re-open them with memray's
own tools.

Each capture is parsed in a child process: a file cut off by SIGKILL mid-record can make the
reader complain on stderr or, in the worst case, abort; neither may take the run down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.deployment_patch import KEEPER_CONTAINER
from triage.kube import Cluster
from triage.sampling import kubectl_base

PROFILE_DIR = "/profiles"
PYSPY = "/opt/agentic-operator/venv/bin/py-spy"
TOP_N = 25


@dataclass(frozen=True)
class Capture:
    name: str
    size: int


def _site(frames: list[tuple[str, str, int]]) -> tuple[str, str, int]:
    """The allocation site to blame: the innermost frame outside the standard library.

    "json/decoder.py:353 raw_decode" is where nearly every cached byte is allocated; the
    question a report answers is which of the operator's own lines asked for it.
    """
    if not frames:
        return ("<unknown>", "<native>", 0)
    for function, file, line in frames:
        if "/lib/python3" not in file or "site-packages" in file:
            return (str(function), str(file), int(line))
    function, file, line = frames[0]
    return (str(function), str(file), int(line))


def parse_capture(path: Path, *, top_n: int = TOP_N) -> dict[str, Any]:
    """Heap live at the end of `path` and its top allocation sites (memray.json's shape).

    "Live at the end" is the heap at the moment of the copy for a running operator and the
    heap at death for an OOM-killed one: the number that should grow batch over batch.
    """
    import memray

    reader = memray.FileReader(str(path))
    try:
        sites: dict[tuple[str, str, int], list[int]] = {}
        heap = count = 0
        for record in reader.get_leaked_allocation_records(merge_threads=True):
            heap += record.size
            count += record.n_allocations
            key = _site(record.stack_trace(max_stacks=8))
            acc = sites.setdefault(key, [0, 0])
            acc[0] += record.size
            acc[1] += record.n_allocations
        peak = int(reader.metadata.peak_memory)
        total = int(reader.metadata.total_allocations)
    finally:
        reader.close()
    top = sorted(sites.items(), key=lambda kv: kv[1][0], reverse=True)[:top_n]
    return {
        "heap_bytes": heap,
        "allocations": count,
        "top": [
            {"function": f, "file": file, "line": line, "bytes": b, "count": c}
            for (f, file, line), (b, c) in top
        ],
        "peak_bytes": peak,
        "total_allocations": total,
        "source": path.name,
    }


def parse_capture_isolated(path: Path, *, timeout: float = 300) -> dict[str, Any]:
    """`parse_capture` in a child process; a broken capture becomes an error, not a crash."""
    proc = subprocess.run(
        [sys.executable, "-m", "triage.profiles", str(path)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise ProfileError(f"cannot parse memray capture {path.name}: {tail[0]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    # memray prints problems with a cut-off capture on stderr and keeps what it could read.
    result["truncated"] = b"ERROR" in proc.stderr
    return result


class ProfileError(Exception):
    """A profile could not be taken or read; the run goes on without it."""


class Profiler:
    """Collects profiles of the operator pod of one run into `run_dir/profiles`."""

    def __init__(self, cluster: Cluster, *, run_dir: Path, namespace: str, kind: str) -> None:
        self._cluster = cluster
        self._namespace = namespace
        self.kind = kind  # "memray" | "py-spy" | "none"
        self.raw_dir = run_dir / "profiles" / "raw"
        self._profiles = run_dir / "profiles"
        self.notes: list[str] = []
        #: The capture the operator was writing at the last batch before any OOM: after a
        #: kill, that file is the killed process's, whether or not the new one exists yet.
        self._live_capture: str | None = None

    def _copy_from(self, container: str) -> str:
        # The run adds the keeper with memray (triage/deployment_patch.py); it stays up while
        # the operator container crash-loops.
        return KEEPER_CONTAINER if self.kind == "memray" else container

    def _exec(
        self, pod: str, container: str, argv: list[str], *, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                *kubectl_base(self._cluster),
                "-n",
                self._namespace,
                "exec",
                pod,
                "-c",
                container,
                "--",
                *argv,
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    # -- memray -------------------------------------------------------------------------------

    def list_captures(self, pod: str, container: str) -> list[Capture]:
        container = self._copy_from(container)
        proc = self._exec(
            pod,
            container,
            [
                "sh",
                "-c",
                f'for f in {PROFILE_DIR}/memray-*.bin; do [ -f "$f" ] && stat -c \'%n %s\' "$f"; done; true',
            ],
        )
        if proc.returncode != 0:
            raise ProfileError(
                f"cannot list {PROFILE_DIR} in {pod}: {proc.stderr.decode('utf-8', 'replace').strip()[:200]}"
            )
        out: list[Capture] = []
        for line in proc.stdout.decode().splitlines():
            name, _, size = line.rpartition(" ")
            if name and size.isdigit():
                out.append(Capture(Path(name).name, int(size)))
        return sorted(out, key=lambda c: c.name)

    def sync(self, pod: str, container: str) -> list[Path]:
        """Copy the captures out of the pod; return the local copies, oldest first.

        Whole files, not appended tails: memray writes through a shared mmap that grows in
        chunks, so bytes already copied can still change (zeros that get filled in), and it
        compresses a capture in place when its process exits cleanly. Only the newest
        capture can still be written to; older ones are copied once unless their size moved.
        """
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        captures = self.list_captures(pod, container)
        copied: list[Path] = []
        for i, cap in enumerate(captures):
            local = self.raw_dir / cap.name
            newest = i == len(captures) - 1
            if newest or not local.exists() or local.stat().st_size != cap.size:
                proc = self._exec(
                    pod,
                    self._copy_from(container),
                    ["cat", f"{PROFILE_DIR}/{cap.name}"],
                    timeout=300,
                )
                if proc.returncode != 0:
                    raise ProfileError(
                        f"cannot copy {cap.name} from {pod}: "
                        f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]}"
                    )
                tmp = local.with_name(f".{local.name}.tmp")
                tmp.write_bytes(proc.stdout)
                tmp.replace(local)
            copied.append(local)
        return copied

    def memray_batch(
        self, batch: int, pod: str, container: str, *, oom: bool = False
    ) -> Path | None:
        """Copy the captures and write profiles/batch-NNNN/memray.json.

        After an OOM the interesting capture is the one the killed process was writing (the
        newest one before the restart), not the fresh one the new process just opened.
        """
        captures = self.sync(pod, container)
        if not captures:
            self.notes.append(f"batch {batch}: no memray capture in {PROFILE_DIR} yet")
            return None
        names = [c.name for c in captures]
        if not oom:
            chosen = self._live_capture = names[-1]
        elif self._live_capture in names:
            chosen = self._live_capture
        else:
            # No batch was profiled before the kill. The new process opens its capture as it
            # starts, so the killed one is the one before the newest if there are two.
            chosen = names[-2] if len(names) > 1 else names[-1]
        result = parse_capture_isolated(self.raw_dir / chosen)
        out = self.batch_dir(batch) / "memray.json"
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return out

    # -- py-spy -------------------------------------------------------------------------------

    def pyspy_batch(self, batch: int, pod: str, container: str) -> Path:
        proc = self._exec(pod, container, [PYSPY, "dump", "--pid", "1"], timeout=60)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise ProfileError(f"py-spy dump in {pod} failed: {err[:300]}")
        out = self.batch_dir(batch) / "pyspy.txt"
        out.write_text(text, encoding="utf-8")
        return out

    # -- both ---------------------------------------------------------------------------------

    def batch_dir(self, batch: int) -> Path:
        d = self._profiles / f"batch-{batch:04d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def take(self, batch: int, pod: str, container: str, *, oom: bool = False) -> str | None:
        """Take this run's profile for `batch`; a failure is a note, never a failed run."""
        if self.kind == "none" or not pod:
            return None
        try:
            if self.kind == "memray":
                self.memray_batch(batch, pod, container, oom=oom)
            elif self.kind == "py-spy":
                self.pyspy_batch(batch, pod, container)
        except (ProfileError, subprocess.TimeoutExpired, OSError) as e:
            note = f"batch {batch}: {e}"
            self.notes.append(note)
            return note
        return None


def _main(argv: list[str]) -> Iterator[str]:
    yield json.dumps(parse_capture(Path(argv[0])))


if __name__ == "__main__":
    for line in _main(sys.argv[1:]):
        print(line)
