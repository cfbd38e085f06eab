"""The run's journal: the operator Deployment exactly as it was, written before any change.

The upstream reproducer restored from shell variables, so absent limits stayed set and env
vars that had existed were deleted. Here the whole original object is on disk, fsync'd,
before the first mutation, and every step is appended the same way: `triage restore RUN_DIR`
can put the Deployment back after a crash or kill -9 with nothing but this file.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from triage.errors import UsageError
from triage.rundir.writer import atomic_write_text

SCHEMA = 1
FILENAME = "journal.json"

#: Metadata the apiserver or controllers own; everything else in metadata is the user's.
SERVER_ANNOTATIONS = frozenset({"deployment.kubernetes.io/revision"})


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    # Written and fsync'd before the change it records is made: after a crash the file is
    # either the old or the new version, never a torn one.
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def user_metadata(deployment: dict[str, Any]) -> dict[str, Any]:
    """The parts of metadata that belong to the user (labels, annotations)."""
    meta = deployment.get("metadata", {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in SERVER_ANNOTATIONS
    }
    return {"labels": dict(meta.get("labels") or {}), "annotations": annotations}


class Journal:
    """journal.json in a run directory; loaded, appended to, never edited in place."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._data = data

    @classmethod
    def create(
        cls, run_dir: Path, *, cluster: Any, deployment: dict[str, Any], run_id: str = ""
    ) -> Journal:
        """Record `deployment` (as read from the server) before anything changes it."""
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = deployment["metadata"]
        data = {
            "schema": SCHEMA,
            "run_id": run_id or run_dir.name,
            "created_at": time.time(),
            "cluster": {
                "context": cluster.context,
                "server": cluster.server,
                "kubeconfig": cluster.kubeconfig,
            },
            "deployment": {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "generation": meta.get("generation"),
            },
            "original": {
                "metadata": user_metadata(deployment),
                "spec": copy.deepcopy(deployment["spec"]),
            },
            "steps": [],
        }
        journal = cls(run_dir / FILENAME, data)
        _atomic_write(journal.path, data)
        return journal

    @classmethod
    def load(cls, run_dir: Path) -> Journal:
        path = run_dir / FILENAME
        if not path.is_file():
            raise UsageError(f"{run_dir} is not a run directory: {FILENAME} is missing")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"{path} is not a readable journal: {e}") from e
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or "original" not in data:
            raise UsageError(f"{path} is not a triage journal (schema {SCHEMA})")
        return cls(path, data)

    @property
    def namespace(self) -> str:
        return str(self._data["deployment"]["namespace"])

    @property
    def name(self) -> str:
        return str(self._data["deployment"]["name"])

    @property
    def uid(self) -> str | None:
        uid = self._data["deployment"].get("uid")
        return None if uid is None else str(uid)

    @property
    def original_spec(self) -> dict[str, Any]:
        return copy.deepcopy(self._data["original"]["spec"])

    @property
    def original_metadata(self) -> dict[str, Any]:
        return copy.deepcopy(self._data["original"]["metadata"])

    @property
    def cluster(self) -> dict[str, Any]:
        return dict(self._data["cluster"])

    @property
    def steps(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._data["steps"])

    @property
    def run_id(self) -> str:
        return str(self._data.get("run_id") or self.path.parent.name)

    @property
    def applied_spec(self) -> dict[str, Any] | None:
        """The spec triage applied, for a three-way restore.

        As the apiserver stored it ("patched") when that was recorded; as sent ("patch")
        when the run died between the PUT and its record.
        """
        for step in reversed(self._data["steps"]):
            spec = step.get("spec")
            if step.get("step") in ("patch", "patched") and isinstance(spec, dict):
                return copy.deepcopy(spec)
        return None

    @property
    def lock(self) -> dict[str, Any] | None:
        """The run lock triage took (namespace, name), if it took one."""
        for step in self._data["steps"]:
            if step.get("step") == "lock":
                return {"namespace": step["namespace"], "name": step["name"]}
        return None

    @property
    def created(self) -> list[dict[str, Any]]:
        """Objects triage created beside the Deployment (a ConfigMap for the launcher...)."""
        return [
            {"path": s["path"], "kind": s.get("kind", "")}
            for s in self._data["steps"]
            if s.get("step") == "create"
        ]

    def record(self, step: str, **details: Any) -> None:
        """Append a step; written to disk before the step's change is made."""
        self._data["steps"].append({"step": step, "at": time.time(), **details})
        _atomic_write(self.path, self._data)
