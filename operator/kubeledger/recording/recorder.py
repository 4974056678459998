"""Turning what the watch sees into records: decide, attribute, append.

What an event means is decided by ``core.decision`` (pure), at once and in the object's
order, and the object's baseline moves there and then: the next event of the object is
diffed against it. The rest takes I/O and runs in a task of its own per record: asking
the attribution who made the change and which commit it came from (a live change may
wait a second or two for its audit event), then handing the record to the ledger. kopf
hands an object's events over one at a time, so waiting for the audit event inside the
handler let an object change at most once per audit delay; now those waits overlap.
An object's records still enter the chain in the order of its changes: each waits for
the object's previous record to be written first.

A listing's object that changed while no writer watched first has the writes the audit
stream kept of it replayed (``replay``), each its own record; the listing then records
only what they do not explain.

A record not yet written when the writer stops (the Lease lost, a crash) is not lost:
the next writer diffs what it lists against the last record written, and records the
difference. ``drain`` lets a writer that stops on purpose finish first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubeledger import backoff, metrics
from kubeledger.core import decision, insights, record_index
from kubeledger.core.baselines import Baseline, Baselines
from kubeledger.core.classify import rbac
from kubeledger.core.kinds import Resource
from kubeledger.core.model import Action, Commit, Initiator, InitiatorSource, RecordSpec, Subject
from kubeledger.core.redaction import Redactor
from kubeledger.kube import errors
from kubeledger.recording import replay
from kubeledger.recording.ledger import Ledger, NotWriterError

logger = logging.getLogger(__name__)

# Records of what a first install finds, written per second at most, and being written at
# once at most: the inventory goes at the pace the apiserver answers it, never faster
# than the rate, and never queues up in the ledger in front of a live change.
DEFAULT_INVENTORY_PER_SECOND = 50.0
INVENTORY_IN_FLIGHT = 2
# Records being attributed or written at once: past this, the events wait in the intake.
MAX_IN_FLIGHT = 2_000


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


class Specs(Protocol):
    """The spec of the record named (None: there is no such record)."""

    async def __call__(self, name: str) -> Mapping[str, Any] | None: ...


async def no_records(name: str) -> Mapping[str, Any] | None:
    """``Specs`` of a recorder whose baselines are all in memory (tests, tools)."""
    return None


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
        ledger: Ledger,
        attribute: Attribution = unattributed,
        max_changes: int = 64,
        installed_at: datetime | None = None,
        inventory_per_second: float = DEFAULT_INVENTORY_PER_SECOND,
        replaying: replay.Replay | None = None,
        relisting: replay.Replay | None = None,
        specs: Specs = no_records,
    ) -> None:
        self._cluster = cluster
        self._redactor = redactor
        self._baselines = baselines
        self._ledger = ledger
        self._attribute = attribute
        self._max_changes = max_changes
        # The first run in a cluster (an empty ledger): when it started (see decision).
        self._installed_at = installed_at
        self._inventory_pace = Pace(inventory_per_second)
        self._inventory_in_flight = asyncio.Semaphore(INVENTORY_IN_FLIGHT)
        # The replay of the first listing's events, and of a later listing's.
        self._replaying = replaying
        self._relisting = relisting
        # Where a baseline read from the records' index finds its snapshot.
        self._specs = specs
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        # Records being attributed or written, and the newest of each object's.
        self._writing: set[asyncio.Task[RecordSpec | None]] = set()
        self._last_of: dict[str, asyncio.Task[RecordSpec | None]] = {}
        # What each new record is for delivery (the metrics): fed in each object's order,
        # since an object's record is written only after its previous one.
        self._delivery = insights.Tracker()

    async def observe(self, resource: Resource, event_type: str | None,
                      body: Mapping[str, Any]) -> RecordSpec | None:
        """Handles one watch event and waits for its record, if any (None: no new record)."""
        writing = await self.take(resource, event_type, body)
        return None if writing is None else await writing

    async def take(self, resource: Resource, event_type: str | None,
                   body: Mapping[str, Any], *, relisted: bool = False,
                   ) -> asyncio.Task[RecordSpec | None] | None:
        """Decides what one watch event means; returns the task writing its record, if any.

        Returns once the next event of the object may be taken: without waiting for the
        record's attribution or its write. ``relisted``: a listing's event, of a listing
        after the first (kopf's, after a watch could not resume), replayed from the audit
        events received meanwhile.
        """
        # A listing's events have no type: they count as "None", as kopf names them.
        metrics.WATCH_EVENTS.labels(resource.kind, str(event_type)).inc()
        decided = await self._decide(resource, event_type, body)
        replaying = self._relisting if relisted else self._replaying
        # A listing that shows only a rollout's progress has no write of the audit stream
        # to wait for (the status subresource is not audited): it is recorded at once.
        if (event_type is None and replaying is not None
                and isinstance(decided, decision.Draft) and not decided.status_only
                and await self._replay_writes(replaying, resource, body)):
            # Against the last replayed.
            decided = await self._decide(resource, event_type, body)
        return await self._apply(resource, decided, body)

    async def _decide(self, resource: Resource, event_type: str | None,
                      body: Mapping[str, Any]) -> decision.Decided:
        """``decision.decide``, once the snapshots it needs are read from their records."""
        if body.get("roleRef"):  # a binding: its severity depends on the rules of its role
            role = self._baselines.find(
                *rbac.role_of(body, body["metadata"].get("namespace") or ""))
            if role is not None and not role.loaded:
                await self._load(role)
        while True:
            decided = decision.decide(
                resource, event_type, body,
                baseline=self._baselines.get(body["metadata"]["uid"]),
                redactor=self._redactor, role_rules=self._role_rules,
                max_changes=self._max_changes, installed_at=self._installed_at)
            if not isinstance(decided, decision.Unloaded):
                return decided
            await self._load(decided.baseline)

    async def _load(self, baseline: Baseline) -> None:
        """Reads a baseline's snapshot from its record. A record gone (removed by
        break-glass) leaves its object without a baseline: never recorded, as far as
        this writer can tell."""
        name = baseline.record or ""
        spec = await backoff.retrying(lambda: self._specs(name),
                                      what=f"read the snapshot in record {name}",
                                      retry_on=(errors.Unavailable,))
        if spec is None:
            logger.warning("record %s, the last of %s/%s, is gone: its next change is "
                           "recorded as if it were the first", name, baseline.subject.kind,
                           baseline.subject.name)
            self._baselines.forget(baseline.uid)
            return
        if record_index.of(spec).snapshot != baseline.digest:
            logger.warning("the index of record %s does not match its snapshot; the "
                           "snapshot is used", name)
        baseline.load(spec.get("snapshot") or {})

    async def _apply(self, resource: Resource, decided: decision.Decided,
                     body: Mapping[str, Any]) -> asyncio.Task[RecordSpec | None] | None:
        uid = body["metadata"]["uid"]
        match decided:
            case decision.Unchanged(fingerprint=fingerprint):
                self._baselines.touch(uid, fingerprint)
                metrics.CHANGES_SKIPPED.labels(resource.kind, "unchanged").inc()
                return None
            case decision.Rebaseline(subject=subject, encoded=encoded, fingerprint=fingerprint,
                                     templates=templates):
                self._baselines.remember_encoded(subject, encoded, fingerprint, templates)
                metrics.CHANGES_SKIPPED.labels(resource.kind, "rebaseline").inc()
                return None
            case decision.Draft(action=Action.INVENTORIED):
                # A first install lists everything at once: leave the apiserver to others.
                await self._inventory_pace()
                return await self._start_inventory(decided, body)
            case decision.Draft():
                return await self._start_writing(decided, body)

    async def _start_inventory(self, draft: decision.Draft, body: Mapping[str, Any]
                               ) -> asyncio.Task[RecordSpec | None]:
        """Starts an inventoried record once fewer than ``INVENTORY_IN_FLIGHT`` are being
        written: each new one waits for an earlier one's answer (clocked by the ledger)."""
        await self._inventory_in_flight.acquire()
        try:
            writing = await self._start_writing(draft, body)
        except BaseException:
            self._inventory_in_flight.release()
            raise
        writing.add_done_callback(lambda _: self._inventory_in_flight.release())
        return writing

    async def _replay_writes(self, replaying: replay.Replay, resource: Resource,
                             body: Mapping[str, Any]) -> bool:
        """Records the kept writes of an object changed while unobserved; True if any.

        Waits first until the apiserver has tried every batch it retries once more: the
        object's earlier writes may still be on their way.
        """
        left = replaying.left()
        if left > 0:
            await asyncio.sleep(left)
        metadata = body["metadata"]
        baseline = self._baselines.get(metadata["uid"])
        steps = replaying.steps(
            metadata["uid"], recorded=baseline.subject.resourceVersion if baseline else None,
            listed=metadata["resourceVersion"])
        for step in steps:
            event_type = decision.AUDITED if step.exact else None
            await self._apply(resource, await self._decide(resource, event_type, step.body),
                              step.body)
        return bool(steps)

    async def record_unobserved_deletion(self, baseline: Baseline) -> RecordSpec | None:
        """Records an object that vanished while the operator was not watching."""
        if not baseline.loaded:
            await self._load(baseline)
            if self._baselines.get(baseline.uid) is not baseline:
                return None  # its last record is gone too: nothing to say it existed
        draft = decision.unobserved_deletion(baseline, role_rules=self._role_rules)
        return await (await self._start_writing(draft, None))

    async def drain(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for the records being written."""
        if self._writing:
            logger.info("finishing %d records before stopping", len(self._writing))
            await asyncio.wait(self._writing, timeout=timeout)

    async def _start_writing(self, draft: decision.Draft, body: Mapping[str, Any] | None
                             ) -> asyncio.Task[RecordSpec | None]:
        await self._in_flight.acquire()
        uid = draft.subject.uid
        if draft.encoded is None:
            self._baselines.forget(uid)
        else:
            self._baselines.remember_encoded(draft.subject, draft.encoded, draft.fingerprint,
                                             draft.templates)
        writing = asyncio.create_task(self._write(draft, body, after=self._last_of.get(uid)),
                                      name=f"record {draft.name}")
        self._last_of[uid] = writing
        self._writing.add(writing)
        writing.add_done_callback(functools.partial(self._written, uid))
        return writing

    def _written(self, uid: str, writing: asyncio.Task[RecordSpec | None]) -> None:
        self._in_flight.release()
        self._writing.discard(writing)
        if self._last_of.get(uid) is writing:
            del self._last_of[uid]
        if not writing.cancelled() and (error := writing.exception()) is not None:
            # Nobody else may be waiting for this task: say it here.
            logger.error("%s failed: %s", writing.get_name(), error,
                         exc_info=None if isinstance(error, NotWriterError) else error)

    async def _write(self, draft: decision.Draft, body: Mapping[str, Any] | None, *,
                     after: asyncio.Task[RecordSpec | None] | None) -> RecordSpec | None:
        initiator, commit = await self._attribute(draft.subject, body, deleted=draft.deleted,
                                                  wait_for_audit=draft.awaits_audit_event)
        if after is not None:
            # The object's previous record goes into the chain first (whatever became of it).
            await asyncio.wait([after])
        spec = draft.record(cluster=self._cluster, observed_at=datetime.now(UTC),
                            initiator=initiator, commit=commit)
        written = await self._ledger.append(draft.name, spec)
        if written is not None:  # None: recorded before (a re-list, a restart), not new
            _count(draft.name, written)
            metrics.delivery(self._delivery.observe(written),
                             namespace=written.subject.namespace or "")
        return written

    def _role_rules(self, kind: str, namespace: str, name: str) -> list[Mapping[str, Any]] | None:
        baseline = self._baselines.find(kind, namespace, name)
        if baseline is None or not baseline.loaded:
            return None
        rules: list[Mapping[str, Any]] = baseline.snapshot.get("rules", [])
        return rules


def _count(name: str, written: RecordSpec) -> None:
    """Counts a new record, whether nothing said who made its change, and its anomalies."""
    subject = written.subject
    metrics.RECORDS_WRITTEN.labels(subject.kind, written.action.value).inc()
    if written.initiator.source is InitiatorSource.UNRESOLVED:
        metrics.UNRESOLVED_INITIATORS.labels(subject.kind).inc()
    for anomaly in written.anomalies:
        metrics.anomaly(anomaly.kind.value, namespace=subject.namespace or "",
                        subject=f"{subject.kind}/{subject.name}",
                        initiator=written.initiator.username or "unresolved", record=name,
                        at=written.observedAt.timestamp())
