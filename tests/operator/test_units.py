"""Pure pieces: flags and environment, manifests, the inactivity rules and timeout cache."""

from __future__ import annotations

import pytest

from agentic_operator import __version__, main
from agentic_operator import _objects as objs
from agentic_operator._config import ConfigError, parse_config
from agentic_operator._reconcile.inactivity import (
    ProjectTimeoutCache,
    idle_since,
    resolve_timeout,
    should_auto_stop,
)
from agentic_operator._reconcile.views import pod_transform, settings_transform
from agentic_operator._session_store import SessionView

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


def _session() -> dict[str, object]:
    return {
        "metadata": {"name": "s1", "namespace": "p", "uid": "u-1"},
        "spec": {
            "initialPrompt": "hi",
            "llmSettings": {"model": "m", "temperature": 0.7, "maxTokens": 4000},
            "environmentVariables": {"RUNNER_EXIT_CODE": "3", "TIMEOUT": "9"},
        },
    }


def test_runner_pod_manifest() -> None:
    pod = objs.runner_pod(_session(), image="img:1")
    assert pod["metadata"]["name"] == "s1-runner"
    assert pod["metadata"]["labels"] == {"app": "ambient-code-runner", "agentic-session": "s1"}
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("AgenticSession", "u-1", True)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "ambient-session-s1"
    c = spec["containers"][0]
    assert (c["image"], c["imagePullPolicy"]) == ("img:1", "IfNotPresent")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RUNNER_EXIT_CODE"] == "3" and env["TIMEOUT"] == "9"  # user values override ours
    assert [e["name"] for e in c["env"]].count("TIMEOUT") == 1
    assert env["LLM_MODEL"] == "m" and env["INITIAL_PROMPT"] == "hi"
    token = next(e for e in c["env"] if e["name"] == "BOT_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "ambient-runner-token-s1"


def test_session_side_objects() -> None:
    s = _session()
    assert objs.runner_service(s)["metadata"]["name"] == "session-s1"
    assert objs.runner_service(s)["spec"]["ports"][0]["name"] == "agui"
    assert objs.runner_service_account(s)["metadata"]["name"] == "ambient-session-s1"
    secret = objs.runner_token_secret(s, token="t", refreshed_at="2025-01-01T00:00:00Z")
    assert secret["metadata"]["name"] == "ambient-runner-token-s1"
    assert secret["data"] == {"k8s-token": "dA=="}
    assert secret["metadata"]["annotations"] == {
        "ambient-code.io/token-refreshed-at": "2025-01-01T00:00:00Z"
    }


def test_project_objects() -> None:
    ps = {"metadata": {"name": "projectsettings", "namespace": "p", "uid": "u-ps"}}
    rb = objs.group_role_binding(ps, group="team/a", role="view")
    assert rb["metadata"]["name"] == "team-a-view"
    assert rb["roleRef"]["name"] == "ambient-project-view"
    for obj in (
        rb,
        objs.trigger_role(ps),
        objs.trigger_role_binding(ps),
        objs.trigger_service_account(ps),
        objs.limit_range(ps),
    ):
        assert obj["metadata"]["labels"] == {"ambient-code.io/managed": "true"}
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "ProjectSettings"
    assert objs.default_project_settings("p")["spec"] == {"groupAccess": []}


def _view(**kw: object) -> SessionView:
    base: dict[str, object] = {
        "uid": "u",
        "resource_version": "1",
        "phase": "Running",
        "desired_phase": "",
        "deleting": False,
        "created": 1000.0,
    }
    base.update(kw)
    return SessionView(**base)  # type: ignore[arg-type]


def test_timeout_precedence() -> None:
    assert resolve_timeout(_view(inactivity_timeout=5), project=10, fallback=20) == 5
    assert resolve_timeout(_view(inactivity_timeout=0), project=10, fallback=20) == 0
    assert resolve_timeout(_view(), project=10, fallback=20) == 10
    assert resolve_timeout(_view(), project=None, fallback=20) == 20


def test_idle_reference_time_and_auto_stop() -> None:
    assert idle_since(_view(start_time=2000.0, last_activity=3000.0)) == 3000.0
    assert idle_since(_view(start_time=2000.0)) == 2000.0
    assert idle_since(_view()) == 1000.0
    v = _view(start_time=2000.0)
    assert should_auto_stop(v, timeout=100, now=2101.0)
    assert not should_auto_stop(v, timeout=100, now=2099.0)
    assert not should_auto_stop(v, timeout=0, now=1e12)
    assert not should_auto_stop(_view(phase="Creating", start_time=0.0), timeout=1, now=1e12)


def test_project_timeout_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    calls: list[str] = []

    def loader(ns: str) -> int | None:
        calls.append(ns)
        return None if ns == "none" else len(ns)

    cache = ProjectTimeoutCache(loader=loader, ttl_seconds=60, max_entries=3, clock=lambda: now[0])
    assert cache.get("abc") == 3 and cache.get("abc") == 3
    assert cache.get("none") is None and cache.get("none") is None
    assert calls == ["abc", "none"]
    now[0] = 61
    cache.get("abc")
    assert calls[-1] == "abc"
    for ns in ("d", "ee", "fff", "gggg"):
        cache.get(ns)
    assert len(cache) == 3
    cache.invalidate("gggg")
    assert len(cache) == 2


def test_pod_view_reads_runner_state() -> None:
    pod = {
        "metadata": {"name": "s1-runner", "uid": "p", "labels": {"agentic-session": "s1"}},
        "status": {
            "phase": "Failed",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "ambient-code-runner",
                    "restartCount": 0,
                    "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
            ],
        },
    }
    v = pod_transform(pod)
    assert (v.session, v.phase, v.scheduled, v.terminated_reason, v.exit_code) == (
        "s1",
        "Failed",
        True,
        "OOMKilled",
        137,
    )
    assert v.containers[0].restarts == 1 and v.containers[0].reason == "OOMKilled"


def test_settings_view_ignores_other_names() -> None:
    assert settings_transform({"metadata": {"name": "other"}, "spec": {}}) is None
    v = settings_transform(
        {
            "metadata": {"name": "projectsettings"},
            "spec": {
                "groupAccess": [{"groupName": "g", "role": "view"}],
                "inactivityTimeoutSeconds": 60,
            },
            "status": {
                "groupBindingsCreated": 1,
                "scheduledSessionRBACReady": True,
                "limitRangeReady": True,
            },
        }
    )
    assert (
        v is not None
        and v.inactivity_timeout == 60
        and v.ready
        and v.group_access == (("g", "view"),)
    )
