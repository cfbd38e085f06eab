"""Reads pprof heap profiles (Go's /debug/pprof/heap) without Go and without protobuf.

A Go operator that serves net/http/pprof answers /debug/pprof/heap with a gzipped
`profile.proto` message (github.com/google/pprof, proto/profile.proto). triage saves one per
batch and must say what grew between them on a machine that may have no Go toolchain, so this
module decodes the protobuf wire format by hand (stdlib only: gzip plus a small varint and
length-delimited field reader) and computes what `go tool pprof -top` shows:

- `parse` / `load`: the whole profile: sample types (alloc_objects, alloc_space,
  inuse_objects, inuse_space for a heap profile), samples, locations with their inlined lines,
  functions, mappings, period, time, comments;
- `function_stats`: flat and cumulative value per function for one sample type, as
  `go tool pprof -top -sample_index=inuse_space` computes them (flat goes to the leaf frame;
  cum counts each function once per sample, inlined frames included);
- `top_sites`: the allocation sites holding most, each with a short call stack, leaf to root,
  with the runtime's allocation helpers (runtime.mallocgc, makeslice, ...) trimmed off the
  leaf end, the runtime's scaffolding (goexit, main, doInit, ...) off the root end, and
  recursion collapsed so that a recursive decoder does not fill the stack with itself;
- `growth`: the same sites compared between two profiles (e.g. the first and the last batch).

Values are used as the profile stores them: Go's runtime already scales heap samples to
estimated totals, which is what `go tool pprof` reports too.
"""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SAMPLE_TYPE = "inuse_space"
#: The Go runtime: its allocators on the leaf end of a stack only say "memory was allocated
#: here", and its scaffolding on the root end (goexit, main, doInit, systemstack) says nothing.
_RUNTIME = re.compile(r"^runtime\.")
#: Root-side frames every goroutine or the main goroutine starts from.
_ROOTS = frozenset({"runtime.goexit", "runtime.main"})


class ProfileError(ValueError):
    """The bytes are not a profile.proto message this module can read."""


# -- protobuf wire format -------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProfileError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProfileError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of one message, in order."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ProfileError(f"field {number}: length {size} runs past the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _I64:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == _I32:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ProfileError(f"field {number}: unsupported wire type {wire}")
        if pos > end:
            raise ProfileError("truncated message")
        yield number, wire, value


