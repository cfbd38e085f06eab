"""Cumulative OOM-kill counting from container restart observations that may be missed.

A sampler that reports "was the last termination an OOM?" as 0/1 loses every OOM whose
sample is dropped, and a per-container map keyed by pod name grows forever because pods
are ephemeral. This counter derives OOMs from restartCount advances instead, so a later
observation still carries an earlier OOM; restarts it could not attribute are reported
separately (`unobserved`) rather than guessed; and per-container state is bounded by a TTL,
a size cap and explicit `forget` when the pod is gone, while per-namespace totals survive.

The triage CLI imports this module too, so it depends on the standard library only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OOM_REASON", "ContainerKey", "OOMCounter", "Observation", "effective_restarts"]

OOM_REASON = "OOMKilled"

ContainerKey = tuple[str, str, str]
"""(namespace, pod, container)."""


@dataclass(slots=True)
class _State:
    count: int
    last_restart: int
    last_seen: float
    uid: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one `observe` call concluded, for logs and tests."""

    confirmed: int  # OOMs newly counted by this observation (0 or 1)
    unobserved: int  # restarts newly seen whose cause was never observed
    first: bool  # the container had no state (new, forgotten or evicted)


def effective_restarts(
    *,
    restart_count: int,
    terminated_reason: str | None,
    last_terminated_reason: str | None,
) -> tuple[int, str | None]:
    """Fold a container that is terminated right now into (restarts, reason).

    With restartPolicy Never (runner pods) an OOM-killed container never restarts: it sits
    in state.terminated with restartCount unchanged. Counting that termination as one more
    restart makes both policies look alike, and when the kubelet does restart it the
    restartCount advance and the lastState carry the same termination, so nothing counts
    twice.
    """
    if terminated_reason is not None:
        return restart_count + 1, terminated_reason
    return restart_count, last_terminated_reason


class OOMCounter:
    """Thread-safe; `count` is a lower bound of the OOMs, `count + unobserved` an upper bound."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 6 * 3600.0,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently seen first, so both the TTL sweep and the size cap pop from the front.
        self._states: OrderedDict[ContainerKey, _State] = OrderedDict()
        self._totals: dict[str, int] = {}
        self._unobserved: dict[str, int] = {}
        self._next_sweep = 0.0

    def observe(
        self,
        key: ContainerKey,
        restart_count: int,
        last_reason: str | None,
        now: float | None = None,
        *,
        uid: str | None = None,
    ) -> Observation:
        """Record one look at a container: its restartCount and its last termination reason.

        `restart_count` is the effective count (`effective_restarts`), which folds a
        container terminated right now into one more restart. That count drops back by one
        when the kubelet moves the container from terminated to waiting (CrashLoopBackOff)
        before restartCount has advanced, so for the same pod (`uid`) a decrease is that
        flip and is ignored; only a different uid under the same name is a new pod. Without
        a uid, a decrease has to be taken as a new pod.
        """
        if now is None:
            now = self._clock()
        oom = last_reason == OOM_REASON
        with self._lock:
            self._sweep_locked(now)
            st = self._states.get(key)
            same_pod = st is not None and uid is not None and st.uid == uid
            new_pod = st is not None and uid is not None and st.uid not in (None, uid)
            if st is None or new_pod or (restart_count < st.last_restart and not same_pod):
                # New to us, or a new pod reusing the name: restarts from before we started
                # watching are not claimed, but the termination we can see is counted once.
                confirmed = 1 if oom and restart_count > 0 else 0
                self._states[key] = _State(confirmed, restart_count, now, uid)
                self._states.move_to_end(key)
                self._add_locked(key[0], confirmed, 0)
                self._cap_locked()
                return Observation(confirmed, 0, True)
            st.last_seen = now
            st.uid = st.uid or uid
            self._states.move_to_end(key)
            advance = restart_count - st.last_restart
            if advance <= 0:
                return Observation(0, 0, False)
            st.last_restart = restart_count
            # Only the latest restart's reason is visible; the ones before it went unseen
            # and are neither dropped nor claimed as OOMs.
            confirmed = 1 if oom else 0
            missed = advance - 1
            st.count += confirmed
            self._add_locked(key[0], confirmed, missed)
            return Observation(confirmed, missed, False)

    def forget(self, namespace: str, pod: str) -> int:
        """Drop the per-container state of a pod that is gone; totals are kept."""
        with self._lock:
            doomed = [k for k in self._states if k[0] == namespace and k[1] == pod]
            for k in doomed:
                del self._states[k]
            return len(doomed)

    def evict_expired(self, now: float | None = None) -> int:
        """Drop state not seen for the TTL (a pod whose deletion we never saw)."""
        with self._lock:
            return self._evict_locked(self._clock() if now is None else now)

    def total(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                return sum(self._totals.values())
            return self._totals.get(namespace, 0)

    def unobserved(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                return sum(self._unobserved.values())
            return self._unobserved.get(namespace, 0)

    def totals(self) -> dict[str, int]:
        """Confirmed OOMs per namespace (cumulative, never decreases)."""
        with self._lock:
            return dict(self._totals)

    def unobserved_totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._unobserved)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    # -- internals ----------------------------------------------------------------------------

    def _add_locked(self, namespace: str, confirmed: int, missed: int) -> None:
        if confirmed:
            self._totals[namespace] = self._totals.get(namespace, 0) + confirmed
        if missed:
            self._unobserved[namespace] = self._unobserved.get(namespace, 0) + missed

    def _sweep_locked(self, now: float) -> None:
        # A full sweep per observation would be quadratic; once per tenth of the TTL is enough.
        if now >= self._next_sweep:
            self._evict_locked(now)
            self._next_sweep = now + max(self._ttl / 10.0, 1.0)

    def _evict_locked(self, now: float) -> int:
        cutoff = now - self._ttl
        n = 0
        while self._states:
            key, st = next(iter(self._states.items()))
            if st.last_seen > cutoff:
                break
            del self._states[key]
            n += 1
        return n

    def _cap_locked(self) -> None:
        while len(self._states) > self._max:
            self._states.popitem(last=False)
