"""Run any Python entrypoint under memray's Tracker, without the program's help.

triage ships this file into the operator's pod (a ConfigMap) and puts it in front of the
container's own command, run by the container's own interpreter:

    python /triage/memray_launch.py [OPTIONS] -- <the container's original argv...>

Why not `python -m memray run`: that command loads memray's live-view UI into the profiled
process: bench/memray_modes.py measures 28.4 MiB of anonymous memory at start against
5.6 MiB without memray, and that memory is the figure triage measures. This launcher adds
4.5 MiB (1.6 MiB of it compiling this file and runpy's imports, the rest memray's extension
and Tracker): it imports memray without its terminal-progress dependency (deferred until
something asks for it, which the Tracker never does) and runs the entrypoint with runpy,
the way Python would have run it: same sys.argv, same sys.path[0], same `__main__`, same
exit status.

It must stay standalone (stdlib + memray, no triage or operator imports): it runs inside an
image triage knows nothing about.

What the original argv may be (an interpreter, with its options, may come first):
  script.py ARGS                  -> runpy.run_path, sys.path[0] = the script's real dir
  -m pkg.mod ARGS                 -> runpy.run_module, sys.path[0] = the working directory
  -c CODE ARGS                    -> exec in a fresh __main__, sys.path[0] = ''
  my-operator ARGS / /venv/bin/x  -> a console script (pip/setuptools wrapper): found on
                                     PATH like a shell would, run as a script with argv[0]
                                     the path the kernel would have passed it
If the entrypoint belongs to another interpreter (the interpreter named first, or a console
script's shebang) or asks for interpreter options (-u, -X dev, ...), the launcher re-execs
itself once under that interpreter with those options, so the target runs exactly where it
would have run (same venv, same flags, same PID, which matters when it is PID 1).

Signals: the launcher installs no handler. The program's own SIGTERM/SIGINT handlers work
as before; a program killed by a signal (or by the OOM killer) leaves a capture that is cut
off at its last record, which memray reads back (the records are written through a shared
mmap, so nothing is lost in a user-space buffer when the process dies).

Defaults, and why: follow_fork off, because a program that runs helpers (fork + exec of
kubectl, git) would leave a capture per helper in the size-limited emptyDir; turn it on for
an operator that forks workers (multiprocessing "fork"): they share its cgroup, and their
captures are written next to the parent's as `<capture>.<pid>`. compress off, because
compressing at exit writes a second copy of the capture (disk the emptyDir must hold) and
delays shutdown towards the grace period, while a killed process never compresses anyway.
"""

from __future__ import annotations

import os
import sys
import time

# Not `import typing`: in an image whose program does not use it, it costs ~0.45 MiB.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

ENV = "TRIAGE_MEMRAY_"
#: Set on the one re-exec under the target's interpreter, so it cannot loop.
REEXEC_ENV = ENV + "REEXEC"
DEFAULT_DIR = "/profiles"
DEFAULT_PREFIX = "memray"
#: Trace every pymalloc allocation (see bench/memray_modes.py for the measurement that chose
#: this): without it the capture sees 1 MiB arenas, not the objects that fill them.
DEFAULT_TRACE_PYTHON_ALLOCATORS = True
#: memray's own default. The RSS records it paces cost ~0.9 KB/s of capture (measured); they
#: give the parser the process's RSS at its last moment, next to the heap.
DEFAULT_MEMORY_INTERVAL_MS = 10