def _int64(v: int) -> int:
    """A varint read as two's complement int64 (negative int64s are 10-byte varints)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _repeated(wire: int, value: int | bytes) -> list[int]:
    """A repeated scalar field: packed (one length-delimited run) or one element."""
    if wire == _LEN:
        assert isinstance(value, bytes)
        out, pos = [], 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(v)
        return out
    assert isinstance(value, int)
    return [value]


def _message(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProfileError(f"{what} is not a message")
    return value


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueType:
    type: str
    unit: str


@dataclass(frozen=True)
class Function:
    id: int
    name: str
    system_name: str
    filename: str
    start_line: int


@dataclass(frozen=True)
class Line:
    function: Function
    line: int


@dataclass(frozen=True)
class Mapping:
    id: int
    memory_start: int
    memory_limit: int
    file_offset: int
    filename: str
    build_id: str


@dataclass(frozen=True)
class Location:
    id: int
    mapping_id: int
    address: int
    #: Innermost first: lines[0] is the inlined callee, lines[-1] the function it was inlined into.
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Frame:
    function: str
    filename: str
    line: int
    inlined: bool = False

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.filename else "?"
        return f"{self.function} ({where}{', inlined' if self.inlined else ''})"


@dataclass(frozen=True)
class Sample:
    #: Leaf first, as in the profile.
    locations: tuple[Location, ...]
    values: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=dict)
    num_labels: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> tuple[Frame, ...]:
        """Every frame, leaf to root, inlined ones expanded."""
        out: list[Frame] = []
        for loc in self.locations:
            last = len(loc.lines) - 1
            for i, ln in enumerate(loc.lines):
                out.append(Frame(ln.function.name, ln.function.filename, ln.line, i < last))
        return tuple(out)


@dataclass(frozen=True)
class Profile:
    sample_types: tuple[ValueType, ...]
    samples: tuple[Sample, ...]
    locations: dict[int, Location]
    functions: dict[int, Function]
    mappings: dict[int, Mapping]
    period_type: ValueType | None = None
    period: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    default_sample_type: str = ""
    comments: tuple[str, ...] = ()
    drop_frames: str = ""
    keep_frames: str = ""

    def sample_index(self, sample_type: str) -> int:
        for i, vt in enumerate(self.sample_types):
            if vt.type == sample_type:
                return i
        have = ", ".join(vt.type for vt in self.sample_types)
        raise KeyError(f"no sample type {sample_type!r} in this profile (it has: {have})")

    def total(self, sample_type: str = DEFAULT_SAMPLE_TYPE) -> int:
        i = self.sample_index(sample_type)
        return sum(s.values[i] for s in self.samples)


# -- decoding ---------------------------------------------------------------------------------


def parse(data: bytes) -> Profile:
    """Decode a profile.proto message, gzipped (as Go serves it) or not."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ProfileError(f"bad gzip stream: {e}") from e
    raw: dict[int, list[tuple[int, int | bytes]]] = defaultdict(list)
    for number, wire, value in _fields(data):
        raw[number].append((wire, value))

    strings = [_message(v, "string_table entry").decode("utf-8", "replace") for _, v in raw[6]]
    if strings and strings[0] != "":
        raise ProfileError("string_table[0] must be the empty string")

    def s(i: int) -> str:
        i = _int64(i)
        if not 0 <= i < len(strings):
            raise ProfileError(f"string index {i} out of range ({len(strings)} strings)")
        return strings[i]

    def scalar(number: int) -> int:
        vals = raw.get(number)
        return _int64(int(vals[-1][1])) if vals else 0

    def value_type(buf: bytes) -> ValueType:
        f = {n: int(v) for n, _, v in _fields(buf)}
        return ValueType(s(f.get(1, 0)), s(f.get(2, 0)))

    functions: dict[int, Function] = {}
    for _, v in raw[5]:
        f = {n: int(x) for n, _, x in _fields(_message(v, "function"))}
        fn = Function(f.get(1, 0), s(f.get(2, 0)), s(f.get(3, 0)), s(f.get(4, 0)), f.get(5, 0))
        functions[fn.id] = fn

    mappings: dict[int, Mapping] = {}
    for _, v in raw[3]:
        f = {n: int(x) for n, w, x in _fields(_message(v, "mapping")) if w != _LEN}
        m = Mapping(
            f.get(1, 0), f.get(2, 0), f.get(3, 0), f.get(4, 0), s(f.get(5, 0)), s(f.get(6, 0))
        )
        mappings[m.id] = m

    locations: dict[int, Location] = {}
    for _, v in raw[4]:
        loc_id = mapping_id = address = 0
        lines: list[Line] = []
        for n, _w, x in _fields(_message(v, "location")):
            if n == 1:
                loc_id = int(x)
            elif n == 2:
                mapping_id = int(x)
            elif n == 3:
                address = int(x)
            elif n == 4:
                lf = {k: int(y) for k, _, y in _fields(_message(x, "line"))}
                fid = lf.get(1, 0)
                if fid not in functions:
                    raise ProfileError(f"location {loc_id}: unknown function id {fid}")
                lines.append(Line(functions[fid], _int64(lf.get(2, 0))))
        locations[loc_id] = Location(loc_id, mapping_id, address, tuple(lines))

    sample_types = tuple(value_type(_message(v, "sample_type")) for _, v in raw[1])
    samples: list[Sample] = []
    for _, v in raw[2]:
        loc_ids: list[int] = []
        values: list[int] = []
        labels: dict[str, str] = {}
        num_labels: dict[str, int] = {}
        for n, w, x in _fields(_message(v, "sample")):
            if n == 1:
                loc_ids.extend(_repeated(w, x))
            elif n == 2:
                values.extend(_int64(y) for y in _repeated(w, x))
            elif n == 3:
                lf = {k: int(y) for k, _, y in _fields(_message(x, "label"))}
                key = s(lf.get(1, 0))
                if lf.get(2):
                    labels[key] = s(lf[2])
                else:
                    num_labels[key] = _int64(lf.get(3, 0))
        if len(values) != len(sample_types):
            raise ProfileError(f"a sample has {len(values)} values for {len(sample_types)} types")
        try:
            locs = tuple(locations[i] for i in loc_ids)
        except KeyError as e:
            raise ProfileError(f"a sample names unknown location {e}") from None
        samples.append(Sample(locs, tuple(values), labels, num_labels))

    period_type = value_type(_message(raw[11][-1][1], "period_type")) if raw.get(11) else None
    default = scalar(14)
    comments = tuple(s(c) for w, v in raw.get(13, []) for c in _repeated(w, v))
    return Profile(
        sample_types=sample_types,
        samples=tuple(samples),
        locations=locations,
        functions=functions,
        mappings=mappings,
        period_type=period_type,
        period=scalar(12),
        time_nanos=scalar(9),
        duration_nanos=scalar(10),
        default_sample_type=s(default) if default else "",
        comments=comments,
        drop_frames=s(scalar(7)),
        keep_frames=s(scalar(8)),
    )


