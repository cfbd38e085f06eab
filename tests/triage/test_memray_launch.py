"""The launcher runs any Python entrypoint under memray as Python would have run it.

Every test starts real processes (the launcher, the target, memray's Tracker): what is
checked is what the target saw (argv, sys.path[0], __name__) and what its parent saw (exit
status), and that a capture was written, once per start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.triage.launcher import LAUNCHER, launcher_argv, until_ready
from triage import memray_launch
from triage.memray_capture import parse_capture_isolated

pytestmark = [pytest.mark.unit]

#: Reports what it saw as JSON on stdout, then exits with the status in argv[1].
PROBE = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "exe": sys.executable, "dev": sys.flags.dev_mode,
                  "rich": sorted(m for m in sys.modules if m.split(".")[0] == "rich")}))
sys.stdout.flush()
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def launch(
    *target: str,
    out: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    opts: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        launcher_argv(out, *target, opts=opts),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def seen(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def captures(out: Path) -> list[Path]:
    return sorted(out.glob("memray-*.bin"))


def test_script_argv_path0_exit_status_and_one_capture(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    script = tmp_path / "app" / "probe.py"
    script.write_text(PROBE)
    out = tmp_path / "out"
    proc = launch("app/probe.py", "3", "--flag", out=out, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    s = seen(proc)
    assert s["argv"] == ["app/probe.py", "3", "--flag"]
    assert s["path0"] == str(script.parent)  # not the launcher's directory
    assert s["name"] == "__main__"
    assert s["rich"] == []  # memray's progress-bar dependency was not loaded into the target
    [cap] = captures(out)
    doc = parse_capture_isolated(cap)
    assert doc["heap_bytes"] >= 0 and doc["command_line"].startswith("app/probe.py 3")


def test_module_with_explicit_interpreter_and_its_options(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PROBE)
    out = tmp_path / "out"
    proc = launch(sys.executable, "-X", "dev", "-m", "mypkg", "5", "x", out=out, cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    s = seen(proc)
    assert s["argv"] == [str(pkg / "__main__.py"), "5", "x"]
    assert s["path0"] == str(tmp_path)  # -m puts the working directory first
    assert s["dev"] is True  # the interpreter option reached the interpreter (re-exec)
    assert len(captures(out)) == 1


def test_dash_c_and_uncaught_exception_status(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = "import sys; print(sys.argv); raise RuntimeError('boom')"
    proc = launch("-c", code, "a", out=out, cwd=tmp_path)
    assert proc.returncode == 1
    assert "['-c', 'a']" in proc.stdout
    assert "RuntimeError: boom" in proc.stderr
    proc = launch("-c", "raise SystemExit('bye')", out=out, cwd=tmp_path)
    assert proc.returncode == 1 and "bye" in proc.stderr


def _console_script(bin_dir: Path, executable: str, name: str, entry: str) -> Path:
    """The wrapper pip writes for a console_scripts entry point (pip's own ScriptMaker)."""
    from pip._vendor.distlib.scripts import ScriptMaker

    bin_dir.mkdir(parents=True, exist_ok=True)
    maker = ScriptMaker(None, str(bin_dir), add_launchers=False)
    maker.executable = executable
    maker.variants = {""}
    [made] = maker.make(f"{name} = {entry}")
    return Path(made)


def test_console_script_on_path(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "myop").mkdir(parents=True)
    (lib / "myop" / "__init__.py").write_text("")
    (lib / "myop" / "cli.py").write_text(
        "import sys, json\n"
        "def main():\n"
        "    print(json.dumps({'argv': sys.argv, 'path0': sys.path[0]}))\n"
        "    return int(sys.argv[1])\n"
    )
    script = _console_script(tmp_path / "bin", sys.executable, "my-operator", "myop.cli:main")
    assert script.read_text().startswith(f"#!{sys.executable}")
    env = {"PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(lib)}
    out = tmp_path / "out"
    proc = launch("my-operator", "7", "--watch", out=out, cwd=tmp_path, env=env)
    assert proc.returncode == 7, proc.stderr
    s = seen(proc)
    # What a shell's PATH lookup hands the kernel, and pip's wrapper then sees.
    assert s["argv"] == [str(script), "7", "--watch"]
    assert s["path0"] == str(script.parent)
    assert len(captures(out)) == 1


@pytest.mark.slow
def test_console_script_of_another_venv_with_memray_site(tmp_path: Path) -> None:
    """An image's own venv without memray: re-exec under its python, memray from a side dir."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site_dir = next((venv / "lib").glob("python3*/site-packages"))
    (site_dir / "op_pkg.py").write_text(
        "import sys, json\n"
        "def main():\n"
        "    print(json.dumps({'argv': sys.argv, 'exe': sys.executable}))\n"
        "    return 4\n"
    )
    script = _console_script(venv / "bin", str(vpy), "op-run", "op_pkg:main")
    # What `pip install --target DIR memray` leaves: memray and what it imports at start.
    side = tmp_path / "memray-site"
    side.mkdir()
    import memray
    import typing_extensions

    (side / "memray").symlink_to(Path(memray.__file__).parent)
    (side / "typing_extensions.py").symlink_to(Path(typing_extensions.__file__))
    out = tmp_path / "out"
    proc = launch(str(script), "x", out=out, cwd=tmp_path, opts=("--memray-site", str(side)))
    assert proc.returncode == 4, proc.stderr
    s = seen(proc)
    assert s["exe"] == str(vpy) and s["argv"] == [str(script), "x"]
    assert len(captures(out)) == 1
    # Without it, the launcher says why instead of running the program unprofiled.
    proc = launch(str(script), "x", out=out, cwd=tmp_path)
    assert proc.returncode == 2 and "memray cannot be imported" in proc.stderr


def test_sigterm_reaches_the_programs_own_handler(tmp_path: Path) -> None:
    target = tmp_path / "graceful.py"
    target.write_text(
        textwrap.dedent(
            """
            import signal, sys, time
            stop = []
            signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
            keep = [str(i) * 10 for i in range(10000)]
            print("ready", flush=True)
            while not stop:
                time.sleep(0.01)
            print("graceful", flush=True)
            sys.exit(0)
            """
        )
    )
    out = tmp_path / "out"
    with until_ready(out, str(target), stderr=subprocess.PIPE) as proc:
        os.kill(proc.pid, signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "graceful" in stdout
    [cap] = captures(out)
    doc = parse_capture_isolated(cap)
    assert doc["finished"] is True and doc["truncated"] is False


def test_keyboard_interrupt_ends_the_process_as_python_would(tmp_path: Path) -> None:
    target = tmp_path / "interrupted.py"
    target.write_text("raise KeyboardInterrupt\n")
    plain = subprocess.run([sys.executable, str(target)], capture_output=True, check=False)
    launched = launch(str(target), out=tmp_path / "out", cwd=tmp_path)
    assert launched.returncode == plain.returncode != 0


def test_capture_names_are_unique_for_two_starts_in_the_same_microsecond(tmp_path: Path) -> None:
    # PID 1 at every container start, and the same clock reading: only the bump separates them.
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(LAUNCHER.parent)!r})
        import memray_launch as ml
        time.time_ns = lambda: 1_778_300_000_123_456_000
        opts = ml.Options({{"TRIAGE_MEMRAY_DIR": {str(tmp_path / "out")!r}}})
        memray = ml.import_memray()
        for _ in range(2):
            tracker, path = ml.start_tracker(memray, opts, pid=1)
            tracker.__exit__(None, None, None)
            print(path)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    first, second = (Path(p).name for p in proc.stdout.split())
    assert first == "memray-20260509T041320.123456Z-1.bin"
    assert second == "memray-20260509T041320.123457Z-1.bin"
    assert sorted([second, first]) == [first, second]  # still in start order as strings


def test_two_launches_in_the_same_second_write_two_captures(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("pass\n")
    out = tmp_path / "out"
    t0 = time.time()
    for _ in range(2):
        assert launch("p.py", out=out, cwd=tmp_path).returncode == 0
    assert len(captures(out)) == 2, f"{time.time() - t0:.1f}s"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for target, message in (
        (("missing.py",), "no such file"),
        (("/bin/true",), "not a Python program"),
    ):
        proc = launch(*target, out=tmp_path / "out", cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER), "p.py"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "missing `--`" in proc.stderr


def test_options_from_env_and_flags() -> None:
    env = {
        "TRIAGE_MEMRAY_DIR": "/x",
        "TRIAGE_MEMRAY_NATIVE": "1",
        "TRIAGE_MEMRAY_FOLLOW_FORK": "yes",
    }
    opts, own, target = memray_launch.parse_args(
        ["--no-trace-python-allocators", "--memory-interval-ms=50", "--", "op.py", "--native"],
        env,
    )
    assert (opts.output_dir, opts.native, opts.follow_fork) == ("/x", True, True)
    assert opts.trace_python_allocators is False and opts.memory_interval_ms == 50
    assert own == ["--no-trace-python-allocators", "--memory-interval-ms=50"]
    assert target == ["op.py", "--native"]  # the program's own flags stay the program's
    with pytest.raises(memray_launch.UsageError):
        memray_launch.parse_args(["--", "x"], {"TRIAGE_MEMRAY_NATIVE": "maybe"})


def test_shebang_forms(tmp_path: Path) -> None:
    plain = tmp_path / "a"
    plain.write_text("#!/venv/bin/python3.11\nimport x\n")
    env_form = tmp_path / "b"
    env_form.write_text("#!/usr/bin/env python3\n")
    trampoline = tmp_path / "c"
    trampoline.write_text(
        "#!/bin/sh\n'''exec' \"/very/long/venv/bin/python\" \"$0\" \"$@\"\n' '''\n"
    )
    shell = tmp_path / "d"
    shell.write_text("#!/bin/sh\nexec python x\n")
    assert memray_launch._shebang(str(plain)) == "/venv/bin/python3.11"
    assert memray_launch._shebang(str(env_form)) == "python3"
    assert memray_launch._shebang(str(trampoline)) == "/very/long/venv/bin/python"
    assert memray_launch._shebang(str(shell)) is None
