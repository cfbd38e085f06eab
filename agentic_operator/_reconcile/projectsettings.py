"""ProjectSettings -> the project's RBAC and LimitRange, owned by the ProjectSettings.

Every object is labelled managed and owned by the ProjectSettings, so deleting it lets the
garbage collector remove them. Upstream leaves its group RoleBindings without an owner and
never prunes them, so a group removed from groupAccess keeps its access; here they are owned
and pruned (a divergence kept on purpose, see docs/fidelity.md). Only the singleton named
`projectsettings` is honoured: the CRD rejects any other name, and the operator ignores one
that got in before the CRD said so. Writes are create-then-compare (`ensure_object`), which
keeps a re-list of hundreds of projects cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from agentic_operator import _objects as objs
from agentic_operator._controller import Outcome, Result
from agentic_operator._reconcile.context import Context, outcome_of
from agentic_operator._reconcile.ensure import ensure_object
from agentic_operator.contract import PROJECT_SETTINGS
from agentic_operator.kube import update_with_retry
from agentic_operator.resources import LIMIT_RANGES, ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS

__all__ = ["ProjectSettingsReconciler"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ProjectSettingsReconciler:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._client = ctx.client

    def __call__(self, key: str) -> Outcome:
        ns, sep, name = key.partition("/")
        if not sep:
            return Result(), None
        return outcome_of(lambda: self._reconcile(ns, name))

    def _reconcile(self, ns: str, name: str) -> None:
        if not self._ctx.managed(ns):
            return
        if name != objs.PROJECT_SETTINGS_NAME:
            log.warning(
                "projectsettings %s/%s ignored: the singleton must be named %r",
                ns,
                name,
                objs.PROJECT_SETTINGS_NAME,
            )
            return
        self._ctx.timeouts.invalidate(ns)
        ps = self._client.get_or_none(PROJECT_SETTINGS.path(ns, name))
        if ps is None or (ps.get("metadata") or {}).get("deletionTimestamp"):
            return
        c = self._client
        rbs = ROLE_BINDINGS.path(ns)
        wanted: set[str] = set()
        bindings = 0
        for item in (ps.get("spec") or {}).get("groupAccess") or ():
            group = str((item or {}).get("groupName") or "")
            role = str((item or {}).get("role") or "")
            if not group or role not in objs.PROJECT_ROLES:
                continue
            rb = objs.group_role_binding(ps, group=group, role=role)
            if rb["metadata"]["name"] in wanted:
                continue
            wanted.add(rb["metadata"]["name"])
            if ensure_object(c, rbs, rb, fields=("subjects",), immutable=("roleRef",)):
                bindings += 1
        self._prune_bindings(ns, ps, wanted, rbs)
        rbac_ready = (
            ensure_object(
                c,
                SERVICE_ACCOUNTS.path(ns),
                objs.trigger_service_account(ps),
                fields=(),
            )
            and ensure_object(
                c,
                ROLES.path(ns),
                objs.trigger_role(ps),
                fields=("rules",),
            )
            and ensure_object(
                c, rbs, objs.trigger_role_binding(ps), fields=("subjects",), immutable=("roleRef",)
            )
        )
        limits_ready = ensure_object(
            c,
            LIMIT_RANGES.path(ns),
            objs.limit_range(ps),
            fields=("spec",),
        )
        self._write_status(
            ns,
            ps,
            {
                "groupBindingsCreated": bindings,
                "scheduledSessionRBACReady": bool(rbac_ready),
                "limitRangeReady": bool(limits_ready),
            },
        )

    def _prune_bindings(self, ns: str, ps: Obj, wanted: set[str], rbs: str) -> None:
        """Remove group RoleBindings this ProjectSettings made for entries since removed."""
        uid = ps["metadata"]["uid"]
        listing = self._client.list(rbs, params={"labelSelector": f"{objs.MANAGED_LABEL}=true"})
        for rb in listing.get("items") or ():
            meta = rb.get("metadata") or {}
            name = str(meta.get("name") or "")
            if name == objs.TRIGGER_NAME or name in wanted:
                continue
            if (rb.get("roleRef") or {}).get("kind") != "ClusterRole":
                continue
            if any(r.get("uid") == uid for r in meta.get("ownerReferences") or ()):
                self._client.delete_if_present(f"{rbs}/{name}")

    def _write_status(self, ns: str, ps: Obj, fields: dict[str, Any]) -> None:
        def mutate(obj: Obj) -> Obj | None:
            status = obj.get("status") or {}
            if all(status.get(k) == v for k, v in fields.items()):
                return None
            obj["status"] = {**status, **fields}
            return obj

        name = objs.PROJECT_SETTINGS_NAME
        update_with_retry(
            self._client,
            PROJECT_SETTINGS.path(ns, name),
            mutate,
            current=ps,
            write_path=PROJECT_SETTINGS.path(ns, name, "status"),
        )