def load(path: str | Path) -> Profile:
    return parse(Path(path).read_bytes())


# -- what `go tool pprof -top` shows ------------------------------------------------------------


@dataclass(frozen=True)
class FunctionStat:
    name: str
    flat: int
    cum: int


def function_stats(profile: Profile, sample_type: str = DEFAULT_SAMPLE_TYPE) -> list[FunctionStat]:
    """Flat and cumulative value per function name, largest flat first (then cum, name)."""
    i = profile.sample_index(sample_type)
    flat: dict[str, int] = defaultdict(int)
    cum: dict[str, int] = defaultdict(int)
    for sample in profile.samples:
        v = sample.values[i]
        frames = sample.frames
        if not frames:
            continue
        flat[frames[0].function] += v
        for name in {f.function for f in frames}:
            cum[name] += v
    stats = [FunctionStat(name, flat.get(name, 0), c) for name, c in cum.items()]
    stats.sort(key=lambda st: (-st.flat, -st.cum, st.name))
    return stats


def short_name(function: str) -> str:
    """A function name for people: without the vendor path a GOPATH build puts in front
    ("k8s.io/kubernetes/vendor/k8s.io/client-go/..." reads "k8s.io/client-go/...")."""
    cut = function.rfind("/vendor/")
    return function[cut + len("/vendor/") :] if cut >= 0 else function


