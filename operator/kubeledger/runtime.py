"""Wiring the operator together at start-up: the one place that builds every service.

Start-up order matters for "nothing lost, nothing doubled": the CRD first; then the
existing records, which give every object's baseline and the head of the hash chain;
then deletions that happened while the operator was down. Only after that do kopf's
watches start delivering events. Background work (shipping, the periodic checks) runs
under the ``supervision.Supervisor``, whose problems make the liveness probe fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubeledger import backoff, receivers
from kubeledger.config import Settings
from kubeledger.core import kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.kinds import Resource
from kubeledger.core.redaction import Redactor
from kubeledger.core.revisions import Revisions
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.attribution import Attributor
from kubeledger.identity.audit import AuditLog
from kubeledger.kube import crd, errors
from kubeledger.kube.api import Kubernetes, list_all
from kubeledger.kube.client import KubeClient, load_client
from kubeledger.recording import catchup, retention
from kubeledger.recording.ledger import Ledger, head_of
from kubeledger.recording.recorder import Recorder
from kubeledger.sinks import Sink
from kubeledger.sinks.delivery import PositionStore, Shipper
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
    revisions: Revisions
    recorder: Recorder
    shippers: list[Shipper] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    supervisor: Supervisor = field(default_factory=Supervisor)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Set by the first watch event: from then on, changes are recorded live.
    ready: bool = False

    @property
    def audited(self) -> list[Resource]:
        return kinds.audited(self.settings.watch_extra_kinds)

    @classmethod
    async def start(cls, settings: Settings, *, readiness_url: str | None = None) -> Runtime:
        api = KubeClient(load_client(), timeout_seconds=settings.api_timeout_seconds)
        await crd.ensure(api)
        records = await _load_records(api)
        specs = [record["spec"] for record in records or []]
        baselines = Baselines.from_records(specs)
        head = head_of(specs)
        logger.info("loaded %d records: %d objects known, chain head at sequence %d",
                    len(specs), len(baselines), head.sequence)
        revisions = Revisions()
        ledger = Ledger(api, head)
        admission = AdmissionCache() if settings.webhook_port else None
        audit = AuditLog() if settings.audit_port else None
        recorder = Recorder(
            cluster=settings.cluster_name,
            redactor=Redactor(settings.redaction_salt.get_secret_value().encode(),
                              settings.redaction),
            baselines=baselines, revisions=revisions, ledger=ledger,
            attribute=Attributor(api, admission=admission, audit=audit,
                                 audit_wait_seconds=settings.audit_wait_seconds,
                                 commit_annotations=settings.commit_annotations),
            max_changes=settings.max_changes_per_record,
        )
        runtime = cls(settings, api, baselines, revisions, recorder)
        if readiness_url:
            runtime.closers.append(await receivers.serve_readiness(
                readiness_url, lambda: runtime.ready))
        await runtime._start_receivers(admission, audit)
        runtime._start_shipping(ledger)
        await catchup.record_unobserved_deletions(api, recorder, baselines, runtime.audited)
        runtime.supervisor.spawn("the periodic deletion check", runtime._reconcile_periodically)
        if runtime.shippers:  # without a sink the cluster holds the only copy: keep it all
            runtime.supervisor.spawn("the removal of expired records",
                                     runtime._prune_periodically)
        return runtime

    def _start_shipping(self, ledger: Ledger) -> None:
        """One shipper per configured sink, fed by the ledger as records are written."""
        es = self.settings.elasticsearch
        if not es.enabled:
            logger.info("no Elasticsearch configured: records stay in the cluster only")
            return
        sink = ElasticsearchSink(es, self.settings.cluster_name)
        shipper = Shipper(sink, self.api, PositionStore(self.api, self.settings.namespace),
                          batch_size=es.batch_size, flush_interval=es.flush_interval_seconds)
        ledger.on_written.append(shipper.offer)
        self.sinks.append(sink)
        self.shippers.append(shipper)
        self.supervisor.spawn(f"shipping to {sink.name}", shipper.run)

    async def _start_receivers(self, admission: AdmissionCache | None,
                               audit: AuditLog | None) -> None:
        """Serves the admission webhook and the audit backend, where configured.

        The settings guarantee the certificates of a configured port (``config``).
        """
        settings = self.settings
        cert_dir = settings.webhook_cert_dir
        if admission is not None and settings.webhook_port and cert_dir:
            self.closers.append(await receivers.serve(
                receivers.admission_app(admission), settings.webhook_host,
                settings.webhook_port, receivers.server_tls(cert_dir)))
            logger.info("admission webhook listening on %s:%d", settings.webhook_host,
                        settings.webhook_port)
        client_ca = settings.audit_client_ca
        if audit is not None and settings.audit_port and cert_dir and client_ca:
            self.closers.append(await receivers.serve(
                receivers.audit_app(audit), settings.audit_host, settings.audit_port,
                receivers.server_tls(cert_dir, client_ca=client_ca)))
            logger.info("audit receiver listening on %s:%d", settings.audit_host,
                        settings.audit_port)

    def watches_listed(self) -> None:
        """Called on every watch event; the first one makes the operator ready."""
        if not self.ready:
            self.ready = True
            logger.info("every watch has listed its kind: recording changes live")

    async def stop(self) -> None:
        await self.supervisor.stop()
        for sink in self.sinks:
            await sink.close()
        for close in self.closers:
            await close()

    async def _prune_periodically(self) -> None:
        """Removes delivered, superseded records older than the retention."""
        keep = timedelta(days=self.settings.retention_days)
        while True:
            await asyncio.sleep(min(PRUNE_EVERY_SECONDS, keep.total_seconds()))
            try:
                await retention.prune(
                    self.api, self.settings.namespace, retention=keep,
                    delivered_up_to=min(shipper.position for shipper in self.shippers))
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


async def _load_records(api: Kubernetes) -> list[dict[str, Any]]:
    """Every existing record; a refusal stops the start-up with what to fix."""
    try:
        # At start-up nothing is at stake yet: a refusal surfaces at once.
        records = await backoff.retrying(lambda: list_all(api, kinds.RECORDS),
                                         what="load records", retry_on=(errors.Unavailable,))
    except errors.Refused as error:
        raise crd.AccessDeniedError(
            f"the operator may not list AuditRecords ({error.summary}): "
            "bind its service account to the chart's ClusterRole (rbac.create=true)"
        ) from None
    return records or []
