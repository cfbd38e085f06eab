"""Helpers shared by the operator tests (beside the fixtures in conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.operator.conftest import InProcessOperator, start_in_process


@contextlib.contextmanager
def caches_only(kubeconfig: Path, **overrides: Any) -> Iterator[InProcessOperator]:
    """The operator in-process with its caches synced and no controller running: the test
    calls the reconcilers itself. Closed on the way out whatever the test asserted."""
    holder = start_in_process(kubeconfig, controllers=False, **overrides)
    try:
        yield holder
    finally:
        holder.close()