def package(function: str) -> str:
    """The Go package of a function name: "encoding/json" for
    "encoding/json.(*decodeState).object", "main" for "main.main"."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function[:dot] if dot > 0 else function


def trim(
    frames: tuple[Frame, ...], depth: int = 5, *, fold_packages: bool = True
) -> tuple[tuple[Frame, ...], str]:
    """The frames that say where an allocation came from, leaf to root, at most `depth`;
    and the runtime allocator trimmed off the leaf end ("" if none).

    With `fold_packages`, a run of consecutive frames in one package keeps only its leaf-most
    frame, so a few frames reach from the allocation to the code that asked for it
    (encoding/json's decoder, then apimachinery's, then the informer's reflector).

    Runtime frames go from both ends; a stack that is all runtime (goroutine stacks, the
    scheduler's own) is kept, minus runtime.goexit and runtime.main. Recursion is collapsed
    (see `_collapse`).
    """
    start = 0
    while start < len(frames) and _RUNTIME.match(frames[start].function):
        start += 1
    end = len(frames)
    while end > start and _RUNTIME.match(frames[end - 1].function):
        end -= 1
    allocator = frames[start - 1].function if start else ""
    if start == end:  # nothing but runtime: keep it whole, minus the roots
        kept, allocator = tuple(f for f in frames if f.function not in _ROOTS) or frames, ""
    else:
        kept = frames[start:end]
    kept = _collapse(kept)
    if fold_packages:
        kept = tuple(
            f
            for i, f in enumerate(kept)
            if i == 0 or package(f.function) != package(kept[i - 1].function)
        )
    return kept[:depth], allocator


def _collapse(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """Recursion collapsed: each function once, where it is nearest the leaf. A recursive
    decoder (encoding/json's valueInterface -> objectInterface -> valueInterface ...) would
    otherwise fill a short stack with itself and split one site by nesting depth."""
    seen: set[str] = set()
    out: list[Frame] = []
    for f in frames:
        if f.function not in seen:
            seen.add(f.function)
            out.append(f)
    return tuple(out)


@dataclass(frozen=True)
class Site:
    """One allocation site: its short stack (leaf first) and what it holds: the sum over the
    samples whose trimmed stacks name the same functions."""

    frames: tuple[Frame, ...]
    allocator: str  # e.g. "runtime.makemap": the runtime frame trimmed off the leaf end
    value: int  # of the sample type asked for
    samples: int

    @property
    def function(self) -> str:
        return self.frames[0].function if self.frames else "?"


#: allocator, function names leaf to root
SiteKey = tuple[str, tuple[str, ...]]


def _sites(
    profile: Profile, sample_type: str, depth: int, fold_packages: bool
) -> dict[SiteKey, Site]:
    """Samples grouped by site: the trimmed stack's function names (not their lines, so one
    site is one line of a report) and the allocator. A site's frames are its first sample's."""
    i = profile.sample_index(sample_type)
    acc: dict[SiteKey, Site] = {}
    for sample in profile.samples:
        frames, allocator = trim(sample.frames, depth, fold_packages=fold_packages)
        key = (allocator, tuple(f.function for f in frames))
        old = acc.get(key) or Site(frames, allocator, 0, 0)
        acc[key] = Site(old.frames, allocator, old.value + sample.values[i], old.samples + 1)
    return acc


def top_sites(
    profile: Profile,
    sample_type: str = DEFAULT_SAMPLE_TYPE,
    *,
    limit: int = 10,
    depth: int = 5,
    fold_packages: bool = True,
) -> list[Site]:
    """The `limit` sites holding the most of `sample_type`, largest first (see `trim`)."""
    sites = [s for s in _sites(profile, sample_type, depth, fold_packages).values() if s.value]
    sites.sort(key=lambda s: (-s.value, [str(f) for f in s.frames]))
    return sites[:limit]


@dataclass(frozen=True)
class SiteGrowth:
    frames: tuple[Frame, ...]
    allocator: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def function(self) -> str:
        return self.frames[0].function if self.frames else "?"


def growth(
    first: Profile,
    last: Profile,
    sample_type: str = DEFAULT_SAMPLE_TYPE,
    *,
    limit: int = 10,
    depth: int = 5,
    fold_packages: bool = True,
) -> list[SiteGrowth]:
    """Sites by how much more of `sample_type` they hold in `last` than in `first`,
    largest growth first (sites that shrank come last, if `limit` reaches them)."""
    a = _sites(first, sample_type, depth, fold_packages)
    b = _sites(last, sample_type, depth, fold_packages)
    out: list[SiteGrowth] = []
    for key in a.keys() | b.keys():
        site = b.get(key) or a[key]
        before = a[key].value if key in a else 0
        after = b[key].value if key in b else 0
        if before or after:
            out.append(SiteGrowth(site.frames, site.allocator, before, after))
    out.sort(key=lambda g: (-g.delta, [str(f) for f in g.frames]))
    return out[:limit]
