"""The third-party test operators really run on the node and react to AgenticSessions, only in
the namespaces they are given; their images are what triage will meet (entrypoint or command,
which profilers are inside, no shell in the Go image); the py-spy sidecar dumps a Python
operator that has no py-spy; the Go operator serves pprof only when asked, on loopback only;
triage's cold start restarts the two Python operators in place (their PID 1 takes SIGTERM)
and deletes the Go operator's pod (nothing in its image can send a signal), and each lists
what exists again.

Each operator is deployed once per module (tests/operators/deploy.py) into its own namespace,
scoped to namespaces whose names start with a per-module prefix and, for the two that support
it, that also carry a per-module label: a namespace matching only one of the two stays
untouched.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from agentic_operator.kube import KubeClient
from agentic_operator.resources import NAMESPACES, PODS
from tests.conftest import KUBECONFIG, TEST_LABEL, kubectl, wait_until
from tests.operators.deploy import ACK_REASONS, OPERATORS, Deployed, deploy, undeploy
from triage import pprof
from triage.cluster import connect
from triage.restart import restart, restart_count

pytestmark = [pytest.mark.cluster, pytest.mark.node]

SESSIONS = "/apis/vteam.ambient-code/v1alpha1/namespaces/{ns}/agenticsessions"
SCOPE_LABEL = "triage.test/operator-scope"
#: Sessions each deployed operator holds before a test starts (see _wait_watching_namespaces).
CANARIES = 1


class Scope:
    """The namespaces one deployed test operator may act on, and ones it must not."""

    def __init__(self, kube: KubeClient, name: str) -> None:
        self.kube = kube
        self.id = secrets.token_hex(3)
        self.prefix = f"t-op-{self.id}"
        self.globs = f"{self.prefix}-in-*"
        # kopf has no namespace label selector: its scope is the glob alone.
        self.selector = "" if name == "kopf-sessions" else f"{SCOPE_LABEL}={self.id}"
        self.created: list[str] = []

    def namespace(self, suffix: str, *, labelled: bool = True) -> str:
        name = f"{self.prefix}-{suffix}"
        labels = {TEST_LABEL: "true", **({SCOPE_LABEL: self.id} if labelled else {})}
        self.kube.create(NAMESPACES.path(), {"metadata": {"name": name, "labels": labels}})
        self.created.append(name)
        return name

    def delete(self) -> None:
        for name in self.created:
            self.kube.delete_if_present(NAMESPACES.path(name=name), grace_seconds=0)


def create_session(
    kube: KubeClient, ns: str, name: str, prompt: str = "look at the flaky test"
) -> None:
    body = {
        "apiVersion": "vteam.ambient-code/v1alpha1",
        "kind": "AgenticSession",
        "metadata": {"name": name},
        "spec": {"displayName": name, "initialPrompt": prompt},
    }
    kube.create(SESSIONS.format(ns=ns), body)


def status(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    return dict(kube.get(f"{SESSIONS.format(ns=ns)}/{name}").get("status") or {})


def acked_by(kube: KubeClient, ns: str, name: str) -> str:
    st = status(kube, ns, name)
    if st.get("phase") != "Pending":
        return ""
    return next((c["reason"] for c in st.get("conditions", []) if c["type"] == "Reconciled"), "")


def cached(op: Deployed) -> int:
    h = op.health()
    return int(h["sessions"]["tracked"] if op.name == "kopf-sessions" else h["sessions"])


@pytest.fixture(scope="module", params=OPERATORS)
def running(
    request: pytest.FixtureRequest, kube: KubeClient, crds: None
) -> Iterator[tuple[Deployed, Scope]]:
    name = request.param
    scope = Scope(kube, name)
    home = scope.namespace("home", labelled=False)
    op = deploy(name, home, globs=scope.globs, selector=scope.selector)
    try:
        wait_until(lambda: _answers(op), timeout=60, what=f"{name} /healthz")
        _wait_watching_namespaces(kube, op, scope)
        yield op, scope
    finally:
        undeploy(op)
        scope.delete()


def _wait_watching_namespaces(kube: KubeClient, op: Deployed, scope: Scope) -> None:
    """Until a namespace created now is picked up: a canary namespace with a session.

    kopf (1.45) lists namespaces once, then starts a namespace watch that lists them again
    and ignores what that second list finds, so a namespace created between the two is
    missed until kopf restarts; its /healthz answers before then. Once a canary created after
    start-up is handled, later namespaces are seen by the watch.
    """
    for attempt in range(6):
        ns = scope.namespace(f"in-canary-{attempt}")
        create_session(kube, ns, "canary")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if acked_by(kube, ns, "canary"):
                return  # one canary session stays: CANARIES
            time.sleep(0.5)
        kube.delete_if_present(NAMESPACES.path(name=ns), grace_seconds=0)
    pytest.fail(f"{op.name} never picked up a namespace created after it started")


def _answers(op: Deployed) -> bool:
    try:
        op.health()
    except OSError:
        return False
    return True


def test_acts_only_on_its_namespaces(running: tuple[Deployed, Scope], kube: KubeClient) -> None:
    op, scope = running
    inside = scope.namespace("in-a")
    outside = [scope.namespace("out-a")]  # neither the glob nor (by itself) the label
    if scope.selector:
        outside.append(scope.namespace("in-unlabelled", labelled=False))  # glob, no label
    for ns in outside:
        create_session(kube, ns, "s-new")
    create_session(kube, inside, "s-new")

    base = CANARIES
    reason = wait_until(
        lambda: acked_by(kube, inside, "s-new"), timeout=60, what="the new session acknowledged"
    )
    assert reason == ACK_REASONS[op.name]
    wait_until(lambda: cached(op) == base + 1, timeout=60, what="one session cached")
    # A session that has a phase is cached, never rewritten: set one, then touch the session.
    path = f"{SESSIONS.format(ns=inside)}/s-new"
    session = kube.get(path)
    session["status"] = {"phase": "Completed"}
    kube.replace(f"{path}/status", session)
    kube.patch(path, {"metadata": {"annotations": {"touched": "yes"}}})
    create_session(kube, inside, "s-two")
    wait_until(lambda: acked_by(kube, inside, "s-two"), timeout=60, what="a second session acked")
    wait_until(lambda: cached(op) == base + 2, timeout=60, what="two sessions cached")
    assert status(kube, inside, "s-new") == {"phase": "Completed"}
    for ns in outside:
        assert status(kube, ns, "s-new") == {}, f"{op.name} acted on {ns}"

    kube.delete(f"{SESSIONS.format(ns=inside)}/s-two")
    wait_until(
        lambda: cached(op) == base + 1, timeout=60, what="a deleted session leaves the cache"
    )
    for ns in [inside, *outside]:
        kube.delete_if_present(NAMESPACES.path(name=ns), grace_seconds=0)
    wait_until(lambda: cached(op) == base, timeout=120, what="the namespace's sessions gone")


def test_a_namespace_that_comes_later_is_picked_up(
    running: tuple[Deployed, Scope], kube: KubeClient
) -> None:
    op, scope = running
    wait_until(lambda: cached(op) == CANARIES, timeout=60, what="only the canary cached")
    before = CANARIES
    late = scope.namespace("in-late")
    create_session(kube, late, "s-late")
    wait_until(lambda: acked_by(kube, late, "s-late"), timeout=60, what="the late session acked")
    wait_until(lambda: cached(op) == before + 1, timeout=60, what="the late session cached")
    # Its namespace goes away: so do its sessions, from the operator's cache too.
    kube.delete_if_present(NAMESPACES.path(name=late), grace_seconds=0)
    wait_until(lambda: cached(op) == before, timeout=120, what="the namespace's sessions gone")


#: Run with the operator's own interpreter: which profilers and clients its venv has.
TOOLS = (
    "import importlib.util, json, os, sys; "
    "print(json.dumps({m: importlib.util.find_spec(m) is not None"
    " for m in ('memray', 'kopf', 'kubernetes')}"
    " | {'py-spy': os.path.exists(os.path.join(os.path.dirname(sys.executable), 'py-spy'))}))"
)


def _exec(op: Deployed, *cmd: str) -> str:
    pod = op.pod()["metadata"]["name"]
    return kubectl("-n", op.namespace, "exec", pod, "-c", op.name, "--", *cmd)


def test_images_are_what_triage_will_meet(running: tuple[Deployed, Scope]) -> None:
    op, _ = running
    spec = op.pod()["spec"]["containers"][0]
    assert spec["name"] == op.name
    assert spec["resources"]["limits"]["memory"]
    if op.name == "go-informer":
        # Only the static binary: no shell, no cat. Tools must not rely on exec.
        assert "command" not in spec
        with pytest.raises(RuntimeError, match=r"executable file not found|no such file"):
            _exec(op, "cat", "/proc/1/cmdline")
        return
    cmdline = _exec(op, "cat", "/proc/1/cmdline").split("\0")
    venv = f"/opt/triage-test-operators/{op.name}/venv"
    tools = _exec(op, f"{venv}/bin/python", "-c", TOOLS)
    have = json.loads(tools)
    assert have["py-spy"] is False
    if op.name == "client-sessions":
        # No command: the image's entrypoint runs, and /proc/1/cmdline is how to find it.
        assert "command" not in spec and "args" not in spec
        assert cmdline[:2] == [f"{venv}/bin/python3", f"{venv}/bin/client-sessions"]
        assert have == {"memray": False, "kopf": False, "kubernetes": True, "py-spy": False}
    else:
        assert spec["command"][:2] == [f"{venv}/bin/kopf", "run"]
        assert cmdline[1:3] == [f"{venv}/bin/kopf", "run"]
        assert have["memray"] is True and have["kopf"] is True


#: How triage's cold start can restart each operator, and why not in place where it cannot.
RESTART_HOW = {
    "kopf-sessions": ("in-place", ""),  # kopf's reactor handles SIGTERM
    "client-sessions": ("in-place", ""),  # the operator installs a SIGTERM handler
    "go-informer": ("deleted", "cannot signal PID 1"),  # no shell and no `kill` to exec
}


def test_a_cold_start_restarts_it_and_it_lists_everything_again(
    running: tuple[Deployed, Scope], kube: KubeClient
) -> None:
    # What `--restart-at` and the end-of-run cold start do, on each kind of real operator:
    # the container restarted where its PID 1 takes SIGTERM, the pod deleted (with the
    # reason) where it cannot be signalled; then the new process lists what exists again.
    op, _ = running
    wait_until(lambda: cached(op) == CANARIES, timeout=60, what="only the canary cached")
    pod = op.pod()
    cluster = connect(kubeconfig=str(KUBECONFIG), context=None)
    done = restart(cluster, namespace=op.namespace, container=op.name, pod=pod)
    how, why = RESTART_HOW[op.name]
    assert done.how == how and why in done.fallback, done
    if how == "in-place":
        assert op.pod()["metadata"]["uid"] == pod["metadata"]["uid"]
        wait_until(
            lambda: restart_count(op.pod(), op.name) == done.restart_count + 1,
            timeout=60,
            what="the container started again",
        )
    else:
        # The old pod gone for good, so what answers on the (host) port is the new process.
        old = PODS.path(op.namespace, pod["metadata"]["name"])
        wait_until(lambda: kube.get_or_none(old) is None, timeout=60, what="the old pod gone")

    # The new process answers and has the canary from its initial list, not from an event.
    def relisted() -> bool:
        try:
            return cached(op) == CANARIES
        except (OSError, ValueError, KeyError):
            return False

    wait_until(relisted, timeout=90, what="the canary listed again")


def test_pyspy_sidecar_dumps_a_python_operator_without_pyspy(
    kube: KubeClient, namespace: str
) -> None:
    scope = Scope(kube, "client-sessions")
    op = deploy("client-sessions", namespace, globs=scope.globs, selector=scope.selector)
    try:
        sidecar = {
            "spec": {
                "template": {
                    "spec": {
                        "shareProcessNamespace": True,
                        "containers": [
                            {
                                "name": "py-spy",
                                "image": "localhost/triage-pyspy:dev",
                                "imagePullPolicy": "Never",
                                "securityContext": {
                                    "runAsUser": 0,
                                    "runAsNonRoot": False,
                                    "capabilities": {"add": ["SYS_PTRACE"]},
                                },
                            }
                        ],
                    }
                }
            }
        }
        kubectl(
            "-n",
            namespace,
            "patch",
            "deployment",
            op.name,
            "--type=strategic",
            "-p",
            json.dumps(sidecar),
        )
        kubectl("-n", namespace, "rollout", "status", f"deployment/{op.name}", "--timeout=120s")
        pod = op.pod()["metadata"]["name"]

        def sidecar_exec(*cmd: str) -> str:
            return kubectl("-n", namespace, "exec", pod, "-c", "py-spy", "--", *cmd)

        # The operator is not PID 1 once the process namespace is shared: find it by cmdline.
        pid = sidecar_exec("pidof", "client-sessions").split()[0]
        assert "client-sessions" in sidecar_exec("cat", f"/proc/{pid}/cmdline")
        dump = wait_until(
            lambda: _dump(sidecar_exec, pid), timeout=30, what="a py-spy dump with the watch thread"
        )
        assert "Operator.watch_namespaces (client_sessions.py" in dump
        assert "Python v3.11" in dump
    finally:
        undeploy(op)


def _dump(run: Any, pid: str) -> str:
    out = run("py-spy", "dump", "--pid", pid)
    return str(out) if "watch_namespaces" in out else ""


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on `port` on this node."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    rows.append(local.rsplit(":", 1)[0])
    return rows


def test_go_pprof_only_when_enabled_and_only_on_loopback(kube: KubeClient, namespace: str) -> None:
    scope = Scope(kube, "go-informer")
    off = deploy("go-informer", namespace, globs=scope.globs, selector=scope.selector)
    try:
        wait_until(lambda: _answers(off), timeout=60, what="go-informer /healthz")
        assert _listening(off.ports["pprof"]) == []
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", off.ports["pprof"]), 2):
            pass
    finally:
        undeploy(off)
    # Go records one allocation per 512 KiB allocated (runtime.MemProfileRate), and Go 1.19
    # resets that rate after reading GODEBUG=memprofilerate, so the knob cannot help. An
    # informer over an empty scope allocates less than one sampling interval: whether its
    # frames showed up was a coin toss, lost in CI. So give it something to cache: 40 sessions
    # of 64 KiB each, listed, decoded and acknowledged (measured in three fresh pods: 21 to 59
    # of 29 to 74 samples carried client-go frames).
    inside = scope.namespace("in-a")
    for i in range(40):
        create_session(kube, inside, f"big-{i}", prompt=f"{i:02d}" + "x" * (64 << 10))
    on = deploy(
        "go-informer",
        namespace,
        globs=scope.globs,
        selector=scope.selector,
        env={"ENABLE_PPROF": "true"},
    )
    try:
        wait_until(lambda: _listening(on.ports["pprof"]), timeout=60, what="the pprof listener")
        assert _listening(on.ports["pprof"]) == ["0100007F"]  # 127.0.0.1, nothing else
        wait_until(
            lambda: _answers(on) and on.health()["synced"],
            timeout=60,
            what="go-informer's caches synced",
        )
        wait_until(
            lambda: all(acked_by(kube, inside, f"big-{i}") for i in range(40)),
            timeout=60,
            what="the 40 large sessions acknowledged",
        )
        # The heap profile is "as of the most recently completed GC": an idle operator that has
        # just listed may not have had one since, so ask for one (gc=1) and look again until the
        # informers' allocations are published.
        url = f"http://127.0.0.1:{on.ports['pprof']}/debug/pprof/heap?gc=1"

        seen: set[str] = set()

        def names() -> set[str]:
            with urllib.request.urlopen(url, timeout=30) as r:
                profile = pprof.parse(r.read())
            assert profile.total() > 0
            # Package initialisers (client-go's scheme.init) are sampled by chance at start:
            # the frames wanted are those of the informer's work, so init is not counted.
            functions = {s.name for s in pprof.function_stats(profile) if ".init" not in s.name}
            seen.update(pprof.package(n) for n in functions)
            return functions

        try:
            wait_until(
                lambda: any("client-go" in n for n in names()),
                timeout=60,
                interval=1,
                what="client-go's frames in the heap profile",
            )
        except pytest.fail.Exception as e:
            raise AssertionError(f"{e}; packages in the profiles: {sorted(seen)}") from e
    finally:
        undeploy(on)
        scope.delete()
