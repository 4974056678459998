"""Delivery insights: deployments, rollbacks, failed rollouts and time to restore, from records.

Pure: folds AuditRecords (``model.RecordSpec``), one workload at a time in chain order, into
what each record counts as (:class:`Outcome`), and sums the outcomes of a time window per
namespace and per workload (:func:`report`). The same fold feeds the operator's counters
as records are written (``recording.recorder``) and ``kubeledger report`` reading the
trail back (``cli.report``), so both count the same way. The README's "Delivery report"
says what each figure means.

A workload's rollouts are read from its records' snapshots, not from the action alone:
a record whose pod template differs from the workload's previous record starts a rollout
(its cause is the record's action: ``rolled-back`` a rollback, ``rollout-restarted`` a
restart, anything else a deployment), and the snapshot's rollout phase says when that
rollout completed or failed. A change and its rollout's end seen in one watch event (kopf
delivers only the latest of quick successive events) then still count, and a rollout that
completes after a scale (no new template) is no deployment.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from kubeledger.core import projection, revisions
from kubeledger.core.model import Action, RecordSpec

Phase = projection.RolloutPhase
# What a record is of a workload that did not start a rollout: the object was there
# already when kubeledger first listed it, its rollout is not one we saw begin.
_NOT_A_ROLLOUT = frozenset({Action.INVENTORIED})
_GONE = frozenset({Action.DELETED, Action.DELETED_WHILE_UNOBSERVED})
# Change paths (``core.diff``) of the pod template and of the projection's rollout phase.
_TEMPLATE_PATH = "spec.template"
_PHASE_PATH = "rollout.phase"


class Cause(Enum):
    """Why a rollout happened: only a deployment's completion counts as a deployment."""

    DEPLOYMENT = "deployment"  # a new image or configuration (or a new workload)
    ROLLBACK = "rollback"      # back to an earlier pod template: restores, ships nothing new
    RESTART = "restart"        # the same pods again (``kubectl rollout restart``)


@dataclass(frozen=True)
class Outcome:
    """What one record counts as (all zero for most records)."""

    deployment: bool = False
    rollback: bool = False
    failed_rollout: bool = False
    # A failed rollout, or a rollback of a rollout not already counted as failed.
    failed_change: bool = False
    # Seconds from each failed rollout this record's completed rollout restores.
    restored_after: tuple[float, ...] = ()

    @property
    def counts(self) -> bool:
        return (self.deployment or self.rollback or self.failed_rollout
                or bool(self.restored_after))


NOTHING = Outcome()


@dataclass(slots=True)
class _Rollout:
    cause: Cause
    failed: bool = False
    completed: bool = False


@dataclass(slots=True)  # one per workload
class _Workload:
    """What the fold remembers of one workload (by uid) between its records."""

    template: bytes | None = None
    phase: str | None = None
    rollout: _Rollout | None = None
    # When each failed rollout not yet followed by a completed one failed.
    failed_at: list[datetime] = field(default_factory=list)


class Tracker:
    """Tells what each record counts as; fed each workload's records in chain order.

    Holds a few fields per workload (a template fingerprint, a phase, the open failures),
    forgotten when the workload is deleted.
    """

    def __init__(self) -> None:
        self._workloads: dict[str, _Workload] = {}

    def observe(self, spec: RecordSpec) -> Outcome:
        """What ``spec`` counts as, given the workload's earlier records."""
        uid = spec.subject.uid
        if spec.action in _GONE:
            self._workloads.pop(uid, None)
            return NOTHING
        snapshot = spec.snapshot or {}
        if "spec" not in snapshot or "template" not in snapshot["spec"]:
            return NOTHING  # not a workload: RBAC, admission policies, the CRD
        template = revisions.template_fingerprint(snapshot)
        phase = (snapshot.get("rollout") or {}).get("phase")
        state = self._workloads.get(uid)
        if state is None:
            # The first record seen of it (the tracker started late, retention removed
            # the earlier ones): what came before is read from the record's own changes.
            state = self._workloads[uid] = _Workload(
                template=None if _touches_template(spec) else template,
                phase=_phase_before(spec, phase))
        rollback = failed_change = False
        if template is not None and template != state.template:
            if spec.action is Action.ROLLED_BACK:
                rollback = True
                # A rollback undoes a bad change; one that already failed counted then.
                failed_change = state.rollout is None or not state.rollout.failed
            if spec.action not in _NOT_A_ROLLOUT:
                state.rollout = _Rollout(_cause(spec.action))
                state.phase = None  # its own rollout: whatever phase follows is its
            state.template = template
        outcome = Outcome(rollback=rollback, failed_change=failed_change)
        if phase != state.phase:
            outcome = self._ended(state, phase, spec.observedAt, outcome)
        state.phase = phase
        return outcome

    @staticmethod
    def _ended(state: _Workload, phase: str | None, at: datetime, outcome: Outcome) -> Outcome:
        rollout = state.rollout
        if phase == Phase.FAILED:
            state.failed_at.append(at)
            if rollout is not None:
                rollout.failed = True
            return Outcome(rollback=outcome.rollback, failed_rollout=True, failed_change=True)
        if phase == Phase.COMPLETE:
            restored = tuple((at - failed).total_seconds() for failed in state.failed_at)
            state.failed_at.clear()
            deployment = (rollout is not None and not rollout.completed
                          and rollout.cause is Cause.DEPLOYMENT)
            if rollout is not None:
                rollout.completed = True
            return Outcome(deployment=deployment, rollback=outcome.rollback,
                           failed_change=outcome.failed_change, restored_after=restored)
        return outcome


