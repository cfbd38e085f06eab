"""`python -m agentic_operator`: flags, logging, HTTP endpoints, signals, leader election.

Process concerns live here so the operator itself (`_reconcile.manager.Operator`) can be
started in-process by tests. SIGTERM and SIGINT set one stop event; everything (watches,
queues, leader lease, HTTP servers) hangs off it, so the process exits cleanly well within
the 10 s termination grace period, with the lease released for a successor.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from agentic_operator._config import ConfigError, OperatorConfig, parse_config
from agentic_operator._httpserve import HTTPServerHandle, serve_metrics, serve_probes
from agentic_operator._leader import LeaderElector
from agentic_operator._metrics import REGISTRY
from agentic_operator._operator_metrics import OperatorMetrics
from agentic_operator._profiling import (
    DebugAddressError,
    ProfilingError,
    start_debug_server_if_enabled,
    start_memray_if_enabled,
    stop_memray,
)
from agentic_operator._reconcile.manager import Operator
from agentic_operator.kube import KubeClient, KubeError, load_config

__all__ = ["main", "run"]

log = logging.getLogger("agentic_operator")

LEASE_NAME = "agentic-operator.vteam.ambient-code"


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve(config: OperatorConfig, op: Operator, stop: threading.Event) -> list[HTTPServerHandle]:
    servers = [
        serve_metrics(config.metrics_bind_address, op.metrics.registry),
        serve_probes(
            config.health_probe_bind_address,
            healthz=lambda: not stop.is_set(),
            readyz=op.ready,
        ),
    ]
    return [s for s in servers if s is not None]


def run(config: OperatorConfig, stop: threading.Event) -> int:
    """Run until `stop` is set; returns the exit code. Usable in-process (tests)."""
    t_start = time.monotonic()
    try:
        cluster = load_config(kubeconfig=config.kubeconfig, context=config.context)
    except KubeError as e:
        log.error("no cluster configuration: %s", e)
        return 2
    client = KubeClient(cluster, max_connections=max(16, config.max_concurrent_reconciles + 8))
    metrics = OperatorMetrics(REGISTRY, max_namespaces=config.metrics_max_namespaces)
    op = Operator(config, client, metrics)
    try:
        servers = _serve(config, op, stop)
    except OSError as e:
        log.error("%s", e)
        client.close()
        return 2
    log.info(
        "agentic-operator starting: cache-mode=%s workers=%d runner-image=%s",
        config.cache_mode,
        config.max_concurrent_reconciles,
        config.runner_image,
    )
    lost_leadership = threading.Event()
    try:
        if not op.start_caches(stop):
            return 0
        if config.leader_elect:
            # The pod's name (downward API) leads, as client-go's hostname does: on the host
            # network the hostname is the node's, and tools map the holder to a pod by name.
            who = os.environ.get("POD_NAME") or socket.gethostname()
            identity = f"{who}_{os.getpid()}"
            elector = LeaderElector(
                client, namespace=config.namespace, name=LEASE_NAME, identity=identity
            )

            def on_stopped() -> None:
                if not stop.is_set():
                    # Like controller-runtime: a replica that lost the lease exits and restarts.
                    lost_leadership.set()
                    stop.set()

            elector.run(
                stop,
                on_started_leading=lambda _leading: op.start_controllers(stop),
                on_stopped_leading=on_stopped,
            )
        else:
            log.info("caches synced after %.2fs, starting controllers", time.monotonic() - t_start)
            op.start_controllers(stop)
            while not stop.wait(0.5):
                pass
        op.shutdown(config.shutdown_timeout)
    finally:
        stop.set()
        for s in servers:
            s.shutdown(timeout=1.0)
        client.close()
    log.info("agentic-operator stopped")
    return 1 if lost_leadership.is_set() else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as e:
        print(f"agentic-operator: {e}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level)
    try:
        profiler = start_memray_if_enabled()
        debug_server = start_debug_server_if_enabled()
    except (ProfilingError, DebugAddressError, OSError) as e:
        log.error("profiling: %s", e)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(config, stop)
    finally:
        if debug_server is not None:
            debug_server.shutdown(timeout=1.0)
        if profiler is not None:
            stop_memray(profiler)
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
