"""The operator's settings: the upstream flags and environment variables, parsed once.

Users run this operator as a drop-in for the Go one, so flag names, defaults and the
environment variables they already set must mean the same thing here. Everything the
reconcilers need is frozen into one `OperatorConfig` so no module reads os.environ later.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_INACTIVITY_SECONDS",
    "DEFAULT_RUNNER_IMAGE",
    "DEFAULT_TOKEN_REFRESH_SECONDS",
    "CacheMode",
    "ConfigError",
    "OperatorConfig",
    "build_parser",
    "parse_config",
]

DEFAULT_RUNNER_IMAGE = "quay.io/ambient_code/vteam_claude_runner:latest"
DEFAULT_INACTIVITY_SECONDS = 86400
DEFAULT_OPERATOR_NAMESPACE = "ambient-code"
DEFAULT_MANAGED_SELECTOR = "ambient-code.io/managed=true"

DEFAULT_TOKEN_REFRESH_SECONDS = 45 * 60
DEFAULT_METRICS_MAX_NAMESPACES = 1000
_TRUE = frozenset({"1", "true", "yes", "on"})

CacheMode = Literal["lean", "full"]


class ConfigError(ValueError):
    """A flag or environment variable has a value the operator cannot use."""


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    max_concurrent_reconciles: int = 10
    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    leader_elect: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    cache_mode: CacheMode = "lean"
    namespace: str = DEFAULT_OPERATOR_NAMESPACE
    runner_image: str = DEFAULT_RUNNER_IMAGE
    # None: DEFAULT_INACTIVITY_TIMEOUT was not set, so the built-in 86400 s applies last.
    default_inactivity_timeout: int | None = None
    log_level: str = "INFO"
    shutdown_timeout: float = 3.0
    # Which namespaces are projects. Upstream's label; AGENTIC_MANAGED_SELECTOR narrows it
    # so several operators can share one cluster without reconciling each other's projects.
    managed_selector: str = DEFAULT_MANAGED_SELECTOR
    # USE_VERTEX: runners authenticate through Vertex AI, so a session does not wait for
    # the prerequisite Secret (contract.RUNNER_SECRETS_NAME) in its namespace.
    use_vertex: bool = False
    # How old a runner token may get before it is minted again (upstream: 45 minutes).
    # AGENTIC_TOKEN_REFRESH_SECONDS shortens it so a test can watch a refresh happen.
    token_refresh_seconds: int = DEFAULT_TOKEN_REFRESH_SECONDS
    # Namespaces whose session counters get series of their own (the rest: "_overflow").
    metrics_max_namespaces: int = DEFAULT_METRICS_MAX_NAMESPACES

    @property
    def fallback_inactivity_timeout(self) -> int:
        if self.default_inactivity_timeout is None:
            return DEFAULT_INACTIVITY_SECONDS
        return self.default_inactivity_timeout


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from e


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; defaults come from the environment so flags still win over it."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="agentic-operator",
        description="Reconciles AgenticSessions and ProjectSettings (vteam.ambient-code/v1alpha1).",
    )
    p.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=_env_int(env, "MAX_CONCURRENT_RECONCILES", 10),
        help="session reconcile workers (env MAX_CONCURRENT_RECONCILES, default 10)",
    )
    p.add_argument(
        "--metrics-bind-address",
        default=":8080",
        help="address of the Prometheus endpoint; '0' disables it (default :8080)",
    )
    p.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        help="address of /healthz and /readyz; '0' disables it (default :8081)",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a coordination.k8s.io Lease before reconciling (one active replica)",
    )
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)",
    )
    p.add_argument("--context", default=None, help="kubeconfig context (default: current)")
    p.add_argument(
        "--cache-mode",
        choices=("lean", "full"),
        default=env.get("AGENTIC_CACHE_MODE", "lean") or "lean",
        help="lean: cache only what reconcile needs; full: cache whole objects like the "
        "unfixed upstream operator (env AGENTIC_CACHE_MODE, default lean)",
    )
    p.add_argument(
        "--log-level",
        default=env.get("LOG_LEVEL", "INFO") or "INFO",
        help="DEBUG, INFO, WARNING or ERROR (env LOG_LEVEL)",
    )
    return p


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> OperatorConfig:
    """Flags plus environment into a validated OperatorConfig; raises ConfigError."""
    env = os.environ if env is None else env
    args = build_parser(env).parse_args(argv)
    if args.max_concurrent_reconciles < 1:
        raise ConfigError("--max-concurrent-reconciles must be at least 1")
    if args.cache_mode not in ("lean", "full"):
        raise ConfigError(f"AGENTIC_CACHE_MODE must be lean or full, got {args.cache_mode!r}")
    default_timeout: int | None = None
    if env.get("DEFAULT_INACTIVITY_TIMEOUT", "").strip():
        default_timeout = _env_int(env, "DEFAULT_INACTIVITY_TIMEOUT", DEFAULT_INACTIVITY_SECONDS)
        if default_timeout < 0:
            raise ConfigError("DEFAULT_INACTIVITY_TIMEOUT must be >= 0 (0 disables auto-stop)")
    refresh = _env_int(env, "AGENTIC_TOKEN_REFRESH_SECONDS", DEFAULT_TOKEN_REFRESH_SECONDS)
    if refresh < 1:
        raise ConfigError("AGENTIC_TOKEN_REFRESH_SECONDS must be at least 1")
    max_ns = _env_int(env, "AGENTIC_METRICS_MAX_NAMESPACES", DEFAULT_METRICS_MAX_NAMESPACES)
    if max_ns < 0:
        raise ConfigError("AGENTIC_METRICS_MAX_NAMESPACES must be >= 0")
    return OperatorConfig(
        max_concurrent_reconciles=args.max_concurrent_reconciles,
        metrics_bind_address=args.metrics_bind_address,
        health_probe_bind_address=args.health_probe_bind_address,
        leader_elect=args.leader_elect,
        kubeconfig=args.kubeconfig,
        context=args.context,
        cache_mode=args.cache_mode,
        namespace=env.get("NAMESPACE", "").strip() or DEFAULT_OPERATOR_NAMESPACE,
        runner_image=env.get("AMBIENT_CODE_RUNNER_IMAGE", "").strip() or DEFAULT_RUNNER_IMAGE,
        default_inactivity_timeout=default_timeout,
        log_level=str(args.log_level).upper(),
        managed_selector=env.get("AGENTIC_MANAGED_SELECTOR", "").strip()
        or DEFAULT_MANAGED_SELECTOR,
        use_vertex=env.get("USE_VERTEX", "").strip().lower() in _TRUE,
        token_refresh_seconds=refresh,
        metrics_max_namespaces=max_ns,
    )
