"""Shipping records from the cluster (the outbox) to a sink, in chain order, through outages.

The AuditRecord is written first; shipping follows. The shipper keeps one number per
sink, the delivery position: every record up to that chain sequence has been delivered.
It is stored in a ConfigMap once per batch (not once per record), so a restart resumes
from it and re-sends at most one batch, which the sink's create-only writes absorb
without duplicates. A sink that fails is retried with backoff for as long as it takes;
the error is logged once when it starts and once when it ends, not on every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from kubeledger.kube import KubeApi, Resource
from kubeledger.ledger import retrying
from kubeledger.model import RecordSpec

logger = logging.getLogger(__name__)

POSITION_CONFIG_MAP = "kubeledger-delivery"
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
STILL_FAILING_EVERY_SECONDS = 300.0
# Past this many records waiting in memory, the shipper drops its copies and reads them
# back from the cluster when the sink returns: memory stays bounded in a long outage.
MAX_PENDING = 20_000


class Sink(Protocol):
    """Where records are shipped. ``deliver`` must be idempotent per record name."""

    name: str

    async def deliver(self, records: Sequence[tuple[str, RecordSpec]]) -> None: ...

    async def close(self) -> None: ...


class PositionStore:
    """Delivery positions, one per sink, in a ConfigMap of the operator's namespace."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def load(self) -> dict[str, int]:
        data = await retrying(
            lambda: self._api.read_config_map(self._namespace, POSITION_CONFIG_MAP),
            what="reading the delivery position")
        return {key: int(value) for key, value in (data or {}).items()}

    async def save(self, positions: dict[str, int]) -> None:
        data = {key: str(value) for key, value in positions.items()}
        await retrying(
            lambda: self._api.write_config_map(self._namespace, POSITION_CONFIG_MAP, data),
            what="saving the delivery position")


class Shipper:
    """Delivers every record after the stored position to one sink, in sequence order."""

    def __init__(self, sink: Sink, api: KubeApi, records: Resource, store: PositionStore, *,
                 batch_size: int, flush_interval: float) -> None:
        self._sink = sink
        self._api = api
        self._records = records
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._pending: dict[int, tuple[str, RecordSpec]] = {}
        self._reload = True  # read the outbox from the cluster before trusting memory
        self._wake = asyncio.Event()
        self.position = 0

    def offer(self, name: str, spec: RecordSpec) -> None:
        """Takes a record the ledger has just written (never blocks)."""
        if spec.chain is None or spec.chain.sequence <= self.position:
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.clear()
            self._reload = True
        else:
            self._pending[spec.chain.sequence] = (name, spec)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def run(self) -> None:
        """Ships forever; cancel to stop."""
        positions = await self._store.load()
        self.position = positions.get(self._sink.name, 0)
        logger.info("shipping to %s from sequence %d", self._sink.name, self.position + 1)
        outage = _Outage(self._sink.name)
        while True:
            if self._reload:
                await self._reload_from_cluster()
            batch = self._next_batch()
            if not batch:
                await self._sleep(self._flush_interval)
                continue
            try:
                await self._sink.deliver(batch)
            except Exception as error:  # every failure is retried; none may stop shipping
                # Not woken early by new records: the backoff is what spares the sink.
                await asyncio.sleep(outage.failed(error))
                continue
            outage.ended()
            for _ in batch:  # the batch is exactly position+1, position+2, ...
                self.position += 1
                self._pending.pop(self.position, None)
            positions[self._sink.name] = self.position
            await self._store.save(positions)

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

    async def _reload_from_cluster(self) -> None:
        items = await retrying(lambda: self._api.list_all(self._records),
                               what="reading undelivered records")
        for item in items or []:
            spec = RecordSpec.model_validate(item["spec"])
            if spec.chain is not None and spec.chain.sequence > self.position:
                self._pending[spec.chain.sequence] = (item["metadata"]["name"], spec)
        self._reload = False
        self._skip_missing()

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

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


class _Outage:
    """Backoff and logging for one stretch of failures: loud at the start, quiet after."""

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._delay = FIRST_BACKOFF_SECONDS
        self._since: float | None = None
        self._last_said = 0.0

    def failed(self, error: Exception) -> float:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            logger.error("cannot deliver to %s: %s; records are kept in the cluster and "
                         "delivery is retried", self._sink, error)
            self._last_said = now
        elif now - self._last_said > STILL_FAILING_EVERY_SECONDS:
            logger.warning("still cannot deliver to %s after %.0fs: %s", self._sink,
                           now - self._since, error)
            self._last_said = now
        delay = self._delay
        self._delay = min(self._delay * 2, MAX_BACKOFF_SECONDS)
        return delay

    def ended(self) -> None:
        if self._since is not None:
            logger.info("delivery to %s resumed after %.0fs", self._sink,
                        time.monotonic() - self._since)
        self._since = None
        self._delay = FIRST_BACKOFF_SECONDS
