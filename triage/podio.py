"""Reaching into the operator's pod: exec and port-forward, through the apiserver only.

Never by dialling the pod: on the local node pods share the host's network, on remote
clusters pod IPs are not routable from a laptop, and an endpoint bound to the pod's loopback
(what a pprof server should be) is reachable only through a port-forward. Both go through
`kubectl` with the run's exact kubeconfig and context, started as child processes whose
PIDs this module holds and stops.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from triage.cluster import Cluster

_FORWARDING = re.compile(rb"Forwarding from 127\.0\.0\.1:(\d+) ->")
#: What kubectl/the runtime say when the image has no such program.
_NO_PROGRAM = ("executable file not found", "no such file or directory", "not found in $PATH")


def _dies_with_parent(argv: list[str]) -> list[str]:
    """`argv` under `setpriv --pdeathsig TERM` where there is one (Linux): the child gets
    SIGTERM when triage dies, even by kill -9.

    A port-forward outliving a killed run would hold a port and a connection to the
    cluster with no one left who knows its PID. (Not preexec_fn: unsafe with threads.)
    The signal follows the *thread* that started the child: forwards are started from the
    main thread or a profiler's worker, both of which outlive them.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def no_such_program(self) -> bool:
        """The image lacks the program (a distroless image has no `cat`)."""
        err = self.stderr.decode("utf-8", "replace").lower()
        return self.returncode != 0 and any(s in err for s in _NO_PROGRAM)

    def error(self, limit: int = 300) -> str:
        text = self.stderr.decode("utf-8", "replace").strip() or f"exit {self.returncode}"
        return text[:limit]


def exec_in(
    cluster: Cluster,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    timeout: float = 60,
) -> ExecResult:
    """Run `argv` in the container; a timeout is a failed result, not an exception."""
    try:
        proc = subprocess.run(
            [*cluster.kubectl(), "-n", namespace, "exec", pod, "-c", container, "--", *argv],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return ExecResult(124, e.stdout or b"", b"timed out after %.0fs" % timeout)
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)


def exec_to_file(
    cluster: Cluster,
    *,
    namespace: str,
    pod: str,
    container: str,
    argv: list[str],
    out: Path,
    timeout: float = 600,
) -> ExecResult:
    """Run `argv` in the container with its stdout written straight to `out`.

    For copying files out (a memray capture can be half a gigabyte): nothing of it is held
    in memory, and the file is written as the bytes arrive. `stdout` of the result is empty.
    """
    with out.open("wb") as f:
        try:
            proc = subprocess.run(
                [*cluster.kubectl(), "-n", namespace, "exec", pod, "-c", container, "--", *argv],
                stdout=f,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ExecResult(124, b"", b"timed out after %.0fs" % timeout)
    return ExecResult(proc.returncode, b"", proc.stderr)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child we started (its PID), SIGKILL if it lingers; then its pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


class ExecStream:
    """One `kubectl exec -i` kept open: a shell in the container that answers each request
    line with the contents of `files`, then END.

    A one-shot exec costs about 0.1 s of CPU on a 2-core node (kubectl starting, the
    apiserver and kubelet setting up the stream, the runtime entering the container) and
    that CPU is taken from the operator being measured. Read four times a second, that was a
    quarter of a core. Here a reading costs the shell a few builtins and the stream a few
    hundred bytes. The shell is one small process in the container for the whole run: its
    memory is in every reading alike (baseline included), as a one-shot `cat` is in its own.
    """

    END = b"@@triage-end@@"
    #: Builtins only (no process per reading); the last line of a file may lack its newline.
    _SCRIPT = (
        'while read -r _; do for f in "$@"; do [ -r "$f" ] && '
        'while read -r l || [ -n "$l" ]; do echo "$l"; done < "$f"; done; '
        "echo @@triage-end@@; done"
    )

    def __init__(
        self, cluster: Cluster, *, namespace: str, pod: str, container: str, files: list[str]
    ) -> None:
        self.key = (pod, container)
        self._buf = b""
        argv = [*cluster.kubectl(), "-n", namespace, "exec", "-i", pod, "-c", container,
                "--", "sh", "-c", self._SCRIPT, "sh", *files]  # fmt: skip
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            _dies_with_parent(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ask(self, timeout: float = 5.0) -> bytes | None:
        """One dump of the files; None (and the stream stopped) if it does not come."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return None
        try:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        except OSError:
            self.stop()
            return None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        marker = self.END + b"\n"
        while marker not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:  # end of stream, or nothing in time
                self.stop()
                return None
            self._buf += chunk
        out, _, self._buf = self._buf.partition(marker)
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        _stop(proc)


class PortForward:
    """`kubectl port-forward` to one pod port, started and stopped by PID."""

    def __init__(self, cluster: Cluster, *, namespace: str, pod: str, port: int) -> None:
        self.namespace, self.pod, self.remote_port = namespace, pod, port
        self.local_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            _dies_with_parent(
                [
                    *cluster.kubectl(),
                    "-n",
                    namespace,
                    "port-forward",
                    f"pod/{pod}",
                    f":{port}",  # a free local port, read back from kubectl's output
                    "--address",
                    "127.0.0.1",
                ]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self._proc.pid
        self._wait_ready(timeout=10)

    def _wait_ready(self, *, timeout: float) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline and self._proc.poll() is None:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                buf += self._proc.stdout.readline()
                m = _FORWARDING.search(buf)
                if m:
                    self.local_port = int(m.group(1))
                    return
        self.stop()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.local_port is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _stop(proc)
