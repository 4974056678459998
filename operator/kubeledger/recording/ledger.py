"""The ledger: writes AuditRecords in chain order, exactly once, several at a time, fenced.

Records are sealed into the hash chain one after the other and created under their
deterministic name; up to ``window`` creates are in flight at once, because one round
trip to the apiserver at a time is what held recording back in a burst. A name that
already exists means the change is already recorded (a re-list, a retry, a restart), and
nothing is added; unless the existing record is the very one this call sealed, written
by an earlier attempt whose answer was lost (a timeout). Failures that may pass are
retried with backoff for as long as it takes: a change is never dropped because the
apiserver was briefly away, nor because it is too large for etcd (``core.bounds`` cuts
it first, and says so in ``spec.truncated``). Listeners (the shippers) hear of written
records in sequence order.

A sealed record can still fail to be written: a write refused for good, a change found
already recorded after later records were sealed, a writer stopped with writes in
flight. Its sequence number then stays empty, and the chain says so: the next record
sealed lists it in ``chain.lost``, so ``verify`` accepts that gap and no other. A writer
that took over lists the sequence numbers missing among the last ``window`` it found
(``history.History.missing_in_flight``): only those could have been in flight when its predecessor
stopped; a record removed from further back stays a finding.

Only the leader writes (``leadership``): every attempt first asks the fence, and a
replica whose authority has run out raises ``NotWriterError`` instead of writing. What it
had not yet written is recorded by the next leader, which starts from the records in
the cluster, never from this ledger's head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubeledger import backoff, metrics
from kubeledger.core import bounds, chain, kinds, model, record_index
from kubeledger.core.model import RecordSpec, record_labels
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 16


class NotWriterError(RuntimeError):
    """This replica may no longer write records: its leadership ended."""


def unflagged(spec: RecordSpec) -> RecordSpec:
    """The flagging of a ledger that looks for no anomalies (tests, tools)."""
    return spec


def always() -> bool:
    """The fence of a ledger that is the only writer by construction (tests, tools)."""
    return True


class Ledger:
    """The single writer of records; holds the head of the chain."""

    def __init__(self, api: Kubernetes, head: chain.Head, *,
                 may_write: Callable[[], bool] = always, window: int = DEFAULT_WINDOW,
                 lost: Iterable[int] = (),
                 flag: Callable[[RecordSpec], RecordSpec] = unflagged) -> None:
        self._api = api
        # Adds the record's anomalies (``core.anomalies``) just before it is sealed: so
        # they are hashed with the rest, and the windowed detectors see chain order.
        self._flag = flag
        self._head = head
        self._may_write = may_write
        self._slots = asyncio.Semaphore(window)
        self._sealing = asyncio.Lock()
        # Sequence numbers sealed but never written, to be declared by the next record.
        self._lost = set(lost)
        # Written (or lost: None) but not yet told to the listeners, by sequence.
        self._done: dict[int, tuple[str, RecordSpec] | None] = {}
        self._told_through = head.sequence
        metrics.CHAIN_HEAD_SEQUENCE.set(head.sequence)
        # Called with every record once it is in the cluster (the shippers take it).
        self.on_written: list[Callable[[str, RecordSpec], None]] = []

    @property
    def head(self) -> chain.Head:
        """The last record sealed (written, or on its way)."""
        return self._head

    async def append(self, name: str, spec: RecordSpec) -> RecordSpec | None:
        """Seals and writes one record; None when that change was already recorded."""
        async with self._slots:
            async with self._sealing:
                before, declared = self._head, self._lost
                # Bounded after flagging (the detectors see the whole object) and before
                # sealing (the hash covers what is stored): see ``core.bounds``.
                sealed, self._head = chain.seal(bounds.bounded(self._flag(spec)), before,
                                                lost=declared)
                self._lost = set()
                sealed_as = self._head
            body = _record(name, sealed)
            try:
                existing = await backoff.retrying(
                    lambda: self._create(body), what=f"write record {name}",
                    retry_on=errors.WORTH_WAITING_FOR)
            except (errors.KubeError, NotWriterError):
                self._lose(sealed_as, before, declared)
                raise
            if existing is not None and existing.get("chain", {}).get("hash") != sealed_as.hash:
                logger.debug("record %s exists already; change recorded before", name)
                self._lose(sealed_as, before, declared)
                return None
            # Written now, or by an earlier attempt of this very call whose answer was lost.
            self._done[sealed_as.sequence] = (name, sealed)
            self._tell()
            return sealed

    def _lose(self, sealed_as: chain.Head, before: chain.Head, declared: set[int]) -> None:
        """The record sealed as ``sealed_as`` will not be written.

        When nothing was sealed after it, the chain simply steps back, and what it
        declared is declared by the next record instead. Otherwise its sequence number
        stays empty, and the next record declares it lost.
        """
        if self._head == sealed_as:
            self._head = before
            self._lost |= declared
            return
        logger.warning("sequence %d stays empty (sealed, not written); the next record "
                       "declares it lost", sealed_as.sequence)
        self._lost.add(sealed_as.sequence)
        self._done[sealed_as.sequence] = None
        self._tell()

    def _tell(self) -> None:
        """Tells the listeners of written records, in sequence order, without gaps."""
        while self._told_through + 1 in self._done:
            self._told_through += 1
            written = self._done.pop(self._told_through)
            if written is None:
                continue
            name, sealed = written
            metrics.CHAIN_HEAD_SEQUENCE.set(self._told_through)
            for listener in self.on_written:
                listener(name, sealed)

    async def _create(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Creates the record; if the name is taken, returns the existing record's spec."""
        name = body["metadata"]["name"]
        if not self._may_write():
            raise NotWriterError(f"not the leader any more: record {name} left to the next one")
        started = time.monotonic()
        try:
            await self._api.create(kinds.RECORDS, body)
            metrics.RECORD_WRITE_SECONDS.observe(time.monotonic() - started)
        except errors.Conflict:
            try:
                existing = await self._api.get(kinds.RECORDS, name)
            except errors.NotFound:
                # Removed between our create and our read: create it again.
                raise errors.Unavailable(f"record {name} vanished while read") from None
            spec: dict[str, Any] = existing["spec"]
            return spec
        return None


def _record(name: str, sealed: RecordSpec) -> dict[str, Any]:
    """The AuditRecord to create: the sealed spec, its labels and its index."""
    spec = sealed.wire()
    return {
        "apiVersion": model.API_VERSION, "kind": model.KIND,
        "metadata": {"name": name, "labels": record_labels(sealed),
                     "annotations": {record_index.ANNOTATION: record_index.of(spec).annotation()}},
        "spec": spec,
    }
