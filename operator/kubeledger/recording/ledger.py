"""The ledger: writes AuditRecords one at a time, in chain order, exactly once, fenced.

Records are sealed into the hash chain and created under their deterministic name. A
name that already exists means the change is already recorded (a re-list, a retry, a
restart), and nothing is added; unless the existing record is the very one this call
sealed, written by an earlier attempt whose answer was lost (a timeout). Failures that
may pass are retried with backoff for as long as it takes: a change is never dropped
because the apiserver was briefly away.

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
from kubeledger.core import chain, kinds, model
from kubeledger.core.model import RecordSpec, record_labels
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)


class NotWriterError(RuntimeError):
    """This replica may no longer write records: its leadership ended."""


def always() -> bool:
    """The fence of a ledger that is the only writer by construction (tests, tools)."""
    return True


class Ledger:
    """The single writer of records; holds the head of the chain."""

    def __init__(self, api: Kubernetes, head: chain.Head, *,
                 may_write: Callable[[], bool] = always) -> None:
        self._api = api
        self._head = head
        self._may_write = may_write
        self._lock = asyncio.Lock()
        metrics.CHAIN_HEAD_SEQUENCE.set(head.sequence)
        # Called with every record once it is in the cluster (the shippers take it).
        self.on_written: list[Callable[[str, RecordSpec], None]] = []

    @property
    def head(self) -> chain.Head:
        return self._head

    async def append(self, name: str, spec: RecordSpec) -> RecordSpec | None:
        """Seals and writes one record; None when that change was already recorded."""
        async with self._lock:
            sealed, new_head = chain.seal(spec, self._head)
            existing = await backoff.retrying(
                lambda: self._create(name, sealed), what=f"write record {name}",
                retry_on=errors.WORTH_WAITING_FOR)
            if existing is not None and existing.get("chain", {}).get("hash") != new_head.hash:
                logger.debug("record %s exists already; change recorded before", name)
                return None
            # Written now, or by an earlier attempt of this very call whose answer was lost.
            self._head = new_head
            metrics.CHAIN_HEAD_SEQUENCE.set(new_head.sequence)
            for listener in self.on_written:
                listener(name, sealed)
            return sealed

    async def _create(self, name: str, sealed: RecordSpec) -> dict[str, Any] | None:
        """Creates the record; if the name is taken, returns the existing record's spec."""
        if not self._may_write():
            raise NotWriterError(f"not the leader any more: record {name} left to the next one")
        body = {
            "apiVersion": model.API_VERSION, "kind": model.KIND,
            "metadata": {"name": name, "labels": record_labels(sealed)},
            "spec": sealed.wire(),
        }
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


def head_of(specs: Iterable[Mapping[str, Any]]) -> chain.Head:
    """The chain head among existing records: the highest sequence wins."""
    best = chain.Head()
    for spec in specs:
        link = spec.get("chain")
        if link and link["sequence"] > best.sequence:
            best = chain.Head(link["sequence"], link["hash"])
    return best
