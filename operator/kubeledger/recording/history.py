"""What the records already in the cluster tell a writer that starts: read once, page by page.

A new writer continues the trail, so it needs three things from it: the head of the hash
chain, the baseline of every live object (what the next change is diffed against), and
which of the last sequence numbers are present or declared lost (what a predecessor that
stopped may have left in flight); the shipper, the records it has not delivered yet
(``Undelivered``). All but the last are in each record's index (``core.record_index``),
so the records are listed as metadata only, a page at a time, and each page is folded
into these and let go: start-up holds one page and the baselines' hashes, never the
trail, nor the snapshots (60,000 records read whole took a minute to decode). Records
are read whole only where the index cannot serve: those the shipper has still to
deliver, and any without a readable index (written before it existed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeledger.core import chain, kinds, record_index
from kubeledger.core.baselines import Baselines
from kubeledger.core.record_index import LatestRecords, RecordIndex
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)

Spec = Mapping[str, Any]

# Records read whole at once, one request each (those without an index, the shipper's).
CONCURRENT_READS = 16
# Past this many records without an index, they are listed whole instead, page by page.
MOST_READ_ONE_BY_ONE = 1_000


@dataclass
class History:
    """The records read so far, folded: feed it with ``add``, one record index at a time."""

    records: int = 0
    head: chain.Head = field(default_factory=chain.Head)
    _present: set[int] = field(default_factory=set)
    _declared_lost: set[int] = field(default_factory=set)
    _latest: LatestRecords = field(default_factory=LatestRecords)

    def add(self, name: str, index: RecordIndex) -> None:
        self.records += 1
        self._latest.add(name, index)
        if not index.sequence:
            return  # not in the chain
        self._present.add(index.sequence)
        self._declared_lost.update(index.lost)
        if index.sequence > self.head.sequence:  # the highest sequence is the head
            self.head = chain.Head(index.sequence, index.hash)

    def baselines(self) -> Baselines:
        return self._latest.baselines()

    def missing_in_flight(self, *, window: int, pruned_through: int = 0) -> set[int]:
        """The sequence numbers a writer that stopped may have left empty, not yet declared.

        Only the last ``window`` below the head can have been in flight when it stopped;
        retention's removals (through ``pruned_through``) are no loss, and a record
        missing from further back stays a finding of ``verify``.
        """
        head = self.head.sequence
        candidates = range(max(1, pruned_through + 1, head - window + 1), head)
        return {sequence for sequence in candidates
                if sequence not in self._present and sequence not in self._declared_lost}


@dataclass
class Undelivered:
    """The records after a sink's delivery position, read whole at start-up, so that the
    shipper need not list every record itself. Given up (``records`` None) past
    ``limit``, or past ``MOST_READ_ONE_BY_ONE`` to read one by one: the shipper then
    reads them itself, in a listing of every record."""

    after: int
    limit: int
    records: dict[int, tuple[str, Mapping[str, Any]]] | None = field(default_factory=dict)
    # Sequence -> name of those whose index was read: their specs are read afterwards.
    _wanted: dict[int, str] = field(default_factory=dict)

    def want(self, name: str, sequence: int) -> None:
        """A record whose index was read: kept to be read whole if it is after ``after``."""
        if self._keeps(sequence):
            self._wanted[sequence] = name

    def add(self, name: str, spec: Mapping[str, Any]) -> None:
        """A record read whole."""
        sequence = (spec.get("chain") or {}).get("sequence", 0)
        if self._keeps(sequence) and self.records is not None:
            self.records[sequence] = (name, spec)

    def _keeps(self, sequence: int) -> bool:
        if self.records is None or sequence <= self.after:
            return False
        if len(self.records) + len(self._wanted) >= self.limit:
            self.records, self._wanted = None, {}
            return False
        return True

    async def read_wanted(self, api: Kubernetes) -> None:
        """Reads the wanted records whole (one request each, several at once); past
        ``MOST_READ_ONE_BY_ONE`` of them (an outage's backlog), gives up instead."""
        wanted, self._wanted = self._wanted, {}
        if len(wanted) > MOST_READ_ONE_BY_ONE:
            self.records = None
            return
        async for name, spec in _read_whole(api, wanted.values()):
            self.add(name, spec)


async def read(api: Kubernetes, undelivered: Undelivered | None = None) -> History:
    """Every record in the cluster, folded (NotFound when the CRD is not installed);
    those after a delivery position are kept in ``undelivered`` too."""
    history = History()
    unindexed: list[str] = []
    async for page in api.pages(kinds.RECORDS, metadata_only=True):
        for item in page:
            metadata = item["metadata"]
            index = record_index.read(metadata.get("annotations"))
            if index is None:
                unindexed.append(metadata["name"])
                continue
            history.add(metadata["name"], index)
            if undelivered is not None:
                undelivered.want(metadata["name"], index.sequence)
    if unindexed:
        logger.info("%d records have no index (written before it existed): read whole",
                    len(unindexed))
        async for name, spec in _unindexed(api, unindexed):
            history.add(name, record_index.of(spec))
            if undelivered is not None:
                undelivered.add(name, spec)
    if undelivered is not None:
        await undelivered.read_wanted(api)
    return history


async def _unindexed(api: Kubernetes, names: list[str]) -> AsyncIterator[tuple[str, Spec]]:
    """The specs of the records named: one by one when few, else in a listing of all."""
    if len(names) <= MOST_READ_ONE_BY_ONE:
        async for read_one in _read_whole(api, names):
            yield read_one
        return
    wanted = set(names)
    async for page in api.pages(kinds.RECORDS):
        for record in page:
            if record["metadata"]["name"] in wanted:
                yield record["metadata"]["name"], record["spec"]


async def _read_whole(api: Kubernetes, names: Iterable[str]
                      ) -> AsyncIterator[tuple[str, Spec]]:
    """The specs of the records named, read ``CONCURRENT_READS`` at a time; a record
    removed meanwhile (retention, break-glass) is skipped."""
    pending = list(names)
    for start in range(0, len(pending), CONCURRENT_READS):
        batch = pending[start:start + CONCURRENT_READS]
        found = await asyncio.gather(*(spec_of(api, name) for name in batch))
        for name, spec in zip(batch, found, strict=True):
            if spec is not None:
                yield name, spec


async def spec_of(api: Kubernetes, name: str) -> Spec | None:
    """The spec of the record named; None when there is no such record."""
    try:
        record = await api.get(kinds.RECORDS, name)
    except errors.NotFound:
        return None
    spec: Spec = record["spec"]
    return spec
