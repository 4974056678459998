"""Turning what the watch sees into records: decide, attribute, append.

What an event means is decided by ``core.decision`` (pure). This module does the rest,
which takes I/O: it asks the attribution who made the change and which commit it came
from (a live change may wait a moment for its audit event), hands the record to the
ledger, and moves the object's baseline once the record is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubeledger import metrics
from kubeledger.core import decision
from kubeledger.core.baselines import Baseline, Baselines
from kubeledger.core.kinds import Resource
from kubeledger.core.model import Action, Commit, Initiator, InitiatorSource, RecordSpec, Subject
from kubeledger.core.redaction import Redactor
from kubeledger.core.revisions import Revisions
from kubeledger.recording.ledger import Ledger

logger = logging.getLogger(__name__)

# Records of what a first install finds, written per second at most.
DEFAULT_INVENTORY_PER_SECOND = 50.0


class Pace:
    """Lets callers through at most ``rate`` times a second, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def __call__(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


class Attribution(Protocol):
    """Who made a change and which commit it came from (see ``identity.attribution``)."""

    async def __call__(self, subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, wait_for_audit: bool) -> tuple[Initiator, Commit]: ...


async def unattributed(subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, wait_for_audit: bool) -> tuple[Initiator, Commit]:
    """Attribution when nothing is known: ``unresolved`` on both counts."""
    return Initiator(), Commit()


class Recorder:
    """Writes the record each event calls for, and keeps the baselines in step."""

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
        installed_at: datetime | None = None,
        inventory_per_second: float = DEFAULT_INVENTORY_PER_SECOND,
    ) -> None:
        self._cluster = cluster
        self._redactor = redactor
        self._baselines = baselines
        self._revisions = revisions
        self._ledger = ledger
        self._attribute = attribute
        self._max_changes = max_changes
        # The first run in a cluster (an empty ledger): when it started (see decision).
        self._installed_at = installed_at
        self._inventory_pace = Pace(inventory_per_second)

    async def observe(self, resource: Resource, event_type: str | None,
                      body: Mapping[str, Any]) -> RecordSpec | None:
        """Handles one watch event; returns the record written, if any."""
        # A listing's events have no type: they count as "None", as kopf names them.
        metrics.WATCH_EVENTS.labels(resource.kind, str(event_type)).inc()
        uid = body["metadata"]["uid"]
        decided = decision.decide(
            resource, event_type, body, baseline=self._baselines.get(uid),
            redactor=self._redactor, revisions=self._revisions, role_rules=self._role_rules,
            max_changes=self._max_changes, installed_at=self._installed_at)
        match decided:
            case decision.Unchanged():
                self._baselines.touch(uid)
                metrics.CHANGES_SKIPPED.labels(resource.kind, "unchanged").inc()
                return None
            case decision.Rebaseline(subject=subject, encoded=encoded):
                self._baselines.remember_encoded(subject, encoded)
                metrics.CHANGES_SKIPPED.labels(resource.kind, "rebaseline").inc()
                return None
            case decision.Draft(action=Action.INVENTORIED):
                # A first install lists everything at once: leave the apiserver to others.
                await self._inventory_pace()
                return await self._write(decided, body)
            case decision.Draft():
                return await self._write(decided, body)

    async def record_unobserved_deletion(self, baseline: Baseline) -> RecordSpec | None:
        """Records an object that vanished while the operator was not watching."""
        draft = decision.unobserved_deletion(baseline, revisions=self._revisions,
                                             role_rules=self._role_rules)
        return await self._write(draft, None)

    async def _write(self, draft: decision.Draft,
                     body: Mapping[str, Any] | None) -> RecordSpec | None:
        initiator, commit = await self._attribute(draft.subject, body, deleted=draft.deleted,
                                                  wait_for_audit=draft.awaits_audit_event)
        spec = draft.record(cluster=self._cluster, observed_at=datetime.now(UTC),
                            initiator=initiator, commit=commit)
        written = await self._ledger.append(draft.name, spec)
        if written is not None:  # None: recorded before (a re-list, a restart), not new
            _count(written)
        if draft.encoded is None:
            self._baselines.forget(draft.subject.uid)
        else:
            self._baselines.remember_encoded(draft.subject, draft.encoded)
        return written

    def _role_rules(self, kind: str, namespace: str, name: str) -> list[Mapping[str, Any]] | None:
        baseline = self._baselines.find(kind, namespace, name)
        if baseline is None:
            return None
        rules: list[Mapping[str, Any]] = baseline.snapshot.get("rules", [])
        return rules


def _count(written: RecordSpec) -> None:
    """Counts a new record, and whether nothing said who made its change."""
    kind = written.subject.kind
    metrics.RECORDS_WRITTEN.labels(kind, written.action.value).inc()
    if written.initiator.source is InitiatorSource.UNRESOLVED:
        metrics.UNRESOLVED_INITIATORS.labels(kind).inc()
