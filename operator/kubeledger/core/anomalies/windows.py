"""The windowed detectors: one identity changing many objects, a namespace rolling back or
failing again and again.

State is kept in memory only: for each identity (burst) or namespace (spikes), the
records of the last window, by their ``observedAt``. Records are taken in the order they
are sealed into the chain, so what is flagged follows from the chain itself: replaying
the same records through a fresh :class:`Windows` flags the same records. A restart
starts with empty windows: a burst or spike that spans it is counted from the restart on
(missed rather than counted twice); records found after the fact (a catch-up) carry the
time they were seen, not made, and count in no window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from datetime import datetime

from kubeledger.core.anomalies.policy import Policy, Threshold
from kubeledger.core.anomalies.rules import NOT_WRITES
from kubeledger.core.model import Action, AnomalyKind, Observation, RecordSpec


class Window:
    """Events per key within a sliding span of time; forgets what falls out of it."""

    def __init__(self, threshold: Threshold) -> None:
        self._threshold = threshold
        self._seen: dict[str, deque[tuple[datetime, Hashable]]] = {}

    def add(self, key: str, at: datetime, item: Hashable) -> int | None:
        """Adds one event; the number of distinct items in the window when over the
        threshold, else None."""
        seen = self._seen.setdefault(key, deque())
        seen.append((at, item))
        self._forget(at)
        distinct = len({entry for _, entry in self._seen.get(key, ())})
        return distinct if distinct > self._threshold.count else None

    def _forget(self, now: datetime) -> None:
        oldest = now - self._threshold.within
        for key in list(self._seen):
            seen = self._seen[key]
            while seen and seen[0][0] < oldest:
                seen.popleft()
            if not seen:
                del self._seen[key]


class Windows:
    """The burst and spike detectors, with the windows they keep."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._burst = Window(policy.burst)
        self._rollbacks = Window(policy.rollback_spike)
        self._failures = Window(policy.failure_spike)

    def flag(self, spec: RecordSpec) -> Iterator[tuple[AnomalyKind, str]]:
        """Counts the record into its windows; yields the anomalies it brings about."""
        if spec.observation is not Observation.LIVE:
            return
        at, policy = spec.observedAt, self._policy
        username = spec.initiator.username
        if username and spec.action not in NOT_WRITES and policy.enabled(AnomalyKind.BURST):
            changed = self._burst.add(username, at, spec.subject.uid)
            if changed is not None:
                yield AnomalyKind.BURST, (
                    f"{username} changed {changed} objects within "
                    f"{_minutes(policy.burst)} (more than {policy.burst.count})")
        namespace = spec.subject.namespace or ""
        for action, kind, window, threshold, what in (
                (Action.ROLLED_BACK, AnomalyKind.ROLLBACK_SPIKE, self._rollbacks,
                 policy.rollback_spike, "rollbacks"),
                (Action.ROLLOUT_FAILED, AnomalyKind.FAILURE_SPIKE, self._failures,
                 policy.failure_spike, "failed rollouts")):
            if spec.action is action and policy.enabled(kind):
                # Each record counts once: keyed by its subject and version.
                count = window.add(namespace, at, (spec.subject.uid,
                                                   spec.subject.resourceVersion))
                if count is not None:
                    yield kind, (f"{count} {what} in namespace {namespace or '(cluster)'} "
                                 f"within {_minutes(threshold)} (more than {threshold.count})")


def _minutes(threshold: Threshold) -> str:
    return f"{threshold.within.total_seconds() / 60:g} minutes"
