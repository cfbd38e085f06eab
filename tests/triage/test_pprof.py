"""triage.pprof: the hand-written profile.proto reader, on hand-encoded messages and on real
heap profiles recorded from the Go test operator under load (tests/data/pprof), cross-checked
against `go tool pprof -top` where Debian's Go is installed."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pytest

from triage import pprof

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data" / "pprof"
GO = Path("/usr/lib/go-1.19/bin/go")
PROFILES = sorted(DATA.glob("heap-*.pb.gz"))


# -- a minimal protobuf encoder, for messages the reader has to take apart -------------------


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def packed(number: int, values: list[int]) -> bytes:
    return field(number, b"".join(varint(v) for v in values))


class Encoder:
    """Builds a profile.proto message with a string table."""

    def __init__(self) -> None:
        self.strings = [""]
        self.body = b""

    def s(self, text: str) -> int:
        if text not in self.strings:
            self.strings.append(text)
        return self.strings.index(text)

    def add(self, number: int, value: int | bytes) -> None:
        self.body += field(number, value)

    def function(self, fid: int, name: str, filename: str = "x.go") -> None:
        self.add(5, field(1, fid) + field(2, self.s(name)) + field(4, self.s(filename)))

    def location(self, lid: int, *lines: tuple[int, int]) -> None:
        body = field(1, lid) + field(3, 0x1000 + lid)
        for fid, line in lines:
            body += field(4, field(1, fid) + field(2, line))
        self.add(4, body)

    def sample(self, locs: list[int], values: list[int], *, pack: bool = True) -> None:
        if pack:
            body = packed(1, locs) + packed(2, values)
        else:
            body = b"".join(field(1, v) for v in locs) + b"".join(field(2, v) for v in values)
        self.add(2, body)

    def encode(self) -> bytes:
        return self.body + b"".join(field(6, t.encode()) for t in self.strings)


def heap_profile(samples: list[tuple[list[int], int]]) -> bytes:
    """Four heap sample types; each sample gets inuse_space = the given bytes."""
    e = Encoder()
    for t, u in (
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ):
        e.add(1, field(1, e.s(t)) + field(2, e.s(u)))
    e.function(1, "runtime.mallocgc", "runtime/malloc.go")
    e.function(2, "runtime.makemap", "runtime/map.go")
    e.function(3, "encoding/json.(*decodeState).object", "encoding/json/decode.go")
    e.function(4, "main.cache", "main.go")
    e.function(5, "main.main", "main.go")
    e.function(6, "runtime.main", "runtime/proc.go")
    e.function(7, "main.helper", "main.go")
    e.location(1, (1, 100))
    e.location(2, (2, 200))
    # json's object() inlined into main.cache: one location, two lines, innermost first.
    e.location(3, (3, 300), (4, 40))
    e.location(4, (5, 50))
    e.location(5, (6, 60))
    e.location(6, (7, 70))
    e.location(7, (4, 41))  # main.cache again, as a caller further up (recursion)
    for i, (locs, inuse) in enumerate(samples):
        e.sample(locs, [1, inuse * 2, 1, inuse], pack=i % 2 == 0)
    e.add(11, field(1, e.s("space")) + field(2, e.s("bytes")))
    e.add(12, 524288)
    e.add(9, 1_700_000_000_000_000_000)
    e.add(13, e.s("a comment"))
    return gzip.compress(e.encode())


SYNTHETIC = [
    # mallocgc <- makemap <- json.object (inlined into) main.cache <- main.main <- runtime.main
    ([1, 2, 3, 4, 5], 1000),
    # main.helper <- main.cache <- main.helper... recursion: cum counts main.cache once.
    ([6, 7, 3, 4, 5], 300),
    # all runtime
    ([1, 5], 7),
]


def test_decodes_everything_a_heap_profile_has() -> None:
    p = pprof.parse(heap_profile(SYNTHETIC))
    assert [vt.type for vt in p.sample_types] == [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    assert p.period_type == pprof.ValueType("space", "bytes") and p.period == 524288
    assert p.time_nanos == 1_700_000_000_000_000_000
    assert p.comments == ("a comment",)
    assert len(p.samples) == 3 and len(p.functions) == 7 and len(p.locations) == 7
    # Packed and unpacked repeated fields read the same.
    assert p.samples[0].values == (1, 2000, 1, 1000)
    assert p.samples[1].values == (1, 600, 1, 300)
    assert p.total() == 1307 and p.total("alloc_space") == 2614
    frames = p.samples[0].frames
    assert [f.function for f in frames] == [
        "runtime.mallocgc",
        "runtime.makemap",
        "encoding/json.(*decodeState).object",
        "main.cache",
        "main.main",
        "runtime.main",
    ]
    assert frames[2].inlined and not frames[3].inlined
    assert (frames[2].filename, frames[2].line) == ("encoding/json/decode.go", 300)
    with pytest.raises(KeyError, match="inuse_space"):
        p.sample_index("cpu")


def test_flat_and_cum_per_function_as_pprof_computes_them() -> None:
    stats = {s.name: s for s in pprof.function_stats(pprof.parse(heap_profile(SYNTHETIC)))}
    assert stats["runtime.mallocgc"] == pprof.FunctionStat("runtime.mallocgc", 1007, 1007)
    assert stats["main.helper"] == pprof.FunctionStat("main.helper", 300, 300)
    assert stats["main.cache"].flat == 0
    assert stats["main.cache"].cum == 1300  # once per sample, though twice in the second
    assert stats["encoding/json.(*decodeState).object"].cum == 1300  # the inlined frame counts
    assert stats["runtime.main"].cum == 1307
    alloc = {
        s.name: s for s in pprof.function_stats(pprof.parse(heap_profile(SYNTHETIC)), "alloc_space")
    }
    assert alloc["main.cache"].cum == 2600


def test_sites_trim_the_runtime_and_keep_a_short_stack() -> None:
    p = pprof.parse(heap_profile(SYNTHETIC))
    top = pprof.top_sites(p, limit=2, depth=2)
    assert [s.value for s in top] == [1000, 300]
    first = top[0]
    assert first.allocator == "runtime.makemap"
    assert [f.function for f in first.frames] == [
        "encoding/json.(*decodeState).object",
        "main.cache",
    ]
    assert first.function == "encoding/json.(*decodeState).object"
    assert top[1].allocator == "" and top[1].function == "main.helper"
    # A stack of nothing but runtime is kept (minus runtime.main), not emptied.
    (runtime_only,) = [s for s in pprof.top_sites(p) if s.value == 7]
    assert [f.function for f in runtime_only.frames] == ["runtime.mallocgc"]


def test_growth_by_site_between_two_profiles() -> None:
    first = pprof.parse(heap_profile([([1, 2, 3, 4, 5], 1000), ([6, 7, 3, 4, 5], 300)]))
    last = pprof.parse(heap_profile([([1, 2, 3, 4, 5], 5000), ([1, 5], 7)]))
    grown = pprof.growth(first, last, depth=3)
    assert [(g.function, g.before, g.after, g.delta) for g in grown] == [
        ("encoding/json.(*decodeState).object", 1000, 5000, 4000),
        ("runtime.mallocgc", 0, 7, 7),
        ("main.helper", 300, 0, -300),
    ]
    assert sum(g.delta for g in grown) == last.total() - first.total()
    assert pprof.growth(first, last, limit=1)[0].allocator == "runtime.makemap"


def test_names_for_people() -> None:
    assert pprof.package("encoding/json.(*decodeState).object") == "encoding/json"
    assert pprof.package("main.main") == "main"
    vendored = "k8s.io/kubernetes/vendor/k8s.io/client-go/tools/cache.(*Reflector).watchHandler"
    assert pprof.package(vendored) == "k8s.io/kubernetes/vendor/k8s.io/client-go/tools/cache"
    assert pprof.short_name(vendored) == "k8s.io/client-go/tools/cache.(*Reflector).watchHandler"
    assert pprof.short_name("main.main") == "main.main"


def test_negative_and_unknown_things() -> None:
    e = Encoder()
    e.add(1, field(1, e.s("inuse_space")) + field(2, e.s("bytes")))
    e.function(1, "f")
    e.location(1, (1, 1))
    e.sample([1], [-5], pack=False)  # int64 -5 is a ten-byte varint
    e.add(99, b"a field from a newer schema")
    p = pprof.parse(e.encode())  # not gzipped: read as is
    assert p.samples[0].values == (-5,)
    assert p.total() == -5


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # length runs past the end
        b"\x0b",  # wire type 3 (group)
        b"\x08\xff\xff",  # truncated varint
        field(1, field(1, 7)) + field(6, b""),  # string index out of range
        field(6, b"x"),  # string_table[0] not empty
        field(2, packed(1, [9]) + packed(2, [1])) + field(6, b""),  # unknown location
        b"\x1f\x8bnot gzip",
    ],
)
def test_broken_input_is_a_profile_error(data: bytes) -> None:
    with pytest.raises(pprof.ProfileError):
        pprof.parse(data)


# -- real profiles -------------------------------------------------------------------------------


def test_recorded_profiles_are_there() -> None:
    assert len(PROFILES) >= 3, PROFILES
    assert all(p.stat().st_size < 64 * 1024 for p in PROFILES)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_real_heap_profiles_parse(path: Path) -> None:
    p = pprof.load(path)
    assert [vt.type for vt in p.sample_types] == [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    assert p.period_type == pprof.ValueType("space", "bytes")
    assert p.total("inuse_space") > 1024 * 1024
    stats = pprof.function_stats(p)
    assert sum(s.flat for s in stats) == p.total()
    assert all(0 <= s.flat <= s.cum <= p.total() for s in stats)
    assert any(len(loc.lines) > 1 for loc in p.locations.values()), "no inlined frames seen"
    sites = pprof.top_sites(p, limit=5)
    assert sites and all(s.frames for s in sites)


def _go_top(path: Path, sample_index: str) -> dict[str, tuple[int, int]]:
    out = subprocess.run(
        [
            str(GO),
            "tool",
            "pprof",
            "-top",
            f"-sample_index={sample_index}",
            "-unit=B",
            "-nodecount=1000000",
            "-nodefraction=0",
            "-edgefraction=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows: dict[str, tuple[int, int]] = {}
    row = re.compile(r"^\s*(\d+)B?\s+\S+%\s+\S+%\s+(\d+)B?\s+\S+%\s+(.+?)(?: \(inline\))?$")
    for line in out.splitlines():
        m = row.match(line)
        if m:
            rows[m.group(3)] = (int(m.group(1)), int(m.group(2)))
    return rows


@pytest.mark.skipif(not GO.exists(), reason="Debian's Go 1.19 is not installed")
@pytest.mark.parametrize("sample_index", ["inuse_space", "alloc_space"])
@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_flat_and_cum_match_go_tool_pprof(path: Path, sample_index: str) -> None:
    expected = _go_top(path, sample_index)
    assert expected, "go tool pprof printed no rows"
    ours = {
        s.name: (s.flat, s.cum)
        for s in pprof.function_stats(pprof.load(path), sample_index)
        if s.cum
    }
    assert ours == expected


def test_growth_between_first_and_last_batch_is_the_informer_cache() -> None:
    first, last = pprof.load(PROFILES[0]), pprof.load(PROFILES[-1])
    grown = pprof.growth(first, last, limit=100_000)
    assert sum(g.delta for g in grown) == last.total() - first.total()
    assert last.total() > first.total() + 4 * 1024 * 1024
    # The largest growth is where the watch decoder builds the objects the informer keeps.
    top = grown[0]
    stack = " ".join(f.function for f in top.frames)
    assert top.delta > 0
    assert re.search(r"json|unstructured|Unstructured", stack), stack
