"""The operator's reconcilers (namespaces, ProjectSettings, sessions) and their wiring.

Kept apart from the generic runtime (`_informer`, `_controller`, `kube`) so the domain
logic can be read, and tested in-process against a real cluster, on its own.
"""

from agentic_operator._reconcile.manager import Operator

__all__ = ["Operator"]