USAGE = """\
usage: memray_launch.py [OPTIONS] -- [PYTHON [PYOPTS]] (SCRIPT | -m MODULE | -c CODE | COMMAND) [ARGS...]

Options (each also read from the environment; a flag wins over the environment):
  --output-dir DIR              TRIAGE_MEMRAY_DIR                       (default /profiles)
  --prefix NAME                 TRIAGE_MEMRAY_PREFIX                    (default memray)
  --trace-python-allocators     TRIAGE_MEMRAY_TRACE_PYTHON_ALLOCATORS=1 (default on)
  --no-trace-python-allocators  TRIAGE_MEMRAY_TRACE_PYTHON_ALLOCATORS=0
  --native                      TRIAGE_MEMRAY_NATIVE=1                  (default off)
  --follow-fork                 TRIAGE_MEMRAY_FOLLOW_FORK=1             (default off)
  --memory-interval-ms N        TRIAGE_MEMRAY_MEMORY_INTERVAL_MS        (default 10)
  --compress                    TRIAGE_MEMRAY_COMPRESS=1                (default off)
  --memray-site DIR             TRIAGE_MEMRAY_SITE   where to import memray from when the
                                target's interpreter lacks it (`pip install --target DIR memray`)
  --off                         TRIAGE_MEMRAY_OFF=1  run the target the same way, no memray
The capture is DIR/PREFIX-<UTC yyyymmddTHHMMSS.ffffff>Z-<pid>.bin, new at every start.
"""

_FLAG_ENV = {
    "--trace-python-allocators": ("trace_python_allocators", True),
    "--no-trace-python-allocators": ("trace_python_allocators", False),
    "--native": ("native", True),
    "--follow-fork": ("follow_fork", True),
    "--compress": ("compress", True),
    "--off": ("off", True),
}
_VALUE_OPTS = {
    "--output-dir": "output_dir",
    "--prefix": "prefix",
    "--memory-interval-ms": "memory_interval_ms",
    "--memray-site": "memray_site",
}
#: CPython options that take a value (`-X dev`, `-W error`, ...); every other option is a
#: cluster of single-letter flags (`-u`, `-OO`, `-Esu`).
_PY_VALUE_OPTS = ("-X", "-W", "--check-hash-based-pycs")
_PY_FLAGS = set("bBdEhiIOPqsSuvVx")


class UsageError(Exception):
    """The launcher's own arguments are wrong; exit 2 like Python's own CLI."""


class Options:
    """What to capture and where (plain class: dataclasses would import inspect, ~1 MiB)."""

    __slots__ = (
        "compress",
        "follow_fork",
        "memory_interval_ms",
        "memray_site",
        "native",
        "off",
        "output_dir",
        "prefix",
        "trace_python_allocators",
    )

    def __init__(self, env: dict[str, str] | os._Environ[str]) -> None:
        self.output_dir = env.get(ENV + "DIR") or DEFAULT_DIR
        self.prefix = env.get(ENV + "PREFIX") or DEFAULT_PREFIX
        self.trace_python_allocators = _env_flag(
            env, "TRACE_PYTHON_ALLOCATORS", DEFAULT_TRACE_PYTHON_ALLOCATORS
        )
        self.native = _env_flag(env, "NATIVE", False)
        self.follow_fork = _env_flag(env, "FOLLOW_FORK", False)
        self.compress = _env_flag(env, "COMPRESS", False)
        self.off = _env_flag(env, "OFF", False)
        self.memray_site = env.get(ENV + "SITE") or ""
        self.memory_interval_ms = _positive_int(
            env.get(ENV + "MEMORY_INTERVAL_MS") or str(DEFAULT_MEMORY_INTERVAL_MS),
            "TRIAGE_MEMRAY_MEMORY_INTERVAL_MS",
        )