def _touches_template(spec: RecordSpec) -> bool:
    return spec.changesTruncated or any(
        change.path.startswith(_TEMPLATE_PATH) for change in spec.changes)


def _phase_before(spec: RecordSpec, phase: str | None) -> str | None:
    """The rollout phase before the change: the ``rollout.phase`` change's old value."""
    for change in spec.changes:
        if change.path == _PHASE_PATH:
            return None if change.old is None else str(change.old)
    return phase


def _cause(action: Action) -> Cause:
    if action is Action.ROLLED_BACK:
        return Cause.ROLLBACK
    if action is Action.ROLLOUT_RESTARTED:
        return Cause.RESTART
    return Cause.DEPLOYMENT


@dataclass
class Figures:
    """The delivery figures of one workload, one namespace or everything."""

    deployments: int = 0
    rollbacks: int = 0
    failed_rollouts: int = 0
    failed_changes: int = 0
    restore_seconds: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.deployments += outcome.deployment
        self.rollbacks += outcome.rollback
        self.failed_rollouts += outcome.failed_rollout
        self.failed_changes += outcome.failed_change
        self.restore_seconds.extend(outcome.restored_after)

    @property
    def change_failure_rate(self) -> float | None:
        """Failed changes per deployment; None without deployments (nothing to divide)."""
        return self.failed_changes / self.deployments if self.deployments else None

    @property
    def median_time_to_restore(self) -> float | None:
        """Seconds, over the failed rollouts restored; None when none was."""
        return statistics.median(self.restore_seconds) if self.restore_seconds else None

    def wire(self) -> dict[str, Any]:
        """The figures as ``kubeledger report -o json`` prints them."""
        return {
            "deployments": self.deployments,
            "rollbacks": self.rollbacks,
            "failedRollouts": self.failed_rollouts,
            "failedChanges": self.failed_changes,
            "changeFailureRate": self.change_failure_rate,
            "medianTimeToRestoreSeconds": self.median_time_to_restore,
            "restored": len(self.restore_seconds),
        }


@dataclass
class Report:
    """Figures per workload (``(namespace, kind, name)``), per namespace and in total."""

    workloads: dict[tuple[str, str, str], Figures] = field(default_factory=dict)
    namespaces: dict[str, Figures] = field(default_factory=dict)
    total: Figures = field(default_factory=Figures)


def report(specs: Iterable[RecordSpec], *, since: datetime | None = None,
           until: datetime | None = None, namespace: str | None = None) -> Report:
    """The figures of the records observed in ``[since, until)`` (of one ``namespace``).

    Earlier records are folded too, uncounted: a rollout that completes in the window
    may have started before it. Records are taken in chain order, whatever order they
    come in.
    """
    tracker = Tracker()
    found = Report()
    for spec in sorted(specs, key=_chain_order):
        outcome = tracker.observe(spec)
        where = spec.subject.namespace or ""
        if (not outcome.counts or (namespace is not None and where != namespace)
                or (since is not None and spec.observedAt < since)
                or (until is not None and spec.observedAt >= until)):
            continue
        key = (where, spec.subject.kind, spec.subject.name)
        for figures in (found.workloads.setdefault(key, Figures()),
                        found.namespaces.setdefault(where, Figures()), found.total):
            figures.add(outcome)
    return found


def _chain_order(spec: RecordSpec) -> tuple[int, datetime]:
    return (spec.chain.sequence if spec.chain else 0, spec.observedAt)


def workload_keys(found: Report) -> list[tuple[str, str, str]]:
    """The workloads of a report in a stable order: namespace, kind, name."""
    return sorted(found.workloads)


def as_wire(found: Report, *, window: Mapping[str, Any]) -> dict[str, Any]:
    """The whole report as JSON-ready data (``-o json``), with the window it covers."""
    return {
        "window": dict(window),
        "total": found.total.wire(),
        "namespaces": {name: found.namespaces[name].wire() for name in sorted(found.namespaces)},
        "workloads": [
            {"namespace": where, "kind": kind, "name": name,
             **found.workloads[(where, kind, name)].wire()}
            for where, kind, name in workload_keys(found)
        ],
    }
