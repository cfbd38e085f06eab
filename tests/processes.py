"""What the tests and the benchmarks need to start processes of their own on this machine.

Both run this checkout's operator as a local process (`python -m agentic_operator`) and give
it, like the test copies of the operators, loopback ports nobody else holds. The command line
lives here once so that a benchmark measures the operator the tests exercise, started with the
same flags. Stdlib only: the benchmarks import it without pytest.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Ports this process has handed out: one is never given to two operators.
_HANDED: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in _EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port() -> int:
    """A loopback port nobody holds now, outside the kernel's ephemeral range.

    A port the kernel handed out (bind to port 0) is one it hands out again as the source
    port of some outgoing connection. An operator pod on the host network that is OOM-killed
    is down for its restart back-off, and with thousands of connections to the apiserver in
    that time its port can be taken: its next start then fails to bind (exit 2), which reads
    as a crash that has nothing to do with memory. Ports below the range are never handed
    out that way.
    """
    pool = [p for p in _pool() if p not in _HANDED]
    for port in random.sample(pool, min(len(pool), 500)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    # A machine that hands out nearly every port as ephemeral: the kernel's choice, then.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pool() -> range:
    """TRIAGE_TEST_PORTS ("LOW-HIGH": tests/run-suite.sh gives each half of the suite its
    own, so the two never pick the same port), else everything below the ephemeral range."""
    lo, sep, hi = os.environ.get("TRIAGE_TEST_PORTS", "").partition("-")
    if sep:
        return range(int(lo), int(hi) + 1)
    low, high = _ephemeral_range()
    return range(20000, low) if low > 21000 else range(high + 1, 65536)


def operator_command(kubeconfig: str | Path, *, metrics_port: int, health_port: int) -> list[str]:
    """This checkout's operator on `kubeconfig`, serving /metrics and the probes on loopback."""
    return [
        sys.executable,
        "-m",
        "agentic_operator",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-bind-address",
        f"127.0.0.1:{metrics_port}",
        "--health-probe-bind-address",
        f"127.0.0.1:{health_port}",
    ]
