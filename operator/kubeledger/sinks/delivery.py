"""Shipping records from the cluster (the outbox) to a sink, in chain order, through outages.

The AuditRecord is written first; shipping follows. The shipper first sets its sink up
(``Sink.prepare``: a failure there is reported as a setup problem and retried), then
keeps one number per sink, the delivery position: every record up to that chain
sequence has been delivered. Records are delivered as soon as they are written: what
arrives while one delivery travels goes in the next, so a burst makes large batches and
a quiet minute no waiting. The position is stored in a ConfigMap at most once per flush
interval and whenever delivery catches up, so a restart resumes from it and re-sends at
most that interval's records, which the sink's create-only writes absorb without
duplicates. A sink that fails is retried with backoff
for as long as it takes; the error is logged once when it starts and once when it ends
(``backoff.Outage``), not on every attempt. The delivered head is checkpointed in the
sink now and then (``checkpointing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeledger import backoff, metrics, sinks
from kubeledger.core import kinds
from kubeledger.core.model import RecordSpec
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes
from kubeledger.sinks.checkpointing import Checkpointer, Head

logger = logging.getLogger(__name__)

POSITION_CONFIG_MAP = "kubeledger-delivery"
# Past this many records waiting in memory, the shipper drops its copies and reads them
# back from the cluster when the sink returns: memory stays bounded in a long outage.
MAX_PENDING = 20_000


class PositionStore:
    """Delivery positions, one per sink, in a ConfigMap of the operator's namespace."""

    def __init__(self, api: Kubernetes, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def load(self) -> dict[str, int]:
        data = await backoff.retrying(self._read, what="read the delivery position",
                                      retry_on=errors.WORTH_WAITING_FOR)
        return {key: int(value) for key, value in data.items()}

    async def save(self, positions: dict[str, int]) -> None:
        data = {key: str(value) for key, value in positions.items()}
        await backoff.retrying(
            lambda: self._api.write_config_map(self._namespace, POSITION_CONFIG_MAP, data),
            what="save the delivery position", retry_on=errors.WORTH_WAITING_FOR)

    async def _read(self) -> dict[str, str]:
        try:
            return await self._api.read_config_map(self._namespace, POSITION_CONFIG_MAP)
        except errors.NotFound:
            return {}  # nothing delivered yet


@dataclass(frozen=True)
class Preloaded:
    """Every record after delivery position ``after``, read by start-up for the shipper:
    it then need not read the outbox itself (see ``recording.history.Undelivered``)."""

    after: int
    records: Mapping[int, tuple[str, RecordSpec]]


class Shipper:
    """Delivers every record after the stored position to one sink, in sequence order."""

    def __init__(self, sink: sinks.Sink, api: Kubernetes, store: PositionStore, *,
                 batch_size: int, flush_interval: float, checkpoint_interval: float,
                 preloaded: Preloaded | None = None) -> None:
        self._sink = sink
        self._api = api
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._pending: dict[int, tuple[str, RecordSpec]] = {}
        self._reload = True  # read the outbox from the cluster before trusting memory
        self._preloaded = preloaded
        self._wake = asyncio.Event()
        self.position = 0
        # The highest sequence known written, for the backlog; reported once ``position``
        # is the stored one, not the 0 it starts at.
        self._newest = 0
        self._position_loaded = False
        self._save_due = 0.0  # monotonic time after which a delivery stores the position
        self._checkpointer = Checkpointer(sink, interval=checkpoint_interval)
        self._head: Head | None = None  # the last record delivered since start-up

    def offer(self, name: str, spec: RecordSpec) -> None:
        """Takes a record the ledger has just written (never blocks)."""
        if spec.chain is None or spec.chain.sequence <= self.position:
            return
        self._newest = max(self._newest, spec.chain.sequence)
        self._report_backlog()
        if len(self._pending) >= MAX_PENDING:
            self._pending.clear()
            self._reload = True
        else:
            self._pending[spec.chain.sequence] = (name, spec)
        self._wake.set()

    async def run(self) -> None:
        """Sets the sink up, then ships forever; cancel to stop."""
        name = self._sink.name
        # Every failure of the sink is retried; none may stop shipping.
        await backoff.retrying(self._sink.prepare, retry_on=(Exception,), level=logging.ERROR,
                               what=backoff.Messages(
                                   failing=f"cannot set up {name}",
                                   recovered=f"{name} set up",
                                   meanwhile="records are kept in the cluster until it is"))
        delivering = backoff.Messages(
            failing=f"cannot deliver to {name}", recovered=f"delivery to {name} resumed",
            meanwhile="records are kept in the cluster and delivery is retried")
        positions = await self._store.load()
        self.position = positions.get(name, 0)
        self._position_loaded = True
        self._take_preloaded()
        logger.info("shipping to %s from sequence %d", name, self.position + 1)
        while True:
            if self._reload:
                await self._reload_from_cluster()
            batch = self._next_batch()
            if not batch:
                await self._save(positions)
                await self._checkpointer.delivered(self._head)
                await self._sleep(self._flush_interval)
                continue
            # The same batch until it lands; the backoff, not new records, paces the
            # attempts: it is what spares the sink.
            await backoff.retrying(functools.partial(self._deliver, batch),
                                   what=delivering, retry_on=(Exception,), level=logging.ERROR)
            for _ in batch:  # the batch is exactly position+1, position+2, ...
                self.position += 1
                self._pending.pop(self.position, None)
            self._report_backlog()
            if time.monotonic() >= self._save_due:
                await self._save(positions)
            self._head = _head_of(batch)
            await self._checkpointer.delivered(self._head)

    async def _save(self, positions: dict[str, int]) -> None:
        """Stores the position if it moved since it was last stored."""
        if positions.get(self._sink.name, 0) != self.position:
            positions[self._sink.name] = self.position
            await self._store.save(positions)
        self._save_due = time.monotonic() + self._flush_interval

    async def _deliver(self, batch: list[tuple[str, RecordSpec]]) -> None:
        """One attempt at delivering ``batch``, counted whichever way it goes."""
        with metrics.DELIVERY_ERRORS.labels(self._sink.name).count_exceptions():
            await self._sink.deliver(batch)
        metrics.DOCUMENTS_DELIVERED.labels(self._sink.name).inc(len(batch))
        metrics.LAST_DELIVERY.labels(self._sink.name).set_to_current_time()

    def _next_batch(self) -> list[tuple[str, RecordSpec]]:
        """The records right after the position, without a gap, at most one batch."""
        batch: list[tuple[str, RecordSpec]] = []
        sequence = self.position + 1
        while len(batch) < self._batch_size and sequence in self._pending:
            batch.append(self._pending[sequence])
            sequence += 1
        if not batch and self._pending:
            # The next record is not in memory (written before start-up, or dropped in an
            # outage): read the outbox again.
            self._reload = True
        return batch

    def _take_preloaded(self) -> None:
        """The outbox as start-up read it, when it was read after this very position."""
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is None or preloaded.after != self.position:
            return
        for sequence, record in preloaded.records.items():
            self._pending.setdefault(sequence, record)
            self._newest = max(self._newest, sequence)
        self._reload = False
        self._skip_missing()
        self._report_backlog()

    async def _reload_from_cluster(self) -> None:
        await backoff.retrying(self._read_undelivered, what="read undelivered records",
                               retry_on=errors.WORTH_WAITING_FOR)
        self._reload = False
        self._skip_missing()
        self._report_backlog()

    async def _read_undelivered(self) -> None:
        """Takes the records after the position from the cluster, a page at a time.

        Only those are decoded and held: after a restart that is a batch or two, not
        the whole outbox.
        """
        with contextlib.suppress(errors.NotFound):  # no CRD: no records to read
            async for page in self._api.pages(kinds.RECORDS):
                for item in page:
                    self._take_if_undelivered(item)

    def _take_if_undelivered(self, item: Mapping[str, Any]) -> None:
        sequence = (item["spec"].get("chain") or {}).get("sequence", 0)
        if sequence > self.position and sequence not in self._pending:
            spec = RecordSpec.model_validate(item["spec"])
            self._pending[sequence] = (item["metadata"]["name"], spec)
            self._newest = max(self._newest, sequence)

    def _skip_missing(self) -> None:
        """Steps over sequence numbers absent from the cluster itself, saying so.

        A record removed before delivery cannot be shipped; waiting for it would stop
        delivery forever. ``kubeledger verify`` reports the same gap.
        """
        if not self._pending or self.position + 1 in self._pending:
            return
        following = min(self._pending)
        logger.error("records %d..%d are missing from the cluster and were never delivered "
                     "to %s (removed before delivery?)", self.position + 1, following - 1,
                     self._sink.name)
        self.position = following - 1

    def _report_backlog(self) -> None:
        if self._position_loaded:
            metrics.DELIVERY_BACKLOG.labels(self._sink.name).set(
                max(self._newest - self.position, 0))

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


def _head_of(batch: list[tuple[str, RecordSpec]]) -> Head | None:
    """The batch's last record as a head (every record shipped is sealed: ``offer``)."""
    name, spec = batch[-1]
    return None if spec.chain is None else Head(spec.chain.sequence, spec.chain.hash, name)
