"""The operator's Prometheus metrics, and the endpoint that serves them.

Every metric lives here, in :data:`REGISTRY`, so the README's table has one source. The
modules that do the work count at the point where they know the outcome: the recorder
(watch events, records, skips), the attribution (identity joins), the shipper
(delivery), the ledger (the chain head, write times), the leader election and the
peers (identity relays). The pure ``core`` counts nothing.

Labels take values from small fixed sets only (kinds, actions, sources, outcomes, sink
names), never object names, namespaces or users: a label value is a new time series
for ever, and a metric must not carry what the records themselves keep private. Three
exceptions: for alerting on anomalies, their counter is also by namespace (as many
series per kind as namespaces with anomalies), and :data:`LATEST_ANOMALIES` names the
subject and the initiator of the latest :data:`LATEST_ANOMALIES_KEPT` anomalies only,
older series being removed, so an alert's summary can say who changed what; and the
delivery figures (``core.insights``) are by namespace, which is what they are about.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    exposition,
)

from kubeledger import endpoint
from kubeledger.core import insights

logger = logging.getLogger(__name__)

# Ours, not prometheus_client's global default: only what is registered here is served.
REGISTRY = CollectorRegistry(auto_describe=True)
# The memory and CPU the operator takes, and the Python it runs on.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

WATCH_EVENTS = Counter(
    "kubeledger_watch_events_total",
    "Watch events handled, by the audited object's kind and the event's type "
    "(ADDED, MODIFIED, DELETED; None for an object of the initial listing).",
    ["kind", "type"], registry=REGISTRY)
INTAKE_EVENTS = Gauge(
    "kubeledger_intake_events",
    "Watch events received and not yet handled: waiting for the writer's start, the "
    "first install's pace or a free slot among the records in flight.",
    registry=REGISTRY)
RECORDS_WRITTEN = Counter(
    "kubeledger_records_written_total",
    "AuditRecords written, by the audited object's kind and the record's action; a "
    "change found already recorded (a re-list, a restart) is not counted again.",
    ["kind", "action"], registry=REGISTRY)
RECORD_WRITE_SECONDS = Histogram(
    "kubeledger_record_write_seconds",
    "Time of one successful create of an AuditRecord at the apiserver (one attempt).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY)
CHANGES_SKIPPED = Counter(
    "kubeledger_changes_skipped_total",
    "Watch events that produced no record, by kind and reason: unchanged (nothing worth "
    "a record changed, e.g. status churn) or rebaseline (a change no record describes "
    "moved the baseline only).",
    ["kind", "reason"], registry=REGISTRY)
IDENTITY_JOINS = Counter(
    "kubeledger_identity_joins_total",
    "Lookups of who made a change, by identity source (audit, admission) and outcome "
    "(hit: the source knew the write; miss: it did not).",
    ["source", "outcome"], registry=REGISTRY)
UNRESOLVED_INITIATORS = Counter(
    "kubeledger_unresolved_initiators_total",
    "AuditRecords written with an unresolved initiator (spec.initiator.source "
    "'unresolved': nothing said who made the change), by kind.",
    ["kind"], registry=REGISTRY)
DELIVERY_BACKLOG = Gauge(
    "kubeledger_delivery_backlog_records",
    "AuditRecords written but not yet delivered to the sink.",
    ["sink"], registry=REGISTRY)
DOCUMENTS_DELIVERED = Counter(
    "kubeledger_documents_delivered_total",
    "Records delivered to the sink (a batch re-sent after a restart counts again).",
    ["sink"], registry=REGISTRY)
DELIVERY_ERRORS = Counter(
    "kubeledger_delivery_errors_total",
    "Failed attempts to deliver a batch of records to the sink (each is retried).",
    ["sink"], registry=REGISTRY)
LAST_DELIVERY = Gauge(
    "kubeledger_last_delivery_timestamp_seconds",
    "Unix time of the last successful delivery of a batch to the sink.",
    ["sink"], registry=REGISTRY)
CHECKPOINT_SEQUENCE = Gauge(
    "kubeledger_checkpoint_sequence",
    "Chain sequence of the last checkpoint written to the sink (0: none since start-up).",
    ["sink"], registry=REGISTRY)
LEADER = Gauge(
    "kubeledger_leader",
    "1 while this replica holds the Lease and writes the records, else 0.",
    registry=REGISTRY)
LEASE_TRANSITIONS = Gauge(
    "kubeledger_lease_transitions",
    "The Lease's spec.leaseTransitions as last seen: how often the writer changed.",
    registry=REGISTRY)
CHAIN_HEAD_SEQUENCE = Gauge(
    "kubeledger_chain_head_sequence",
    "Sequence number of the last AuditRecord this replica wrote or loaded: the head of "
    "the hash chain on the writer, 0 on a standby.",
    registry=REGISTRY)
PEER_RELAYS = Counter(
    "kubeledger_peer_relays_total",
    "Identity entries relayed between replicas, by outcome: sent and failed (to a peer), "
    "received and rejected (from a peer).",
    ["outcome"], registry=REGISTRY)

ANOMALIES = Counter(
    "kubeledger_anomalies_total",
    "Anomalies flagged on new AuditRecords (spec.anomalies), by kind and the subject's "
    "namespace (empty for cluster-scoped objects).",
    ["kind", "namespace"], registry=REGISTRY)
LATEST_ANOMALIES = Gauge(
    "kubeledger_anomaly_timestamp_seconds",
    "Unix time of each of the latest anomalies, by kind, namespace, subject "
    "(Kind/name), initiator (username, or 'unresolved') and record; only the latest "
    "100 are kept, the older series removed.",
    ["kind", "namespace", "subject", "initiator", "record"], registry=REGISTRY)
LATEST_ANOMALIES_KEPT = 100
_latest: OrderedDict[tuple[str, ...], None] = OrderedDict()


def anomaly(kind: str, *, namespace: str, subject: str, initiator: str, record: str,
            at: float) -> None:
    """Counts one anomaly and keeps it among the latest (see :data:`LATEST_ANOMALIES`)."""
    ANOMALIES.labels(kind, namespace).inc()
    labels = (kind, namespace, subject, initiator, record)
    LATEST_ANOMALIES.labels(*labels).set(at)
    _latest[labels] = None
    _latest.move_to_end(labels)
    while len(_latest) > LATEST_ANOMALIES_KEPT:
        oldest, _ = _latest.popitem(last=False)
        LATEST_ANOMALIES.remove(*oldest)


# Delivery (``core.insights``): counted as each record is written, so, as any counter,
# they start from 0 when the process does; the report reads the whole trail instead.
def _by_namespace(name: str, documentation: str) -> Counter:
    return Counter(name, f"{documentation}, by the workload's namespace.", ["namespace"],
                   registry=REGISTRY)


DEPLOYMENTS = _by_namespace(
    "kubeledger_deployments_total",
    "Completed rollouts of a new image or configuration (not rollbacks nor restarts)")
ROLLBACKS = _by_namespace(
    "kubeledger_rollbacks_total",
    "Rollbacks (a pod template back to an earlier revision's)")
FAILED_ROLLOUTS = _by_namespace(
    "kubeledger_failed_rollouts_total",
    "Rollouts that failed (progress deadline exceeded; Argo Rollouts: Degraded)")
FAILED_CHANGES = _by_namespace(
    "kubeledger_failed_changes_total",
    "Failed rollouts, and rollbacks of a rollout not already counted as failed; divided "
    "by kubeledger_deployments_total, the change failure rate")
TIME_TO_RESTORE = Histogram(
    "kubeledger_time_to_restore_seconds",
    "Time from a failed rollout to the workload's next completed rollout, by namespace.",
    ["namespace"],
    buckets=(30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0,
             7 * 86400.0),
    registry=REGISTRY)


def delivery(outcome: insights.Outcome, *, namespace: str) -> None:
    """Counts what one new record is for delivery (most records count nothing)."""
    for counted, counter in ((outcome.deployment, DEPLOYMENTS), (outcome.rollback, ROLLBACKS),
                             (outcome.failed_rollout, FAILED_ROLLOUTS),
                             (outcome.failed_change, FAILED_CHANGES)):
        if counted:
            counter.labels(namespace).inc()
    for seconds in outcome.restored_after:
        TIME_TO_RESTORE.labels(namespace).observe(seconds)


def serve(url: str) -> endpoint.Endpoint:
    """Serves :data:`REGISTRY` at ``url`` (``http://HOST:PORT/metrics``); other paths 404.

    Returns the started ``endpoint.Endpoint``: its ``port`` is the one bound (the system's
    choice for port 0), its ``stop()`` frees it.
    """
    server = endpoint.Endpoint(url, _exposition, expected="http://HOST:PORT/metrics")
    server.start()
    logger.info("metrics served at %s (port %d)", url, server.port)
    return server


def _exposition(accept: str) -> tuple[int, str, bytes]:
    # Prometheus asks for OpenMetrics, a browser for text: each gets what it asked for.
    encode, content_type = exposition.choose_encoder(accept)
    return 200, content_type, encode(REGISTRY)
