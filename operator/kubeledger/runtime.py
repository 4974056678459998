"""Wiring the writer together when a replica starts leading: the services that record.

The replica (``replica``) already runs the client, the identity caches and their
receivers; this builds what only the leader runs. Start-up order matters for "nothing
lost, nothing doubled": the CRD first; then the existing records, which give every
object's baseline and the head of the hash chain (a new leader continues the chain from
the records, never from what an earlier leader held); then deletions that happened while
nobody was writing, from a listing (made while the records are read) that also says what
kopf's first listing will deliver (``first_listing``). kopf lists its kinds once that
listing is over, while the records may still be read; its events wait in the intake
(``recording.intake``) until the start is over. What changed while nobody wrote is
replayed from the audit stream where it can be (``recording.replay``), and so is what
changed while a watch could not resume, when kopf lists a kind again later. Background
work (shipping, the periodic checks, the watch on record deletions) runs under the
``supervision.Supervisor``, whose problems make the liveness probe fail."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeledger import backoff
from kubeledger.config import Settings
from kubeledger.core import anomalies, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.kinds import Resource
from kubeledger.core.model import RecordSpec
from kubeledger.core.redaction import Redactor
from kubeledger.first_listing import RECORDING_LIVE, FirstListing
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.attribution import Attributor
from kubeledger.identity.audit import AuditLog
from kubeledger.kube import crd, errors
from kubeledger.kube.api import Kubernetes
from kubeledger.leadership import Predecessor
from kubeledger.recording import break_glass, catchup, history, replay, retention
from kubeledger.recording.intake import Intake
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from kubeledger.sinks import Sink
from kubeledger.sinks.delivery import MAX_PENDING, PositionStore, Preloaded, Shipper
from kubeledger.sinks.elasticsearch.sink import ElasticsearchSink
from kubeledger.supervision import Supervisor

logger = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600.0


@dataclass
class Runtime:
    """The operator's services, built once and shared by every handler through kopf's memo."""

    settings: Settings
    api: Kubernetes
    baselines: Baselines
    recorder: Recorder
    # Set once the catch-up listing said what kopf's first listing must deliver.
    first_listing: FirstListing | None = None
    shippers: list[Shipper] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    supervisor: Supervisor = field(default_factory=Supervisor)
    # The records retention is removing: the watch on deletions records everyone else's.
    removals: break_glass.Removals = field(default_factory=set)
    # Handing the intake's events to the recorder, from the end of the start.
    taking: asyncio.Task[None] | None = None

    @property
    def audited(self) -> list[Resource]:
        return kinds.audited(self.settings.watch_extra_kinds)

    @classmethod
    async def start(cls, settings: Settings, api: Kubernetes, *,
                    admission: AdmissionCache | None, audit: AuditLog | None,
                    may_write: Callable[[], bool],
                    intake: Intake, predecessor: Predecessor | None = None,
                    listed: Callable[[], None] = lambda: None) -> Runtime:
        """Loads the records (the chain continues from them) and starts the writer's work.

        ``may_write`` is the fence of leader election: the ledger asks it before every write;
        ``predecessor`` what the Lease said of the writer before (None: there was none);
        ``listed`` is called once the catch-up listing is over, while the records may still
        be read: from then on kopf may list too (its events wait in ``intake``, which
        the recorder takes from once the start is over).
        """
        written = audit.written if audit is not None else None
        replaying = None if written is None or predecessor is None else replay.Replay.starting(
            written, previous_renewal=predecessor.renewed,
            handed_over=predecessor.handed_over, now=datetime.now(UTC),
            initial_backoff=settings.audit_initial_backoff_seconds,
            batch_wait=settings.audit_wait_seconds)
        await crd.ensure(api)
        # Where delivery stands, so that reading the records also gives the shipper the
        # ones it has not delivered (it would otherwise read every record once more).
        delivered = ((await PositionStore(api, settings.namespace).load()).get(
            ElasticsearchSink.name, 0) if settings.elasticsearch.enabled else None)

        def first_listing_begins(present: Mapping[Resource, catchup.Present]) -> None:
            # Before kopf lists: every event it puts is counted.
            intake.first_listing = FirstListing(
                {resource: found.uids for resource, found in present.items()})
            listed()

        found, undelivered, present = await _read_history_and_list(
            api, kinds.audited(settings.watch_extra_kinds), delivered, first_listing_begins)
        baselines, head = found.baselines(), found.head
        logger.info("loaded %d records: %d objects known, chain head at sequence %d",
                    found.records, len(baselines), head.sequence)
        pruned_through = await backoff.retrying(
            lambda: retention.pruned_through(api, settings.namespace),
            what="read the retention watermark", retry_on=(errors.Unavailable,))
        lost = found.missing_in_flight(window=settings.write_window,
                                       pruned_through=pruned_through)
        if lost:
            logger.warning("sequence %s sealed by the previous writer but never written "
                           "(in flight when it stopped); the next record declares it lost",
                           ", ".join(map(str, sorted(lost))))
        ledger = Ledger(api, head, may_write=may_write, window=settings.write_window,
                        lost=lost, flag=anomalies.Detector(settings.anomaly_policy()))
        recorder = Recorder(
            cluster=settings.cluster_name,
            redactor=Redactor(settings.redaction_salt.get_secret_value().encode(),
                              settings.redaction),
            baselines=baselines, ledger=ledger,
            attribute=Attributor(api, admission=admission, audit=audit,
                                 audit_wait_seconds=settings.audit_wait_seconds,
                                 commit_annotations=settings.commit_annotations),
            max_changes=settings.max_changes_per_record,
            # Never installed here before: what the first listing finds was there already.
            installed_at=(datetime.now(UTC) if not found.records and not pruned_through
                          else None),
            inventory_per_second=settings.inventory_records_per_second,
            replaying=replaying,
            relisting=None if written is None else replay.Replay.live(
                written, batch_wait=settings.audit_wait_seconds),
            specs=functools.partial(history.spec_of, api),
        )
        runtime = cls(settings, api, baselines, recorder)
        runtime._start_shipping(ledger, undelivered)
        await catchup.record_vanished(recorder, baselines, present)
        runtime.first_listing = intake.first_listing
        runtime.supervisor.spawn("the wait for the first listings", runtime._list_first)
        runtime.supervisor.spawn("the periodic deletion check", runtime._reconcile_periodically)
        runtime.supervisor.spawn("the watch on record deletions", functools.partial(
            break_glass.watch, api, recorder, runtime.removals))
        if runtime.shippers:  # without a sink the cluster holds the only copy: keep it all
            runtime.supervisor.spawn("the removal of expired records",
                                     runtime._prune_periodically)
        runtime.taking = asyncio.create_task(intake.run(runtime._take),
                                             name="the intake of watch events")
        return runtime

    def _start_shipping(self, ledger: Ledger, undelivered: history.Undelivered | None) -> None:
        """One shipper per configured sink, fed by the ledger as records are written and
        starting from what start-up read after its position."""
        es = self.settings.elasticsearch
        if not es.enabled:
            logger.info("no Elasticsearch configured: records stay in the cluster only")
            return
        sink = ElasticsearchSink(es, self.settings.cluster_name)
        preloaded = None
        if undelivered is not None and undelivered.records is not None:
            preloaded = Preloaded(undelivered.after, {
                sequence: (name, RecordSpec.model_validate(spec))
                for sequence, (name, spec) in undelivered.records.items()})
        shipper = Shipper(sink, self.api, PositionStore(self.api, self.settings.namespace),
                          batch_size=es.batch_size, flush_interval=es.flush_interval_seconds,
                          checkpoint_interval=es.checkpoint_interval_seconds,
                          preloaded=preloaded)
        ledger.on_written.append(shipper.offer)
        self.sinks.append(sink)
        self.shippers.append(shipper)
        self.supervisor.spawn(f"shipping to {sink.name}", shipper.run)

    async def _take(self, resource: Resource, event_type: str | None,
                    body: Mapping[str, Any], *, relisted: bool) -> None:
        """One watch event, decided (its record is written meanwhile)."""
        # Not waiting for the record: the object's next event may be taken meanwhile.
        await self.recorder.take(resource, event_type, body, relisted=relisted)

    async def _list_first(self) -> None:
        """Until kopf's first listings are over: from then on, changes are recorded live
        (the intake hands on watch events before the listings' that wait)."""
        if self.first_listing is not None:
            await self.first_listing.run(self.api)
        logger.info(RECORDING_LIVE)

    @property
    def ready(self) -> bool:
        """Whether kopf's first listings are over: from then on, changes are recorded live."""
        return self.first_listing is not None and self.first_listing.done

    async def finish(self, timeout: float) -> None:
        """Takes no more events, then waits up to ``timeout`` seconds for the records
        being written: those left in the intake, the next writer lists again."""
        await self._stop_taking()
        await self.recorder.drain(timeout)

    async def _stop_taking(self) -> None:
        if self.taking is not None:
            self.taking.cancel()
            await asyncio.wait([self.taking])

    async def stop(self) -> None:
        await self._stop_taking()
        await self.supervisor.stop()
        for sink in self.sinks:
            await sink.close()

    async def _prune_periodically(self) -> None:
        """Removes delivered, superseded records older than the retention."""
        keep = timedelta(days=self.settings.retention_days)
        while True:
            await asyncio.sleep(min(PRUNE_EVERY_SECONDS, keep.total_seconds()))
            try:
                await retention.prune(
                    self.api, self.settings.namespace, retention=keep,
                    delivered_up_to=min(shipper.position for shipper in self.shippers),
                    removals=self.removals)
            except errors.KubeError:
                logger.exception("removing expired records failed; trying again next time")

    async def _reconcile_periodically(self) -> None:
        """Catches deletions a watch missed (e.g. across an expired watch history)."""
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            try:
                await catchup.record_unobserved_deletions(
                    self.api, self.recorder, self.baselines, self.audited)
            except errors.KubeError:
                logger.exception("periodic deletion check failed; trying again next time")


async def _read_history_and_list(
    api: Kubernetes, audited: list[Resource], delivered: int | None,
    listed: Callable[[dict[Resource, catchup.Present]], None],
) -> tuple[history.History, history.Undelivered | None, dict[Resource, catchup.Present]]:
    """The records (and those after the ``delivered`` position), and a listing of what
    exists now: independent, so both at once. ``listed`` is given the listing when it
    ends.

    A listing made before kopf's own is what makes both "deleted while nobody watched"
    and the first listing's count right: an object deleted between the two is only
    missing from kopf's (see ``first_listing``), never listed by kopf and gone from ours.
    """
    reading = asyncio.create_task(_read_history(api, delivered))
    try:
        present = await catchup.list_present(api, audited)
        listed(present)
        found, undelivered = await reading
        return found, undelivered, present
    finally:
        reading.cancel()  # when the listing failed; nothing once it is done


async def _read_history(
    api: Kubernetes, delivered: int | None,
) -> tuple[history.History, history.Undelivered | None]:
    """What the existing records say; a refusal stops the start-up with what to fix."""

    async def attempt() -> tuple[history.History, history.Undelivered | None]:
        undelivered = (None if delivered is None
                       else history.Undelivered(delivered, limit=MAX_PENDING))
        return await history.read(api, undelivered), undelivered

    try:
        # At start-up nothing is at stake yet: a refusal surfaces at once.
        return await backoff.retrying(attempt, what="load records",
                                      retry_on=(errors.Unavailable,))
    except errors.Refused as error:
        raise crd.AccessDeniedError(
            f"the operator may not list AuditRecords ({error.summary}): "
            "bind its service account to the chart's ClusterRole (rbac.create=true)"
        ) from None
