"""The operator's Prometheus metrics, and the endpoint that serves them.

Every metric lives here, in :data:`REGISTRY`, so the README's table has one source. The
modules that do the work count at the point where they know the outcome: the recorder
(watch events, records, skips), the attribution (identity joins), the shipper
(delivery), the ledger (the chain head, write times), the leader election and the
peers (identity relays). The pure ``core`` counts nothing.

Labels take values from small fixed sets only (kinds, actions, sources, outcomes, sink
names), never object names, namespaces or users: a label value is a new time series
for ever, and a metric must not carry what the records themselves keep private.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    exposition,
)

logger = logging.getLogger(__name__)

# A client that connects and sends nothing must not hold a serving thread for ever.
_REQUEST_TIMEOUT_SECONDS = 5.0

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
RECORDS_WRITTEN = Counter(
    "kubeledger_records_written_total",
    "AuditRecords written, by the audited object's kind and the record's action; a "
    "change found already recorded (a re-list, a restart) is not counted again.",
    ["kind", "action"], registry=REGISTRY)
RECORD_WRITE_SECONDS = Histogram(
    "kubeledger_record_write_seconds",
    "Time to write one AuditRecord to the apiserver, retries included.",
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
    "Lookups of who made a live change, by identity source (audit, admission) and "
    "outcome (hit: the source knew the write; miss: it did not).",
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
    "Sequence number of the last AuditRecord in the hash chain.",
    registry=REGISTRY)
PEER_RELAYS = Counter(
    "kubeledger_peer_relays_total",
    "Identity entries relayed between replicas, by outcome: sent and failed (to a peer), "
    "received and rejected (from a peer).",
    ["outcome"], registry=REGISTRY)


class Server:
    """The metrics endpoint, serving in a daemon thread until :meth:`stop`.

    ``port`` is the port bound: the one asked for, or the one the system chose for 0.
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self._http = ThreadingHTTPServer((host, port), _handler_for(path))
        self._http.daemon_threads = True  # a scrape in progress never holds up the exit
        self.port: int = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the port.

        Blocks for up to half a second (``serve_forever`` polls): from ``async`` code, run
        it in a thread (``asyncio.to_thread``).
        """
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def serve(url: str) -> Server:
    """Serves :data:`REGISTRY` at ``url`` (``http://HOST:PORT/metrics``); other paths 404."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is no number
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"metrics URL {url!r}: expected http://HOST:PORT/metrics")
    path = parts.path or "/"
    server = Server(parts.hostname, port, path)
    logger.info("metrics served at http://%s:%d%s", parts.hostname, server.port, path)
    return server


def _handler_for(path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = _REQUEST_TIMEOUT_SECONDS

        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path != path:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            # Prometheus asks for OpenMetrics, a browser for text: each gets what it asked.
            encode, content_type = exposition.choose_encoder(self.headers.get("Accept", ""))
            body = encode(REGISTRY)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One line per scrape would drown the operator's own log.
            logger.debug(format, *args)

    return Handler
