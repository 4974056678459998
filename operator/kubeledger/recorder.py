"""Turning what the watch sees into records: the decision at the heart of the operator.

Every event of an audited object is projected and redacted, then compared with the
object's baseline (its last recorded state). Equal means nothing meaningful changed
(status churn, bookkeeping) and nothing is written. Otherwise the change is classified,
diffed and handed to the ledger. Events from kopf's initial listing (type None) are
changes seen after the fact: the operator was not watching when they happened.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubeledger import classify, diff, projection
from kubeledger.baselines import Baseline, Baselines, encode
from kubeledger.kube import Resource
from kubeledger.ledger import Ledger
from kubeledger.model import (
    Action,
    Commit,
    Initiator,
    Observation,
    RecordSpec,
    Severity,
    Subject,
    record_name,
)
from kubeledger.redaction import Redactor
from kubeledger.revisions import Revisions

logger = logging.getLogger(__name__)

LIVE_EVENTS = frozenset({"ADDED", "MODIFIED"})

class Attribution(Protocol):
    """Who made a change and which commit it came from (see ``attribution``)."""

    async def __call__(self, subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, live: bool) -> tuple[Initiator, Commit]: ...


async def unattributed(subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, live: bool) -> tuple[Initiator, Commit]:
    """Attribution when nothing is known: ``unresolved`` on both counts."""
    return Initiator(), Commit()


class Recorder:
    """Decides, for each event, whether it is a change worth a record, and writes it."""

    def __init__(
        self,
        *,
        cluster: str,
        redactor: Redactor,
        baselines: Baselines,
        revisions: Revisions,
        ledger: Ledger,
        attribute: Attribution = unattributed,
        max_changes: int = 64,
    ) -> None:
        self._cluster = cluster
        self._redactor = redactor
        self._baselines = baselines
        self._revisions = revisions
        self._ledger = ledger
        self._attribute = attribute
        self._max_changes = max_changes

    async def observe(self, resource: Resource, event_type: str | None,
                      body: Mapping[str, Any]) -> RecordSpec | None:
        """Handles one watch event; returns the record written, if any."""
        subject = subject_of(resource, body)
        baseline = self._baselines.get(subject.uid)
        if event_type == "DELETED":
            last_known = (baseline.snapshot if baseline
                          else self._redactor.redact(projection.project(body)))
            return await self._record_deletion(subject, last_known, Observation.LIVE, body)
        new = self._redactor.redact(projection.project(body))
        encoded = encode(new)
        if baseline is not None and baseline.encoded == encoded:
            self._baselines.touch(subject.uid)
            return None
        old = baseline.snapshot if baseline else None
        # Seen live only when the watch delivered the change itself; a listing shows
        # the result of changes made while nobody watched.
        live = event_type in LIVE_EVENTS and (baseline is not None or event_type == "ADDED")
        verdict = classify.classify(subject.kind, old, new, self._context(subject, live=live))
        if verdict is None:
            # A change no record describes (a rollout going back to progressing): the
            # next change is diffed from here.
            self._baselines.remember_encoded(subject, encoded)
            return None
        action, severity, reasons = verdict.action, verdict.severity, list(verdict.reasons)
        if not live and old is not None:
            reasons.insert(0, f"seen after the fact; the change looks like {action.value}")
            action, severity = Action.CHANGED_WHILE_UNOBSERVED, max(
                severity, Severity.NOTICE, key=lambda level: level.rank)
        changes, truncated = diff.diff(old, new, max_changes=self._max_changes)
        initiator, commit = await self._attribute(subject, body, deleted=False, live=live)
        spec = RecordSpec(
            action=action, severity=severity, observedAt=datetime.now(UTC),
            observation=Observation.LIVE if live else Observation.AFTER_THE_FACT,
            cluster=self._cluster, subject=subject, changes=changes,
            changesTruncated=truncated, reasons=reasons, initiator=initiator, commit=commit,
            snapshot=new,
        )
        written = await self._ledger.append(record_name(subject), spec)
        self._baselines.remember_encoded(subject, encoded)
        return written

    async def record_unobserved_deletion(self, baseline: Baseline) -> RecordSpec | None:
        """Records an object that vanished while the operator was not watching."""
        return await self._record_deletion(baseline.subject, baseline.snapshot,
                                           Observation.AFTER_THE_FACT, None)

    async def _record_deletion(self, subject: Subject, old: dict[str, Any],
                               observation: Observation,
                               body: Mapping[str, Any] | None) -> RecordSpec | None:
        verdict = classify.classify(subject.kind, old, None, self._context(subject))
        severity = verdict.severity if verdict else Severity.WARNING
        reasons = list(verdict.reasons) if verdict else []
        live = observation is Observation.LIVE
        initiator, commit = await self._attribute(subject, body, deleted=True, live=live)
        spec = RecordSpec(
            action=Action.DELETED if live else Action.DELETED_WHILE_UNOBSERVED,
            severity=severity, observedAt=datetime.now(UTC), observation=observation,
            cluster=self._cluster, subject=subject, reasons=reasons,
            initiator=initiator, commit=commit,
        )
        written = await self._ledger.append(record_name(subject, deleted=True), spec)
        self._baselines.forget(subject.uid)
        return written

    def _context(self, subject: Subject, *, live: bool = True) -> classify.Context:
        # After the fact, the ReplicaSet made for the new template exists already and
        # looks as old as the rollback target would: only a live change can be told
        # to be a rollback.
        earlier = (self._revisions.earlier_templates(subject.uid, subject.resourceVersion)
                   if live else frozenset())
        return classify.Context(
            namespace=subject.namespace or "",
            older_revision_fingerprints=earlier,
            resolve_role_rules=self._role_rules,
        )

    def _role_rules(self, kind: str, namespace: str, name: str) -> list[Mapping[str, Any]] | None:
        baseline = self._baselines.find(kind, namespace, name)
        if baseline is None:
            return None
        rules: list[Mapping[str, Any]] = baseline.snapshot.get("rules", [])
        return rules


def subject_of(resource: Resource, body: Mapping[str, Any]) -> Subject:
    metadata = body["metadata"]
    return Subject(
        apiVersion=resource.api_version, kind=resource.kind,
        namespace=metadata.get("namespace") or None, name=metadata["name"], uid=metadata["uid"],
        resourceVersion=metadata["resourceVersion"],
    )
