"""Objects of any kind from templates, so a user's operator can be loaded without code.

A user whose operator watches `Widget` resources writes a scenario with an `objects:` list:

    objects:
      - count: 10                      # per namespace
        template:
          apiVersion: example.com/v1
          kind: Widget
          metadata: {name: "widget-{index}", labels: {size: large}}
          spec: {owner: "{namespace}", replicas: 3}
        status: {phase: Ready}         # optional: written through the status subresource

Placeholders in any string: {run_id}, {namespace}, {ns_index}, {index} (0-based within the
namespace), {n} (0-based across the run). A bad template is one line naming the file and
the field; a kind the cluster does not serve fails preflight naming the missing CRD, before
anything is created.
"""

from __future__ import annotations

import copy
import json
import re
import string
from dataclasses import dataclass
from typing import Any

from triage.errors import PreflightError, UsageError

PLACEHOLDERS = frozenset({"run_id", "namespace", "ns_index", "index", "n"})
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class ObjectTemplate:
    api_version: str
    kind: str
    count: int
    template: dict[str, Any]
    status: dict[str, Any] | None
    source: str

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version


@dataclass(frozen=True)
class ServedKind:
    """Where the apiserver serves a template's kind."""

    plural: str
    namespaced: bool
    status_subresource: bool

    def collection(self, t: ObjectTemplate, namespace: str) -> str:
        group, version = t.group_version
        root = f"/apis/{group}/{version}" if group else f"/api/{version}"
        return (
            f"{root}/namespaces/{namespace}/{self.plural}"
            if self.namespaced
            else f"{root}/{self.plural}"
        )


def _fields(value: Any) -> set[str]:
    """Placeholder names used in every string of `value`."""
    out: set[str] = set()
    if isinstance(value, str):
        for _, name, _, _ in string.Formatter().parse(value):
            if name is not None:
                out.add(name)
    elif isinstance(value, dict):
        for k, v in value.items():
            out |= _fields(k) | _fields(v)
    elif isinstance(value, list):
        for v in value:
            out |= _fields(v)
    return out


def parse_templates(raw: object, *, source: str) -> tuple[ObjectTemplate, ...]:
    """Validate a scenario's `objects:`; UsageError naming the file and the field."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UsageError(f"{source}: objects must be a list of {{count, template, status}}")
    out: list[ObjectTemplate] = []
    for i, item in enumerate(raw):
        where = f"{source}: objects[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where} must be a mapping with count and template")
        unknown = set(item) - {"count", "template", "status"}
        if unknown:
            raise UsageError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))}; accepted: count, template, status"
            )
        count = item.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"{where}.count must be a whole number of at least 1, got {count!r}")
        tpl = item.get("template")
        if not isinstance(tpl, dict):
            raise UsageError(
                f"{where}.template must be a mapping (apiVersion, kind, metadata, spec)"
            )
        for key in ("apiVersion", "kind"):
            if not isinstance(tpl.get(key), str) or not tpl[key]:
                raise UsageError(f"{where}.template.{key} must be a non-empty string")
        meta = tpl.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise UsageError(
                f'{where}.template.metadata.name must be a string like "widget-{{index}}"'
            )
        if "index" not in _fields(meta["name"]) and "n" not in _fields(meta["name"]) and count > 1:
            raise UsageError(
                f"{where}.template.metadata.name {meta['name']!r} has no {{index}} or {{n}}: "
                f"{count} objects per namespace would share one name"
            )
        status = item.get("status")
        if status is not None and not isinstance(status, dict):
            raise UsageError(f"{where}.status must be a mapping written as the object's status")
        bad = _fields(tpl) - PLACEHOLDERS
        if status is not None:
            bad |= _fields(status) - PLACEHOLDERS
        if bad:
            raise UsageError(
                f"{where}: unknown placeholder(s) {', '.join('{' + b + '}' for b in sorted(bad))}; "
                f"accepted: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            )
        sample = render(tpl, run_id="r", namespace="ns", ns_index=0, index=0, n=0)
        name = sample["metadata"]["name"]
        if not _NAME.match(name) or len(name) > 253:
            raise UsageError(
                f"{where}.template.metadata.name renders to {name!r}, not a valid object name "
                "(lowercase letters, digits, '-' and '.')"
            )
        out.append(
            ObjectTemplate(
                api_version=tpl["apiVersion"],
                kind=tpl["kind"],
                count=count,
                template=copy.deepcopy(tpl),
                status=copy.deepcopy(status),
                source=where,
            )
        )
    return tuple(out)


def render(value: Any, **values: Any) -> Any:
    """`value` with every placeholder filled in (strings only; keys too)."""
    if isinstance(value, str):
        return value.format(**values) if "{" in value else value
    if isinstance(value, dict):
        return {render(k, **values): render(v, **values) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, **values) for v in value]
    return value


def body(t: ObjectTemplate, *, namespace: str, labels: dict[str, str], **values: Any) -> bytes:
    doc = render(t.template, namespace=namespace, **values)
    meta = doc.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    return json.dumps(doc, separators=(",", ":")).encode()


def resolve(client: Any, t: ObjectTemplate) -> ServedKind:
    """Where the cluster serves `t`'s kind, by discovery; PreflightError naming the CRD if none."""
    group, version = t.group_version
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    try:
        doc = client.get(path)
    except Exception as e:
        raise PreflightError(
            f"{t.source}: {t.kind} ({t.api_version}) is not served by the cluster: install its "
            f"CRD first (discovery of {path}: {e.__class__.__name__})"
        ) from e
    for r in doc.get("resources", []):
        if r.get("kind") == t.kind and "/" not in r.get("name", ""):
            subs = {x.get("name") for x in doc["resources"]}
            return ServedKind(
                plural=r["name"],
                namespaced=bool(r.get("namespaced")),
                status_subresource=f"{r['name']}/status" in subs,
            )
    raise PreflightError(
        f"{t.source}: the cluster serves {t.api_version} but no kind {t.kind} in it: is its CRD installed?"
    )
