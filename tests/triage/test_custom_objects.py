"""triage.custom_objects: objects of any kind from templates, checked before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage import custom_objects
from triage.errors import UsageError
from triage.scenario import _from_yaml

pytestmark = pytest.mark.unit

WIDGETS = """\
name: widgets
description: Widgets for an operator that caches them.
namespaces: 4
batch_size: 2
namespace_labels: {team: shop}
objects:
  - count: 3
    template:
      apiVersion: example.com/v1
      kind: Widget
      metadata: {name: "widget-{index}", labels: {owner: "{namespace}"}}
      spec: {size: 3, note: "run {run_id} #{n}"}
    status: {phase: Ready}
"""


def test_a_widget_scenario_plans_and_renders(tmp_path: Path) -> None:
    path = tmp_path / "widgets.yaml"
    path.write_text(WIDGETS)
    sc = _from_yaml(path)
    assert [t.kind for t in sc.objects] == ["Widget"] and sc.namespace_labels == {"team": "shop"}
    assert len(sc.plan()) == 2
    (t,) = sc.objects
    body = json.loads(custom_objects.body(t, namespace="ns-1", labels={"run": "r"}, run_id="r1",
                                          ns_index=1, index=2, n=5))  # fmt: skip
    assert body["metadata"] == {"name": "widget-2", "namespace": "ns-1",
                                "labels": {"owner": "ns-1", "run": "r"}}  # fmt: skip
    assert body["spec"] == {"size": 3, "note": "run r1 #5"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.replace("count: 3", "count: 0"),
            r"objects\[0\]\.count must be a whole number",
        ),
        (lambda s: s.replace("kind: Widget", "kind: ''"), r"objects\[0\]\.template\.kind must be"),
        (lambda s: s.replace("widget-{index}", "widget"), r"has no \{index\} or \{n\}"),
        (lambda s: s.replace("{run_id}", "{runid}"), r"unknown placeholder\(s\) \{runid\}"),
        (lambda s: s.replace("widget-{index}", "Widget_{index}"), "not a valid object name"),
        (
            lambda s: s.replace("    status:", "    extra: 1\n    status:"),
            r"unknown field\(s\) extra",
        ),
    ],
)
def test_bad_templates_are_one_line_naming_file_and_field(
    tmp_path: Path, edit: object, message: str
) -> None:
    path = tmp_path / "widgets.yaml"
    path.write_text(edit(WIDGETS))  # type: ignore[operator]
    with pytest.raises(UsageError, match=message) as e:
        _from_yaml(path)
    assert str(path) in e.value.message and "\n" not in e.value.message
