"""What the records already in the cluster tell a writer that starts: read once, page by page.

A new writer continues the trail, so it needs three things from it: the head of the hash
chain, the baseline of every live object (what the next change is diffed against), and
which of the last sequence numbers are present or declared lost (what a predecessor that
stopped may have left in flight); the shipper, the records it has not delivered yet
(``Undelivered``). Each page of records is folded into these and let go:
start-up holds one page and the baselines, never the whole trail (50,000 records read
whole held several hundred MiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeledger.core import chain, kinds
from kubeledger.core.baselines import Baselines, LatestRecords
from kubeledger.kube.api import Kubernetes


@dataclass
class History:
    """The records read so far, folded: feed it with ``add``, one record spec at a time."""

    records: int = 0
    head: chain.Head = field(default_factory=chain.Head)
    _present: set[int] = field(default_factory=set)
    _declared_lost: set[int] = field(default_factory=set)
    _latest: LatestRecords = field(default_factory=LatestRecords)

    def add(self, spec: Mapping[str, Any]) -> None:
        self.records += 1
        self._latest.add(spec)
        link = spec.get("chain")
        if not link:
            return
        self._present.add(link["sequence"])
        self._declared_lost.update(link.get("lost") or ())
        if link["sequence"] > self.head.sequence:  # the highest sequence is the head
            self.head = chain.Head(link["sequence"], link["hash"])

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
    """The records after a sink's delivery position, kept while start-up reads them all,
    so that the shipper need not read every record a second time (at 60,000 records,
    decoding them was most of the start-up). Given up (``records`` None) past ``limit``:
    the shipper then reads them itself, a page at a time."""

    after: int
    limit: int
    records: dict[int, tuple[str, Mapping[str, Any]]] | None = field(default_factory=dict)

    def add(self, name: str, spec: Mapping[str, Any]) -> None:
        sequence = (spec.get("chain") or {}).get("sequence", 0)
        if self.records is None or sequence <= self.after:
            return
        if len(self.records) >= self.limit:
            self.records = None
            return
        self.records[sequence] = (name, spec)


async def read(api: Kubernetes, undelivered: Undelivered | None = None) -> History:
    """Every record in the cluster, folded (NotFound when the CRD is not installed);
    those after a delivery position are kept in ``undelivered`` too."""
    history = History()
    async for page in api.pages(kinds.RECORDS):
        for record in page:
            history.add(record["spec"])
            if undelivered is not None:
                undelivered.add(record["metadata"]["name"], record["spec"])
    return history
