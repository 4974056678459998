"""Wiring the operator together at start-up: the one place that builds every service.

Start-up order matters for "nothing lost, nothing doubled": the CRD first; then the
existing records, which give every object's baseline and the head of the hash chain;
then deletions that happened while the operator was down. Only after that do kopf's
watches start delivering events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubeledger import catchup, crd, kinds, model, retention
from kubeledger.baselines import Baselines
from kubeledger.config import Settings
from kubeledger.delivery import PositionStore, Shipper, Sink
from kubeledger.elasticsearch_sink import ElasticsearchSink
from kubeledger.kube import KubeApi, Resource, load_client
from kubeledger.ledger import Ledger, head_of, retrying
from kubeledger.recorder import Recorder
from kubeledger.redaction import Redactor
from kubeledger.revisions import Revisions

logger = logging.getLogger(__name__)

RECORDS = Resource(model.GROUP, model.VERSION, model.PLURAL, model.KIND, namespaced=False)
PRUNE_EVERY_SECONDS = 600.0


@dataclass
class Runtime:
    """The operator's services, built once and shared by every handler through kopf's memo."""

    settings: Settings
    api: KubeApi
    baselines: Baselines
    revisions: Revisions
    recorder: Recorder
    shippers: list[Shipper] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def audited(self) -> list[Resource]:
        return kinds.audited(self.settings.watch_extra_kinds)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        api = KubeApi(load_client())
        await crd.ensure(api)
        records = await retrying(lambda: api.list_all(RECORDS), what="loading records")
        specs = [record["spec"] for record in records or []]
        baselines = Baselines.from_records(specs)
        head = head_of(specs)
        logger.info("loaded %d records: %d objects known, chain head at sequence %d",
                    len(specs), len(baselines), head.sequence)
        revisions = Revisions()
        ledger = Ledger(api, head)
        recorder = Recorder(
            cluster=settings.cluster_name,
            redactor=Redactor(settings.redaction_salt.get_secret_value().encode(),
                              settings.redaction),
            baselines=baselines, revisions=revisions, ledger=ledger,
            max_changes=settings.max_changes_per_record,
        )
        runtime = cls(settings, api, baselines, revisions, recorder)
        runtime._start_shipping(ledger)
        await catchup.record_unobserved_deletions(api, recorder, baselines, runtime.audited)
        runtime._spawn(runtime._reconcile_periodically())
        runtime._spawn(runtime._prune_periodically())
        return runtime

    def _start_shipping(self, ledger: Ledger) -> None:
        """One shipper per configured sink, fed by the ledger as records are written."""
        es = self.settings.elasticsearch
        if not es.enabled:
            logger.info("no Elasticsearch configured: records stay in the cluster only")
            return
        sink = ElasticsearchSink(es, self.settings.cluster_name)
        shipper = Shipper(sink, self.api, RECORDS,
                          PositionStore(self.api, self.settings.namespace),
                          batch_size=es.batch_size, flush_interval=es.flush_interval_seconds)
        ledger.on_written.append(shipper.offer)
        self.sinks.append(sink)
        self.shippers.append(shipper)
        self._spawn(shipper.run())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self.background.append(asyncio.create_task(work))

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sink in self.sinks:
            await sink.close()

    async def _prune_periodically(self) -> None:
        """Removes delivered, superseded records older than the retention."""
        keep = timedelta(days=self.settings.retention_days)
        while True:
            await asyncio.sleep(min(PRUNE_EVERY_SECONDS, keep.total_seconds()))
            delivered = (min(shipper.position for shipper in self.shippers)
                         if self.shippers else None)
            try:
                await retention.prune(self.api, RECORDS, retention=keep,
                                      delivered_up_to=delivered)
            except Exception:
                logger.exception("removing expired records failed; trying again next time")

    async def _reconcile_periodically(self) -> None:
        """Catches deletions a watch missed (e.g. across an expired watch history)."""
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            try:
                await catchup.record_unobserved_deletions(
                    self.api, self.recorder, self.baselines, self.audited)
            except Exception:
                logger.exception("periodic deletion check failed; trying again next time")
