"""Optimistic-concurrency retries, as client-go's `retry.RetryOnConflict` does them.

Every write that starts from an object read earlier can lose a race with another writer
and get 409 Conflict. The answer is always the same: read the object again, apply the same
change to what is there now, write again. `update_with_retry` is that loop, once, for every
caller (session status, annotations, ProjectSettings status, triage's Deployment patch and
restore), so the number of attempts, the backoff and what counts as "gone" cannot differ
between them.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agentic_operator.kube.client import KubeClient
from agentic_operator.kube.errors import ConflictError, KubeError, NotFoundError

__all__ = [
    "DEFAULT_RETRY",
    "Backoff",
    "RetryExhaustedError",
    "retry_on_conflict",
    "update_with_retry",
]

T = TypeVar("T")
Obj = dict[str, Any]


@dataclass(frozen=True)
class Backoff:
    """client-go's `wait.Backoff`: `steps` attempts, sleeping `duration` x `factor`^i +jitter."""

    steps: int = 10
    duration: float = 0.01
    factor: float = 1.0
    jitter: float = 0.1

    def delays(self) -> list[float]:
        d, out = self.duration, []
        for _ in range(self.steps - 1):
            out.append(d * (1 + self.jitter * random.random()))
            d *= self.factor
        return out


#: client-go's DefaultRetry is 5 steps of 10 ms; writers here race up to ten workers.
DEFAULT_RETRY = Backoff()


class RetryExhaustedError(KubeError):
    """Every attempt lost the optimistic-concurrency race."""


def retry_on_conflict(
    fn: Callable[[], T], *, backoff: Backoff = DEFAULT_RETRY, what: str = ""
) -> T:
    """Call `fn` until it does not raise ConflictError; `fn` must re-read what it writes."""
    delays = backoff.delays()
    for delay in [*delays, None]:
        try:
            return fn()
        except ConflictError:
            if delay is None:
                break
            time.sleep(delay)
    raise RetryExhaustedError(
        f"{what or 'update'}: still conflicting after {backoff.steps} attempts"
    )


def update_with_retry(
    client: KubeClient,
    path: str,
    mutate: Callable[[Obj], Obj | None],
    *,
    current: Obj | None = None,
    write_path: str | None = None,
    backoff: Backoff = DEFAULT_RETRY,
) -> Obj | None:
    """GET `path` (or start from `current`), `mutate` it, PUT it; on 409 read again.

    `mutate` gets a fresh object it may change in place and returns the body to PUT, or None
    when nothing needs writing. `write_path` is where the PUT goes (a `/status` subresource).
    Returns the object as stored (or as read, when nothing was written); None when the object
    does not exist (404 on the read or the write).
    """
    # A copy: `mutate` may change what it gets, and `current` is the caller's object.
    state: dict[str, Obj | None] = {"obj": copy.deepcopy(current)}

    def attempt() -> Obj | None:
        obj = state["obj"]
        state["obj"] = None  # any retry starts from a fresh read
        if obj is None:
            obj = client.get_or_none(path)
            if obj is None:
                return None
        body = mutate(obj)
        if body is None:
            return obj
        try:
            return client.replace(write_path or path, body)
        except NotFoundError:
            return None

    return retry_on_conflict(attempt, backoff=backoff, what=path)
