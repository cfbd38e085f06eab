"""`triage reproduce --dry-run`: exactly what a run would change, and nothing changed.

A person about to lower the memory limit of someone's operator should see the diff first:
the Deployment as it is against the spec the run would apply, the objects created beside it
(a profiler's ConfigMap, the run lock), and what the load would create, batch by batch.
Every check of a real run (preflight, RBAC, admission of the patched pod, the lock) runs;
no object is written.
"""

from __future__ import annotations

import difflib

import yaml
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from triage.cluster import Cluster
from triage.lock import lock_name
from triage.options import ReproduceOptions, Validated
from triage.preflight import Checked, admission_dry_run
from triage.profiling import Factory
from triage.quantity import format_bytes
from triage.rundir import RunWriter


def show_plan(
    cluster: Cluster,
    *,
    options: ReproduceOptions,
    valid: Validated,
    checked: Checked,
    console: Console,
) -> None:
    from tempfile import TemporaryDirectory

    from triage.reproduce import plan_changes

    target = checked.target
    with TemporaryDirectory() as scratch:  # a profiler needs a writer; nothing is kept
        profiler = Factory(valid.profiler).build(
            cluster,
            run=RunWriter(__import__("pathlib").Path(scratch), run_id="dry-run"),
            target=target,
        )
        profiler.preflight(pod=checked.pod)
        spec, created = plan_changes(options, valid, checked, profiler)
        profiler.close()
    admission_dry_run(cluster, namespace=target.namespace, spec=spec)
    before = yaml.safe_dump(checked.deployment["spec"], sort_keys=True).splitlines()
    after = yaml.safe_dump(spec, sort_keys=True).splitlines()
    diff = "\n".join(
        difflib.unified_diff(
            before, after, f"{target.namespace}/{target.deployment} (now)", "(during the run)",
            lineterm="",
        )
    )  # fmt: skip
    console.print(
        f"[bold]dry run[/bold]: nothing was changed. A run would patch Deployment "
        f"{target.namespace}/{target.deployment} (container {target.container}) to a "
        f"{format_bytes(valid.limit_bytes)} limit with profile {valid.profiler.kind}:",
        highlight=False,
    )
    console.print(Syntax(diff or "(no change)", "diff", background_color="default"))
    if valid.profiler.kind == "memray" and checked.pod is not None:
        from triage.reproduce import UNPROFILED_ANNOTATION

        console.print(
            "Before that, the same spec without memray is rolled out once (pod annotation "
            f"{UNPROFILED_ANNOTATION}), to read memray's own fixed cost on a fresh pod.",
            highlight=False,
        )
    table = Table(title="objects the run would create", show_lines=False)
    table.add_column("kind")
    table.add_column("where")
    table.add_column("count", justify="right")
    table.add_row("Lease (run lock)", f"{target.namespace}/{lock_name(target.deployment)}", "1")
    for obj in created:
        table.add_row(obj.kind, obj.path, "1")
    totals = valid.scenario.totals()
    sc = valid.scenario
    table.add_row("Namespace", f"oom-repro-<run>-NNNN ({totals['managed_namespaces']} managed)",
                  str(totals["namespaces"]))  # fmt: skip
    if totals["sessions"]:
        table.add_row("AgenticSession", f"{sc.sessions_per_ns} per namespace, phase "
                      f"{sc.session_phase or 'left to the operator'}", str(totals["sessions"]))  # fmt: skip
    if totals["pods"]:
        table.add_row("Pod", "noise and parked runner pods", str(totals["pods"]))
    for t in sc.objects:
        table.add_row(t.kind, f"{t.count} per namespace ({t.api_version})",
                      str(t.count * totals["namespaces"]))  # fmt: skip
    console.print(table)
    console.print(
        f"{valid.plans} batch(es) of {sc.batch_size} namespace(s); the run stops at the first "
        "OOMKill. Nothing was changed on the cluster.",
        highlight=False,
    )