def _env_flag(env: dict[str, str] | os._Environ[str], name: str, default: bool) -> bool:
    raw = env.get(ENV + name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{ENV}{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def _positive_int(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{what}: expected a positive integer, got {raw!r}")
    return value


def parse_args(
    argv: list[str], env: dict[str, str] | os._Environ[str]
) -> tuple[Options, list[str], list[str]]:
    """(options, the launcher's own option tokens, the target's argv) from our argv."""
    opts = Options(env)
    if "--" not in argv:
        raise UsageError("missing `--` before the program to run")
    split = argv.index("--")
    own, target = argv[:split], argv[split + 1 :]
    i = 0
    while i < len(own):
        tok = own[i]
        name, eq, value = tok.partition("=")
        if tok in _FLAG_ENV:
            attr, flag = _FLAG_ENV[tok]
            setattr(opts, attr, flag)
        elif name in _VALUE_OPTS:
            if not eq:
                if i + 1 >= len(own):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = own[i]
            if name == "--memory-interval-ms":
                opts.memory_interval_ms = _positive_int(value, name)
            else:
                setattr(opts, _VALUE_OPTS[name], value)
        elif tok in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        else:
            raise UsageError(f"unknown option {tok!r}")
        i += 1
    if not target:
        raise UsageError("no program to run after `--`")
    return opts, own, target


# -- the capture file -----------------------------------------------------------------------


def capture_name(prefix: str, *, now_ns: int, pid: int) -> str:
    """`PREFIX-<UTC to the microsecond>Z-<pid>.bin`: sorts by start time as a plain string.

    The pid alone is useless in a container (the entrypoint is PID 1 at every start) and a
    second-resolution time repeats when a crash-looping pod restarts fast; microseconds plus
    O_EXCL (memray refuses an existing file) plus a bump on collision make it unique.
    """
    secs, ns = divmod(now_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(secs))
    return f"{prefix}-{stamp}.{ns // 1000:06d}Z-{pid}.bin"


def _defer_rich() -> list[str]:
    """Let `import memray` bind to stand-ins for the `rich` names its extension imports.

    memray's extension module imports rich.progress at import time, only to draw progress
    bars when a capture is read back; in the profiled process that is ~2.5 MiB of anonymous
    memory for nothing. The stand-ins import the real rich the first time they are used, and
    they leave sys.modules as soon as memray is imported, so the target gets the real rich.
    """
    import types
    from importlib import import_module

    class Deferred:
        def __init__(self, module: str, name: str) -> None:
            self._where = (module, name)

        def _real(self) -> Any:
            return getattr(import_module(self._where[0]), self._where[1])

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._real()(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real(), name)

    class StandIn(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return Deferred(self.__name__, name)

    placed = [n for n in ("rich", "rich.progress") if n not in sys.modules]
    for name in placed:
        sys.modules[name] = StandIn(name)
    return placed


def import_memray(*, defer_rich: bool = True) -> Any:
    placed = _defer_rich() if defer_rich else []
    try:
        import memray
    except ImportError:
        raise
    except Exception:
        # A memray that uses rich differently at import: forget the half-import, do it plainly.
        for name in [
            *placed,
            *(m for m in sys.modules if m == "memray" or m.startswith("memray.")),
        ]:
            sys.modules.pop(name, None)
        placed = []
        import memray
    finally:
        for name in placed:
            sys.modules.pop(name, None)
    return memray


def start_tracker(memray: Any, opts: Options, *, pid: int | None = None) -> tuple[Any, str]:
    """An entered Tracker writing to a new, unique capture file, and that file's path."""
    os.makedirs(opts.output_dir, exist_ok=True)
    pid = os.getpid() if pid is None else pid
    now_ns = time.time_ns()
    for bump in range(1000):
        path = os.path.join(
            opts.output_dir, capture_name(opts.prefix, now_ns=now_ns + bump * 1000, pid=pid)
        )
        if os.path.lexists(path):
            continue
        dest = memray.FileDestination(path, overwrite=False, compress_on_exit=opts.compress)
        try:
            tracker = memray.Tracker(
                destination=dest,
                native_traces=opts.native,
                trace_python_allocators=opts.trace_python_allocators,
                follow_fork=opts.follow_fork,
                memory_interval_ms=opts.memory_interval_ms,
            )
        except OSError:
            if os.path.lexists(path):  # lost a race for that name: take the next one
                continue
            raise
        tracker.__enter__()
        return tracker, path
    raise OSError(f"no free capture name in {opts.output_dir}")


# -- the target -------------------------------------------------------------------------------


class Target:
    """How to run the original argv: kind is "path", "module" or "code"."""

    __slots__ = ("args", "interpreter", "kind", "pyopts", "value")

    def __init__(
        self,
        kind: str,
        value: str,
        args: list[str],
        *,
        interpreter: str | None = None,
        pyopts: list[str] | None = None,
    ) -> None:
        self.kind, self.value, self.args = kind, value, args
        self.interpreter = interpreter
        self.pyopts = pyopts or []

    def rest(self) -> list[str]:
        """The argv after the interpreter and its options (what the launcher is re-run with)."""
        head = {"module": ["-m"], "code": ["-c"], "path": []}[self.kind]
        return [*head, self.value, *self.args]


def _is_interpreter(token: str) -> bool:
    base = os.path.basename(token)
    if not base.startswith("python"):
        return False
    tail = base[len("python") :]
    return all(part.isdigit() for part in tail.split(".")) if tail else True


def _which(name: str, env: dict[str, str] | os._Environ[str]) -> str | None:
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _split_pyopts(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(interpreter options, the rest) of what follows an interpreter on a command line."""
    opts: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-m", "-c") or not tok.startswith("-") or tok == "-":
            break
        if tok == "--":
            return opts, tokens[i + 1 :]
        if tok in _PY_VALUE_OPTS:
            if i + 1 >= len(tokens):
                raise UsageError(f"interpreter option {tok} needs a value")
            opts += tokens[i : i + 2]
            i += 2
            continue
        if tok[:2] in _PY_VALUE_OPTS or (not tok.startswith("--") and set(tok[1:]) <= _PY_FLAGS):
            opts.append(tok)
            i += 1
            continue
        raise UsageError(f"unsupported interpreter option {tok!r}")
    return opts, tokens[i:]


def _shebang(path: str) -> str | None:
    """The Python interpreter a script asks for, None for a non-Python file.

    pip writes `#!/venv/bin/python`; for paths too long for a shebang it writes a /bin/sh
    trampoline whose second line is `'''exec' "/venv/bin/python" "$0" "$@"`.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    if head.startswith(b"\x7fELF"):
        return None
    lines = head.split(b"\n")
    if not lines[0].startswith(b"#!"):
        return ""  # no shebang: a script for whoever runs it (ours)
    words = lines[0][2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    if words and _is_interpreter(words[0]):
        return words[0]
    if words and os.path.basename(words[0]) == "sh" and len(lines) > 1:
        line = lines[1].decode("utf-8", "replace")
        if line.startswith("'''exec' "):
            exe = line[len("'''exec' ") :].split('" ', 1)[0].strip('"')
            if _is_interpreter(exe):
                return exe
    return None


def resolve_target(argv: list[str], env: dict[str, str] | os._Environ[str]) -> Target:
    interpreter: str | None = None
    pyopts: list[str] = []
    rest = argv
    if _is_interpreter(argv[0]):
        interpreter = argv[0] if "/" in argv[0] else _which(argv[0], env)
        if interpreter is None:
            raise UsageError(f"{argv[0]}: not found on PATH")
        pyopts, rest = _split_pyopts(argv[1:])
        if not rest:
            raise UsageError("an interactive interpreter cannot be profiled; name a program")
    head = rest[0]
    if head in ("-m", "-c"):
        if len(rest) < 2:
            raise UsageError(f"{head} needs an argument")
        kind = "module" if head == "-m" else "code"
        return Target(kind, rest[1], rest[2:], interpreter=interpreter, pyopts=pyopts)
    path = head
    if interpreter is None and "/" not in head:
        # A command, resolved the way a shell would; `x.py` in the working directory is a
        # script named relative to it, as `python x.py` would have it.
        found = None if head.endswith(".py") and os.path.isfile(head) else _which(head, env)
        path = found or head
    if not os.path.isfile(path):
        raise UsageError(f"{head}: no such file or command")
    if interpreter is None:
        wanted = _shebang(path)
        if wanted is None:
            raise UsageError(
                f"{path} is not a Python program; give the Python command it ends up running"
            )
        if wanted:
            interpreter = wanted if "/" in wanted else _which(wanted, env)
    return Target("path", path, rest[1:], interpreter=interpreter, pyopts=pyopts)


def _reexec_argv(target: Target, own: list[str]) -> list[str] | None:
    """The argv to re-exec under the target's interpreter, None to run here."""
    if os.environ.get(REEXEC_ENV):
        return None
    exe = target.interpreter
    other = exe is not None and os.path.abspath(exe) != os.path.abspath(sys.executable)
    if not other and not target.pyopts:
        return None
    exe = exe if other and exe is not None else sys.executable
    return [exe, *target.pyopts, os.path.abspath(__file__), *own, "--", *target.rest()]


def run_target(target: Target) -> None:
    """Run the target in this interpreter as Python would have (argv, path[0], __main__)."""
    import runpy

    # Python put the launcher's directory first; the target expects its own there.
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] == here:
        del sys.path[0]
    safe_path = bool(getattr(sys.flags, "safe_path", False) or sys.flags.isolated)
    if target.kind == "module":
        sys.argv = ["-m", *target.args]  # run_module puts the module's file in argv[0]
        if not safe_path:
            sys.path.insert(0, os.getcwd())
        runpy.run_module(target.value, run_name="__main__", alter_sys=True)
    elif target.kind == "code":
        import types

        sys.argv = ["-c", *target.args]
        if not safe_path:
            sys.path.insert(0, "")
        main = types.ModuleType("__main__")
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = main
        try:
            exec(compile(target.value, "<string>", "exec"), main.__dict__)  # noqa: S102
        finally:
            sys.modules["__main__"] = saved
    else:
        sys.argv = [target.value, *target.args]
        if not safe_path:
            sys.path.insert(0, os.path.dirname(os.path.realpath(target.value)))
        runpy.run_path(target.value, run_name="__main__")


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"memray_launch: {message}\n")
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Run the target; its exit status is the process's (SystemExit and exceptions pass through)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, own, target_argv = parse_args(argv, os.environ)
        target = resolve_target(target_argv, os.environ)
    except UsageError as e:
        _fail(str(e))
    new_argv = _reexec_argv(target, own)
    if new_argv is not None:
        os.environ[REEXEC_ENV] = "1"
        try:
            os.execv(new_argv[0], new_argv)  # noqa: S606 (the same process, no shell)
        except OSError as e:
            _fail(f"cannot run {new_argv[0]}: {e.strerror}")
    os.environ.pop(REEXEC_ENV, None)
    # What the program would have seen in sys.orig_argv had it been started directly.
    sys.orig_argv = [target.interpreter or sys.executable, *target.pyopts, *target.rest()]
    if opts.off:
        run_target(target)
        return
    # memray records " ".join(sys.argv) as the capture's command line when the Tracker is
    # made: show the program's, not ours.
    sys.argv = target.rest()
    if opts.memray_site:
        # Last on sys.path, so none of the target's own packages is shadowed, and only while
        # memray is imported and its Tracker made.
        sys.path.append(opts.memray_site)
    try:
        memray = import_memray(defer_rich=_env_flag(os.environ, "DEFER_RICH", True))
        tracker, path = start_tracker(memray, opts)
    except ImportError as e:
        _fail(f"memray cannot be imported by {sys.executable} ({e}); see --memray-site")
    except Exception as e:
        _fail(f"cannot start memray in {opts.output_dir}: {e}")
    finally:
        if opts.memray_site and opts.memray_site in sys.path:
            sys.path.remove(opts.memray_site)
    sys.stderr.write(
        f"memray_launch: capturing to {path} (trace_python_allocators="
        f"{int(opts.trace_python_allocators)}, native={int(opts.native)})\n"
    )
    try:
        run_target(target)
    finally:
        tracker.__exit__(None, None, None)


if __name__ == "__main__":
    main()
