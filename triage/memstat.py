"""The container's memory as the kernel accounts it: cgroup memory.stat (v1 and v2) and cAdvisor.

What kills an operator is memory the kernel cannot reclaim. The kubelet's working set is
usage minus *inactive* page cache, so active page cache (a file the operator, or a profiler
inside its container, keeps writing) counts in it although the kernel would drop it before
killing anything. The formulas below say what is counted as unreclaimable per source:

| source | unreclaimable | notes |
| --- | --- | --- |
| memory.stat, cgroup v1 | `total_rss + total_shmem` | total_rss is anonymous memory (and swap cache); shmem (tmpfs) sits in total_cache but cannot be dropped |
| memory.stat, cgroup v2 | `anon + shmem + kernel_stack + pagetables + percpu + sock + slab_unreclaimable` | v2 charges kernel memory to the cgroup, and the OOM killer counts it |
| cAdvisor (kubelet /metrics/cadvisor) | `container_memory_rss` | anonymous only; shmem is not exported (unknown, not zero) |
| kubelet stats summary | `rssBytes` | as cAdvisor |

Parsers are pure functions of the text, tested on recorded files of both cgroup versions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from triage.rundir import Memory

FORMULAS = {
    "memory.stat v1": "total_rss + total_shmem (cgroup v1 memory.stat)",
    "memory.stat v2": "anon + shmem + kernel_stack + pagetables + percpu + sock + "
    "slab_unreclaimable (cgroup v2 memory.stat)",
    "cadvisor": "container_memory_rss (cAdvisor; shmem unknown)",
    "summary": "rssBytes (kubelet stats summary; shmem unknown)",
}

#: Paths a container sees for its own cgroup, v2 first (a v2 host has no memory/ directory).
V2_STAT = "/sys/fs/cgroup/memory.stat"
V2_CURRENT = "/sys/fs/cgroup/memory.current"
V1_STAT = "/sys/fs/cgroup/memory/memory.stat"
V1_USAGE = "/sys/fs/cgroup/memory/memory.usage_in_bytes"
#: CPU time, read in the same exec: the adaptive settle waits for the operator to go idle.
V2_CPU = "/sys/fs/cgroup/cpu.stat"
V1_CPU = "/sys/fs/cgroup/cpuacct/cpuacct.usage"
#: (memory.stat, usage, cpu) per cgroup version, v2 first.
CGROUP_FILES = ((V2_STAT, V2_CURRENT, V2_CPU), (V1_STAT, V1_USAGE, V1_CPU))
_V2_KERNEL = ("kernel_stack", "pagetables", "percpu", "sock", "slab_unreclaimable")


def parse_stat(text: str) -> dict[str, int]:
    """`key value` lines into a dict; lines that are not two fields are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass(frozen=True, slots=True)
class CgroupReading:
    memory: Memory
    #: CPU time the container has used, in seconds (None when the file was not there).
    cpu_seconds: float | None


def parse_dump(text: str) -> CgroupReading | None:
    """The output of `cat memory.stat <usage> <cpu>`: stat lines, then bare numbers.

    v1: memory.stat lines, usage_in_bytes, cpuacct.usage (ns). v2: memory.stat lines,
    memory.current, then cpu.stat lines (its `usage_usec`). None when there is no memory.stat.
    """
    stat: dict[str, int] = {}
    bare: list[int] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            stat[parts[0]] = int(parts[1])
        elif len(parts) == 1 and parts[0].isdigit():
            bare.append(int(parts[0]))
    cpu_usec = stat.pop("usage_usec", None)
    for key in ("user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"):
        stat.pop(key, None)
    if not stat:
        return None
    usage = bare[0] if bare else None
    cpu: float | None = None
    if cpu_usec is not None:
        cpu = cpu_usec / 1e6
    elif len(bare) > 1:
        cpu = bare[1] / 1e9
    return CgroupReading(memory_from_stat(stat, usage=usage), cpu)


def cgroup_version(stat: Mapping[str, int]) -> int:
    """2 when the keys are v2's (anon, file), 1 for v1's (rss, cache, total_*)."""
    return 2 if "anon" in stat and "file" in stat else 1


def memory_from_stat(stat: Mapping[str, int], *, usage: int | None = None) -> Memory:
    """Memory fields from a memory.stat, by its cgroup version; `usage` from the usage file."""
    if cgroup_version(stat) == 2:
        anon, shmem = stat.get("anon"), stat.get("shmem")
        kernel = sum(stat.get(k, 0) for k in _V2_KERNEL) if "kernel_stack" in stat else None
        file_ = stat.get("file")
        inactive = stat.get("inactive_file", 0)
        unreclaimable = None if anon is None else anon + (shmem or 0) + (kernel or 0)
        return Memory(
            working_set_bytes=None if usage is None else max(usage - inactive, 0),
            cache_bytes=file_,
            mapped_file_bytes=stat.get("file_mapped"),
            anon_bytes=anon,
            shmem_bytes=shmem,
            kernel_bytes=kernel,
            unreclaimable_bytes=unreclaimable,
            usage_bytes=usage,
            memory_source="memory.stat v2",
        )

    # v1: the total_* keys include child cgroups (the container's processes may sit in one).
    def total(key: str) -> int | None:
        return stat.get(f"total_{key}", stat.get(key))

    rss, shmem, cache = total("rss"), total("shmem"), total("cache")
    inactive = total("inactive_file") or 0
    return Memory(
        working_set_bytes=None if usage is None else max(usage - inactive, 0),
        cache_bytes=cache,
        mapped_file_bytes=total("mapped_file"),
        anon_bytes=rss,
        shmem_bytes=shmem,
        unreclaimable_bytes=None if rss is None else rss + (shmem or 0),
        usage_bytes=usage,
        memory_source="memory.stat v1",
    )


# -- cAdvisor ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>[-+0-9.eE]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_CADVISOR = {
    "container_memory_working_set_bytes": "working_set_bytes",
    "container_memory_rss": "rss_bytes",
    "container_memory_cache": "cache_bytes",
    "container_memory_mapped_file": "mapped_file_bytes",
    "container_memory_usage_bytes": "usage_bytes",
}


@dataclass(frozen=True, slots=True)
class ContainerRef:
    namespace: str
    pod: str
    container: str


def memory_from_cadvisor(text: str, ref: ContainerRef) -> Memory | None:
    """The container's memory from the kubelet's /metrics/cadvisor text; None if absent.

    Only lines whose name is one of the memory series are label-parsed: the whole
    exposition is every container on the node, and most of it is CPU, network and disk.
    """
    found: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("container_memory_"):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group("name") not in _CADVISOR:
            continue
        labels = dict(_LABEL.findall(m.group("labels")))
        if (
            labels.get("namespace") == ref.namespace
            and labels.get("pod", labels.get("pod_name")) == ref.pod
            and labels.get("container", labels.get("container_name")) == ref.container
        ):
            found[_CADVISOR[m.group("name")]] = int(float(m.group("value")))
    if not found:
        return None
    rss = found.get("rss_bytes")
    return Memory(
        **found,
        unreclaimable_bytes=rss,
        memory_source="cadvisor" if rss is not None else "",
    )


def merge(primary: Memory, *others: Memory | None) -> Memory:
    """`primary` with its unknown fields filled from `others`, in order."""
    out = primary
    for other in others:
        if other is None:
            continue
        fill = {
            f: getattr(other, f)
            for f in Memory.__dataclass_fields__
            if getattr(out, f) in (None, "") and getattr(other, f) not in (None, "")
        }
        out = replace(out, **fill)
    return out
