"""triage.memstat: the kernel's accounting, per cgroup version, and cAdvisor's, parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.memstat import (
    FORMULAS,
    ContainerRef,
    cgroup_version,
    memory_from_cadvisor,
    merge,
    parse_dump,
    parse_stat,
)
from triage.rundir import Memory

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data" / "memstat"


def test_cgroup_v1_recorded_dump() -> None:
    reading = parse_dump((DATA / "cgroup-v1-dump.txt").read_text())
    assert reading is not None
    m = reading.memory
    assert m.memory_source == "memory.stat v1"
    # 4 MiB in /dev/shm is shmem: it sits in total_cache, but the kernel cannot drop it.
    assert m.shmem_bytes == 4 * 2**20
    assert m.anon_bytes == 106496
    assert m.unreclaimable_bytes == 106496 + 4 * 2**20
    assert m.cache_bytes == 12759040 and m.usage_bytes == 13619200
    # Working set as the kubelet computes it: usage minus inactive file pages.
    assert m.working_set_bytes == 13619200 - 8396800
    assert reading.cpu_seconds == pytest.approx(95045329 / 1e9)


def test_cgroup_v2_layout() -> None:
    reading = parse_dump((DATA / "cgroup-v2-constructed.txt").read_text())
    assert reading is not None
    m = reading.memory
    assert m.memory_source == "memory.stat v2"
    kernel = 163840 + 409600 + 28672 + 8192 + 1048576
    assert m.kernel_bytes == kernel
    assert m.unreclaimable_bytes == 73400320 + 2097152 + kernel
    assert m.cache_bytes == 20971520 and m.usage_bytes == 99614720
    assert m.working_set_bytes == 99614720 - 12582912
    assert reading.cpu_seconds == pytest.approx(8.123456)
    assert "slab_unreclaimable" in FORMULAS["memory.stat v2"]


def test_versions_are_told_apart_and_garbage_is_not_a_reading() -> None:
    assert cgroup_version(parse_stat("anon 1\nfile 2\n")) == 2
    assert cgroup_version(parse_stat("rss 1\ncache 2\n")) == 1
    assert parse_dump("") is None
    assert parse_dump("cat: can't open '/sys/fs/cgroup/memory.stat'\n") is None


def test_cadvisor_picks_the_container_not_the_pod_or_its_pause() -> None:
    text = (DATA / "cadvisor-v1.txt").read_text()
    m = memory_from_cadvisor(text, ContainerRef("memstat-rec", "rec", "main"))
    assert m is not None and m.memory_source == "cadvisor"
    assert m.rss_bytes == m.unreclaimable_bytes and m.rss_bytes is not None
    assert m.cache_bytes is not None and m.working_set_bytes is not None
    assert m.shmem_bytes is None  # cAdvisor does not export it: unknown, not zero
    assert memory_from_cadvisor(text, ContainerRef("memstat-rec", "rec", "nope")) is None


def test_merge_fills_only_what_is_unknown() -> None:
    own = Memory(unreclaimable_bytes=10, anon_bytes=10, memory_source="memory.stat v1")
    kubelet = Memory(
        working_set_bytes=30, rss_bytes=9, unreclaimable_bytes=9, memory_source="summary"
    )
    merged = merge(own, None, kubelet)
    assert merged.unreclaimable_bytes == 10 and merged.memory_source == "memory.stat v1"
    assert merged.working_set_bytes == 30 and merged.rss_bytes == 9
