"""Flags and environment (`_config`): upstream's names and defaults, validated once."""

from __future__ import annotations

import pytest

from agentic_operator import __version__, main
from agentic_operator._config import ConfigError, parse_config

pytestmark = pytest.mark.unit


def test_defaults_match_upstream() -> None:
    cfg = parse_config([], env={})
    assert cfg.max_concurrent_reconciles == 10
    assert cfg.metrics_bind_address == ":8080"
    assert cfg.health_probe_bind_address == ":8081"
    assert cfg.leader_elect is False
    assert cfg.runner_image == "quay.io/ambient_code/vteam_claude_runner:latest"
    assert cfg.fallback_inactivity_timeout == 86400
    assert cfg.cache_mode == "lean"
    assert cfg.namespace == "ambient-code"
    assert cfg.managed_selector == "ambient-code.io/managed=true"


def test_environment_and_flags() -> None:
    env = {
        "MAX_CONCURRENT_RECONCILES": "4",
        "NAMESPACE": "ops",
        "AMBIENT_CODE_RUNNER_IMAGE": "img:1",
        "DEFAULT_INACTIVITY_TIMEOUT": "0",
        "AGENTIC_CACHE_MODE": "full",
    }
    cfg = parse_config(["--leader-elect", "--metrics-bind-address", "127.0.0.1:9"], env=env)
    assert (cfg.max_concurrent_reconciles, cfg.namespace, cfg.runner_image) == (4, "ops", "img:1")
    assert cfg.fallback_inactivity_timeout == 0 and cfg.cache_mode == "full" and cfg.leader_elect
    assert cfg.metrics_bind_address == "127.0.0.1:9"
    # A flag wins over the environment.
    assert (
        parse_config(["--max-concurrent-reconciles", "2"], env=env).max_concurrent_reconciles == 2
    )


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse_config([], env={"MAX_CONCURRENT_RECONCILES": "many"})
    with pytest.raises(ConfigError):
        parse_config(["--max-concurrent-reconciles", "0"], env={})
    with pytest.raises(ConfigError):
        parse_config([], env={"DEFAULT_INACTIVITY_TIMEOUT": "-5"})


def test_main_reports_bad_config_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert __version__
    with pytest.raises(SystemExit) as e:
        main(["--cache-mode", "huge"])
    assert e.value.code == 2


def test_vertex_token_refresh_and_metrics_cap() -> None:
    cfg = parse_config([], env={})
    assert cfg.use_vertex is False
    assert cfg.token_refresh_seconds == 45 * 60
    assert cfg.metrics_max_namespaces == 1000
    cfg = parse_config(
        [],
        env={
            "USE_VERTEX": "1",
            "AGENTIC_TOKEN_REFRESH_SECONDS": "20",
            "AGENTIC_METRICS_MAX_NAMESPACES": "5",
        },
    )
    assert (cfg.use_vertex, cfg.token_refresh_seconds, cfg.metrics_max_namespaces) == (True, 20, 5)
    assert parse_config([], env={"USE_VERTEX": "true"}).use_vertex
    assert not parse_config([], env={"USE_VERTEX": "0"}).use_vertex
    with pytest.raises(ConfigError):
        parse_config([], env={"AGENTIC_TOKEN_REFRESH_SECONDS": "0"})
