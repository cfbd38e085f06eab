"""ProjectSettings -> the project's RBAC and LimitRange, owned by the ProjectSettings.

Every object is labelled managed and owned by the ProjectSettings, so deleting it lets the
garbage collector remove them, and only the singleton named `projectsettings` is honoured:
a v1.20 apiserver cannot enforce that name (no CEL), so the operator does, by ignoring any
other name. Writes are create-then-compare: an existing object that already matches costs
one GET and no write, which keeps a re-list of hundreds of projects cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from agentic_operator import _objects as objs
from agentic_operator._controller import Result
from agentic_operator._kube import ApiError, KubeClient, KubeError, api_path
from agentic_operator._reconcile.context import (
    Context,
    delete_ignoring_missing,
    get_or_none,
    reconcile_measured,
    settings_path,
)

__all__ = ["ProjectSettingsReconciler", "ensure_object"]

log = logging.getLogger(__name__)

_ERROR_REQUEUE = 5.0
_RETRIES = 10
Obj = dict[str, Any]


def _differs(existing: Obj, desired: Obj, fields: tuple[str, ...]) -> bool:
    if any(existing.get(f) != desired.get(f) for f in fields):
        return True
    em = existing.get("metadata") or {}
    dm = desired["metadata"]
    labels = em.get("labels") or {}
    if any(labels.get(k) != v for k, v in (dm.get("labels") or {}).items()):
        return True
    want_uids = {r["uid"] for r in dm.get("ownerReferences") or ()}
    have_uids = {r.get("uid") for r in em.get("ownerReferences") or () if isinstance(r, dict)}
    return not want_uids <= have_uids


def ensure_object(
    client: KubeClient,
    collection: str,
    desired: Obj,
    *,
    fields: tuple[str, ...],
    immutable: tuple[str, ...] = (),
) -> bool:
    """Create `desired`, or bring an existing object's `fields`, labels and owner in line.

    Returns True when the object exists as desired afterwards. A difference in an
    `immutable` field (a RoleBinding's roleRef) means delete and create again.
    """
    path = f"{collection}/{desired['metadata']['name']}"
    for _ in range(_RETRIES):
        try:
            client.create(collection, desired)
            return True
        except ApiError as e:
            if not e.already_exists:
                raise
        existing = get_or_none(client, path)
        if existing is None:
            continue
        if not _differs(existing, desired, fields + immutable):
            return True
        if any(existing.get(f) != desired.get(f) for f in immutable):
            delete_ignoring_missing(client, path)
            continue
        merged = dict(existing)
        for f in fields:
            merged[f] = desired.get(f)
        meta = dict(existing.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **(desired["metadata"].get("labels") or {})}
        refs = [r for r in meta.get("ownerReferences") or () if isinstance(r, dict)]
        have = {r.get("uid") for r in refs}
        refs += [
            r for r in desired["metadata"].get("ownerReferences") or () if r["uid"] not in have
        ]
        meta["ownerReferences"] = refs
        merged["metadata"] = meta
        try:
            client.replace(path, merged)
            return True
        except ApiError as e:
            if e.conflict or e.not_found:
                continue
            raise
    raise KubeError(f"could not converge {path}")


class ProjectSettingsReconciler:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._client = ctx.client

    def __call__(self, key: str) -> Result:
        ns, sep, name = key.partition("/")
        if not sep:
            return Result()
        return reconcile_measured(
            self._ctx,
            kind="ProjectSettings",
            key=key,
            reconcile=lambda: self._reconcile(ns, name),
            logger=log,
            error_requeue=_ERROR_REQUEUE,
        )

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
        ps = get_or_none(self._client, settings_path(ns, name))
        if ps is None or (ps.get("metadata") or {}).get("deletionTimestamp"):
            return
        c = self._client
        rbs = api_path(
            group="rbac.authorization.k8s.io", version="v1", plural="rolebindings", namespace=ns
        )
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
                api_path(version="v1", plural="serviceaccounts", namespace=ns),
                objs.trigger_service_account(ps),
                fields=(),
            )
            and ensure_object(
                c,
                api_path(
                    group="rbac.authorization.k8s.io", version="v1", plural="roles", namespace=ns
                ),
                objs.trigger_role(ps),
                fields=("rules",),
            )
            and ensure_object(
                c, rbs, objs.trigger_role_binding(ps), fields=("subjects",), immutable=("roleRef",)
            )
        )
        limits_ready = ensure_object(
            c,
            api_path(version="v1", plural="limitranges", namespace=ns),
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
                delete_ignoring_missing(self._client, f"{rbs}/{name}")

    def _write_status(self, ns: str, ps: Obj, fields: dict[str, Any]) -> None:
        obj: Obj | None = ps
        path = settings_path(ns, objs.PROJECT_SETTINGS_NAME, "status")
        for _ in range(_RETRIES):
            if obj is None:
                obj = get_or_none(self._client, settings_path(ns, objs.PROJECT_SETTINGS_NAME))
                if obj is None:
                    return
            status = dict(obj.get("status") or {})
            if all(status.get(k) == v for k, v in fields.items()):
                return
            status.update(fields)
            body = dict(obj)
            body["status"] = status
            try:
                self._client.replace(path, body)
                return
            except ApiError as e:
                if e.not_found:
                    return
                if e.conflict:
                    obj = None
                    continue
                raise
        raise KubeError(f"status of {ns}/{objs.PROJECT_SETTINGS_NAME}: still conflicting")
