"""Bad input to `triage reproduce`: one line, the documented exit code, no cluster change.

The upstream script passed "--mem-limit 128MB" straight to kubectl after it had already
changed the Deployment. Each case here runs against a real operator Deployment and compares
its resourceVersion and the cluster's namespace list before and after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import KUBECONFIG, kubectl, run_cli
from triage.exitcodes import ExitCode


def _invoke(*args: str) -> tuple[int, str, str]:
    result = run_cli(["reproduce", *args])
    return result.exit_code, result.stdout, result.stderr


def _state(namespace: str) -> tuple[str, str, list[str]]:
    dep = json.loads(
        kubectl("-n", namespace, "get", "deployment", "agentic-operator", "-o", "json")
    )
    names = kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").split()
    ours = sorted(n for n in names if n.startswith("oom-repro-"))
    return dep["metadata"]["resourceVersion"], json.dumps(dep["spec"], sort_keys=True), ours


@pytest.mark.unit
def test_help_has_examples_and_exit_codes() -> None:
    result = run_cli(["reproduce", "--help"])
    assert result.exit_code == 0
    for text in ("Examples", "--mem-limit", "--set-env", "Exit codes", "--allow-any-context"):
        assert text in result.stdout


@pytest.mark.unit
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mem-limit", "128MB"], "--mem-limit '128MB' is not a memory quantity"),
        (["--mem-limit", "-1"], "--mem-limit '-1'"),
        (["--mem-limit", "abc"], "--mem-limit 'abc'"),
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--profile", "perf"], "--profile 'perf'"),
        (["--set-env", "NOEQUALS"], "--set-env 'NOEQUALS'"),
        (["--namespaces", "0"], "--namespaces 0"),
        (["--concurrency", "0"], "--concurrency 0"),
    ],
)
def test_bad_input_fails_before_connecting(args: list[str], needle: str, tmp_path: Path) -> None:
    # A kubeconfig that does not exist: any attempt to connect would fail with exit 3,
    # so exit 2 proves validation came first.
    code, out, err = _invoke(*args, "--kubeconfig", str(tmp_path / "missing"))
    assert code == int(ExitCode.USAGE), (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in out + err
    if "mem-limit" in needle:
        assert "accepted forms" in lines[0] and "128Mi" in lines[0]


@pytest.mark.unit
def test_out_holding_a_journal_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text("{}")
    code, _, err = _invoke("--out", str(tmp_path), "--kubeconfig", str(tmp_path / "missing"))
    assert code == int(ExitCode.USAGE)
    assert "already holds a run" in err and len(err.strip().splitlines()) == 1


@pytest.mark.cluster
@pytest.mark.parametrize(
    "args",
    [
        ["--mem-limit", "128MB"],
        ["--mem-limit", "-1"],
        ["--mem-limit", "abc"],
        ["--scenario", "nope"],
    ],
)
def test_bad_input_changes_nothing_on_the_cluster(
    operator_namespace: str, args: list[str], tmp_path: Path
) -> None:
    before = _state(operator_namespace)
    code, out, err = _invoke(
        *args,
        "--kubeconfig", str(KUBECONFIG),
        "--operator-namespace", operator_namespace,
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == int(ExitCode.USAGE), (out, err)
    assert len(err.strip().splitlines()) == 1
    assert _state(operator_namespace) == before
    assert not (tmp_path / "run").exists()


@pytest.mark.cluster
def test_missing_deployment_is_a_preflight_error(operator_namespace: str, tmp_path: Path) -> None:
    before = _state(operator_namespace)
    code, out, err = _invoke(
        "--kubeconfig", str(KUBECONFIG),
        "--operator-namespace", operator_namespace,
        "--operator-deployment", "no-such-operator",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == int(ExitCode.PREFLIGHT), (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"Deployment {operator_namespace}/no-such-operator not found" in lines[0]
    assert "Traceback" not in out + err
    assert _state(operator_namespace) == before
    assert not (tmp_path / "run").exists()


@pytest.mark.cluster
def test_foreign_context_is_refused(operator_namespace: str, tmp_path: Path) -> None:
    # The same cluster under a context name that is neither kind-* nor triage-local.
    cfg = yaml.safe_load(KUBECONFIG.read_text())
    for ctx in cfg["contexts"]:
        ctx["name"] = "prod-eu-1"
    cfg["current-context"] = "prod-eu-1"
    other = tmp_path / "kubeconfig"
    other.write_text(yaml.safe_dump(cfg))
    before = _state(operator_namespace)
    code, out, err = _invoke("--kubeconfig", str(other), "--operator-namespace", operator_namespace)
    assert code == int(ExitCode.CONTEXT_REFUSED), (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--allow-any-context" in lines[0]
    assert _state(operator_namespace) == before
