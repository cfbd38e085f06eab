"""Fault injection on the real node: a cluster that does not hold still, and nothing is lost.

Each test drives one fault through a real `triage reproduce` run against our operator and
asserts what the issue asks: the Deployment matches the rule (the journal, plus the other
writer's changes), the run's objects are gone after --cleanup, the exit code is the
documented one, and the run directory says what happened. The README's "faults survived"
figure counts these tests.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, kubectl
from tests.e2e.conftest import Scope, deployment, run_events, run_meta, run_triage
from triage.bodies import RUN_ID_LABEL
from triage.reproduce import UNPROFILED_ANNOTATION

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]

#: A slow, small load: a few seconds per batch, so a fault lands mid-run.
SLOW = ("--profile", "none", "--no-cold-start", "--mem-limit", "384Mi")


def _left(meta: dict[str, Any]) -> str:
    return kubectl(
        "get", "namespaces", "-l", f"{RUN_ID_LABEL}={meta['run_id']}", "-o", "name"
    ).strip()


def _port_forwards(namespace: str) -> list[int]:
    """PIDs of kubectl port-forwards into `namespace` still running (read from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"port-forward" in argv and namespace.encode() in argv:
            found.append(int(proc.name))
    return found


def _drop_namespaces(run_dir: Path) -> None:
    """A run without --cleanup leaves its namespaces: the test takes them away."""
    run_id = run_meta(run_dir)["run_id"]
    kubectl("delete", "namespaces", "-l", f"{RUN_ID_LABEL}={run_id}", "--wait=false", check=False)


class Background:
    """`triage reproduce` as a child whose PID this test holds (and only that PID)."""

    def __init__(
        self, args: list[str], kubeconfig: Path, run_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.kubeconfig = kubeconfig
        self.scenario = Path(args[args.index("--scenario") + 1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "reproduce", *args, "--out", str(run_dir),
             "--kubeconfig", str(kubeconfig)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"COLUMNS": "120", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
                 **(env or {})},
        )  # fmt: skip

    def wait_for_batch(self, n: int = 1, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        path = self.run_dir / "samples.csv"
        while time.monotonic() < deadline:
            if path.exists() and sum(1 for line in path.read_text().splitlines()
                                     if line.startswith("batch,")) >= n:  # fmt: skip
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended early: {self.proc.communicate()[1][-3000:]}")
            time.sleep(0.3)
        pytest.fail(f"no batch {n} within {timeout}s")

    def finish(self, timeout: float = 400) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err


Start = Callable[..., Background]


@pytest.fixture
def start(namespace: str, scope: Scope, tmp_path: Path, triage_kubeconfig: Path) -> Iterator[Start]:
    """Start a slow run in the background against the operator in the test's namespace
    (`ours`), and wait for its first batches."""
    runs: list[Background] = []

    def _start(*, namespaces: int, sessions: int, name: str = "run", cleanup: bool = True,
               batches: int = 1, kubeconfig: Path | None = None,
               env: dict[str, str] | None = None) -> Background:  # fmt: skip
        scenario = scope.scenario(tmp_path / f"{name}.yaml", namespaces=namespaces,
                                  sessions_per_ns=sessions, batch_size=1)  # fmt: skip
        args = ["--operator-namespace", namespace, *SLOW, "--scenario", str(scenario)]
        if cleanup:
            args += ["--cleanup", "--cleanup-wait"]
        run = Background(args, kubeconfig or triage_kubeconfig, tmp_path / name, env)
        runs.append(run)
        run.wait_for_batch(batches)
        return run

    yield _start
    for r in runs:  # never leave a child behind
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def test_another_writer_stops_the_load_and_keeps_their_change(ours: str, start: Start) -> None:
    before = deployment(ours, "agentic-operator")
    run = start(namespaces=20, sessions=10)
    # An Argo CD-style revert of the memory limit, under its own field manager.
    kubectl("-n", ours, "patch", "deployment", "agentic-operator", "--field-manager=argocd-controller",
            "--type=json", "-p", json.dumps([{"op": "replace", "path":
            "/spec/template/spec/containers/0/resources/limits/memory", "value": "320Mi"}]))  # fmt: skip
    code, err = run.finish()
    assert code == 8, err[-3000:]
    assert "argocd-controller" in err and "limits.memory" in err
    assert "kube-controller-manager" not in err  # it wrote the status, not the spec
    meta = run_meta(run.run_dir)
    assert meta["outcome"]["status"] == "stopped"
    changed = [e for e in run_events(run.run_dir) if e["kind"] == "deployment-changed"]
    assert changed and "argocd-controller" in json.dumps(changed[0]["data"]["managers"])
    after = deployment(ours, "agentic-operator")
    c = after["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["memory"] == "320Mi"  # theirs, kept
    assert (
        c["resources"]["requests"]
        == before["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    )
    conflicts = meta["restore"]["conflicts"]
    assert [x["path"] for x in conflicts] == [
        "template.spec.containers[name=agentic-operator].resources.limits.memory"]  # fmt: skip
    assert _left(meta) == ""


def test_a_second_run_is_refused_and_a_killed_runs_lock_goes_stale(ours: str, start: Start) -> None:
    before = deployment(ours, "agentic-operator")
    first = start(namespaces=30, sessions=5, name="first", cleanup=False,
                  env={"TRIAGE_LOCK_SECONDS": "8"})  # fmt: skip
    scenario = str(first.scenario)
    triage_kubeconfig = first.kubeconfig
    tmp_path = first.run_dir.parent
    second = run_triage("reproduce", "--operator-namespace", ours, *SLOW, "--scenario", scenario,
                        "--out", str(tmp_path / "second"), kubeconfig=triage_kubeconfig)  # fmt: skip
    assert second.returncode == 7, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert first.run_dir.name in line or run_meta(first.run_dir)["run_id"] in line
    assert (
        deployment(ours, "agentic-operator")["metadata"]["generation"]
        > before["metadata"]["generation"]
    )

    first.proc.send_signal(signal.SIGKILL)  # nothing restores, nothing releases
    first.proc.wait()
    time.sleep(2)
    assert _port_forwards(ours) == [], "a killed run's port-forward outlived it"
    time.sleep(10)  # past the lock's lease: stale
    third = run_triage("reproduce", "--operator-namespace", ours, *SLOW, "--scenario", scenario,
                       "--out", str(tmp_path / "third"), kubeconfig=triage_kubeconfig)  # fmt: skip
    assert third.returncode == 7 and "stopped renewing its lock" in third.stderr, third.stderr
    assert f"triage restore {first.run_dir}" in third.stderr
    restored = run_triage("restore", str(first.run_dir), kubeconfig=triage_kubeconfig)
    assert restored.returncode == 0, restored.stderr
    assert "released the run lock" in restored.stderr
    assert deployment(ours, "agentic-operator")["spec"] == before["spec"]
    # Free again: a dry run sees no lock and changes nothing.
    dry = run_triage("reproduce", "--operator-namespace", ours, *SLOW, "--scenario", scenario,
                     "--dry-run", kubeconfig=triage_kubeconfig)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    _drop_namespaces(first.run_dir)


def test_a_deleted_operator_pod_is_followed_and_never_an_oom(ours: str, start: Start) -> None:
    run = start(namespaces=8, sessions=10, batches=2)
    pod = json.loads(kubectl("-n", ours, "get", "pods", "-l", "app=agentic-operator", "-o", "json"))
    victim = pod["items"][0]["metadata"]["name"]
    kubectl("-n", ours, "delete", "pod", victim, "--wait=false")
    code, err = run.finish()
    assert code == 0, err[-3000:]
    meta = run_meta(run.run_dir)
    assert meta["outcome"]["status"] == "completed"
    replaced = [e for e in run_events(run.run_dir) if e["kind"] == "pod-replaced"]
    assert replaced and replaced[0]["data"]["old"] == victim
    assert (
        replaced[0]["data"]["reason"] in ("deleted", "replaced")
        or "Killing" in replaced[0]["data"]["reason"]
    )
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["restarts"]["cumulative_ooms"] == 0 and not summary["outcome"]["oom"]
    pods = {r["pod"] for r in _samples(run.run_dir)}
    assert victim in pods and len(pods) == 2  # sampling followed the new pod
    assert _left(meta) == ""


def _samples(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "samples.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.disruptive
def test_an_apiserver_restart_mid_batch_is_waited_out(ours: str, start: Start) -> None:
    before = deployment(ours, "agentic-operator")
    run = start(namespaces=10, sessions=30)
    subprocess.run(["bash", str(REPO / "cluster" / "restart.sh"), "kube-apiserver", "3"],
                   check=True, timeout=180)  # fmt: skip
    code, err = run.finish()
    assert code == 0, err[-3000:]
    meta = run_meta(run.run_dir)
    assert meta["outcome"]["status"] == "completed", meta["outcome"]
    kinds = {e["kind"] for e in run_events(run.run_dir)}
    assert "apiserver-unreachable" in kinds
    journal = json.loads((run.run_dir / "journal.json").read_text())
    # The restore ran to its end: begun, done, the lock released last. In between, the
    # rollout wait may remove an old pod that no longer runs anything (journaled as such).
    steps = [s["step"] for s in journal["steps"]]
    tail = steps[steps.index("restore-begin") :]
    assert tail[:2] == ["restore-begin", "restore"] and tail[-1] == "unlock", steps
    assert set(tail[2:-1]) <= {"delete-stopped-pod", "delete-terminal-pod", "pod-deleted"}, steps
    assert deployment(ours, "agentic-operator")["spec"] == before["spec"]
    assert _left(meta) == ""


def test_a_second_ctrl_c_during_restore_does_not_cut_it_short(ours: str, start: Start) -> None:
    before = deployment(ours, "agentic-operator")
    run = start(namespaces=20, sessions=5, cleanup=False)
    run.proc.send_signal(signal.SIGINT)
    journal = run.run_dir / "journal.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "restore-begin" not in journal.read_text():
        time.sleep(0.05)
    for _ in range(2):  # impatient: Ctrl-C again, twice, while it restores
        with contextlib.suppress(ProcessLookupError):
            run.proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    code, err = run.finish()
    assert code == 130, err[-3000:]
    assert (
        "restoring the Deployment; it finishes in a moment" in err
        or "restore" in journal.read_text()
    )
    assert deployment(ours, "agentic-operator")["spec"] == before["spec"]
    assert run_meta(run.run_dir)["restore"]["status"] in ("restored", "already-restored")
    _drop_namespaces(run.run_dir)


def test_dry_run_changes_nothing_and_bad_out_is_refused_first(
    ours: str, scope: Scope, tmp_path: Path, triage_kubeconfig: Path
) -> None:
    before = deployment(ours, "agentic-operator")
    scenario = str(scope.scenario(tmp_path / "s.yaml"))
    dry = run_triage("reproduce", "--operator-namespace", ours, "--profile", "memray",
                     "--scenario", scenario, "--dry-run", kubeconfig=triage_kubeconfig)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stderr and "limits:" in dry.stderr and "memray_launch.py" in dry.stderr
    assert "ConfigMap" in dry.stderr and "AgenticSession" in dry.stderr
    assert UNPROFILED_ANNOTATION in dry.stderr  # the rollout without memray comes first
    after = deployment(ours, "agentic-operator")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert kubectl("get", "namespaces", "-l", scope.selector, "-o", "name").strip() == ""
    held = tmp_path / "held"
    held.mkdir()
    (held / "journal.json").write_text("{}")
    for out, message in (("/proc/nope", "cannot hold a run"), (str(held), "already holds a run")):
        bad = run_triage("reproduce", "--operator-namespace", ours, "--scenario", scenario,
                         "--out", out, kubeconfig=triage_kubeconfig)  # fmt: skip
        assert bad.returncode == 2, bad.stderr
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0]
    assert (
        deployment(ours, "agentic-operator")["metadata"]["generation"]
        == before["metadata"]["generation"]
    )


def test_credentials_expiring_mid_run_are_renewed_by_the_client(
    ours: str, tmp_path: Path, start: Start
) -> None:
    """A run of several minutes on client certificates that live for 30 seconds."""
    from tests.rbac import expiring_kubeconfig

    lifetime = 30.0
    log = tmp_path / "issued.jsonl"
    kubeconfig = expiring_kubeconfig(tmp_path / "kubeconfig", lifetime=lifetime, log=log)
    before = deployment(ours, "agentic-operator")
    run = start(namespaces=400, sessions=2, kubeconfig=kubeconfig)
    started = time.monotonic()
    # Sampling must go on across at least three expiries, then the user stops the run.
    while time.monotonic() - started < 3.3 * lifetime:
        if run.proc.poll() is not None:
            pytest.fail(f"the run ended early: {run.proc.communicate()[1][-3000:]}")
        time.sleep(1)
    last_batch = max(int(r["batch"]) for r in _samples(run.run_dir))
    run.proc.send_signal(signal.SIGINT)
    code, err = run.finish()
    assert code == 130, err[-3000:]
    issued = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(issued) >= 4, issued  # the first certificate and at least three renewals
    assert "Unauthorized" not in err and "401" not in err, err[-3000:]
    kinds = {e["kind"] for e in run_events(run.run_dir)}
    assert "error" not in kinds and "apiserver-unreachable" not in kinds, kinds
    assert last_batch >= 6  # batches kept coming while certificates expired
    meta = run_meta(run.run_dir)
    assert meta["restore"]["status"] == "restored"
    assert deployment(ours, "agentic-operator")["spec"] == before["spec"]
    assert _left(meta) == ""


def _two_replicas(deployment: dict[str, Any]) -> None:
    """Two replicas on the host network: no listeners to clash, no probes that need them."""
    deployment["spec"]["replicas"] = 2
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["args"] = [a for a in c["args"] if not a.startswith(("--metrics-bind", "--health-probe"))]
    c["args"] += ["--metrics-bind-address=0", "--health-probe-bind-address=0"]
    for key in ("ports", "livenessProbe", "readinessProbe"):
        c.pop(key, None)


def _leader(namespace: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lease = json.loads(kubectl("-n", namespace, "get", "lease",
                                   "agentic-operator.vteam.ambient-code", "-o", "json",
                                   check=False) or "{}")  # fmt: skip
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        if holder:
            return holder.rsplit("_", 1)[0]  # <pod>_<pid>
        time.sleep(0.5)
    pytest.fail("no replica took the leader lease")


@pytest.mark.parametrize("ours", [_two_replicas], indirect=True, ids=["two-replicas"])
def test_every_replica_gets_the_limit_and_a_new_leader_is_followed(ours: str, start: Start) -> None:
    ns = ours
    before = deployment(ns, "agentic-operator")
    run = start(namespaces=12, sessions=10, batches=2)
    pods = json.loads(kubectl("-n", ns, "get", "pods", "-l", "app=agentic-operator", "-o", "json"))
    running = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 2
    for p in running:  # every replica runs with the run's limit
        assert p["spec"]["containers"][0]["resources"]["limits"]["memory"] == "384Mi"
    leader = _leader(ns)
    assert {r["pod"] for r in _samples(run.run_dir) if r["kind"] == "batch"} == {leader}
    kubectl("-n", ns, "delete", "pod", leader, "--wait=false")
    code, err = run.finish()
    assert code == 0, err[-3000:]
    changed = [e for e in run_events(run.run_dir) if e["kind"] == "leader-changed"]
    assert changed and changed[0]["data"]["old"] == leader, run_events(run.run_dir)
    new = changed[0]["data"]["new"]
    assert new != leader and _samples(run.run_dir)[-1]["pod"] == new
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["restarts"]["cumulative_ooms"] == 0
    assert deployment(ns, "agentic-operator")["spec"] == before["spec"]
    assert _left(run_meta(run.run_dir)) == ""


def _scratch(deployment: dict[str, Any]) -> None:
    """A 1 MiB emptyDir the test fills to have the kubelet evict the pod."""
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}})
    pod["containers"][0]["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})


@pytest.mark.parametrize("ours", [_scratch], indirect=True, ids=["scratch-volume"])
def test_an_evicted_operator_pod_is_recorded_as_evicted_not_oom(ours: str, start: Start) -> None:
    ns = ours
    # The kubelet measures emptyDir usage every volumeStatsAggPeriod (10 s on the local
    # cluster, a minute by default) and acts on its next pass: the run must last long enough
    # to see the eviction and sample the replacement. 25 namespaces once ended (restore at
    # 31 s) before the kubelet had evicted anything, once the rollouts got faster.
    run = start(namespaces=60, sessions=10)
    victim = _samples(run.run_dir)[-1]["pod"]
    # Past the emptyDir's sizeLimit: the kubelet's eviction manager evicts the pod.
    kubectl("-n", ns, "exec", victim, "-c", "agentic-operator", "--", "python3", "-c",
            "open('/scratch/fill', 'wb').write(b'x' * (4 << 20))")  # fmt: skip
    code, err = run.finish()
    assert code == 0, err[-3000:]
    replaced = [e for e in run_events(run.run_dir) if e["kind"] == "pod-replaced"]
    assert replaced and replaced[0]["data"]["old"] == victim, run_events(run.run_dir)
    assert replaced[0]["data"]["reason"].startswith("Evicted"), replaced[0]
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["restarts"]["cumulative_ooms"] == 0 and not summary["outcome"]["oom"]
    assert _left(run_meta(run.run_dir)) == ""
