"""Removing old records from the cluster once every sink has them.

The cluster holds a recent window; Elasticsearch keeps the history. A record goes only
when it is older than the retention, delivered to every configured sink, and not the
latest record of its object: that one is the object's baseline, the state the next
change (or a catch-up after downtime) is diffed against. Without any sink nothing is
removed: the cluster is then the only copy of the history. The highest sequence ever
removed is kept in a ConfigMap, so ``kubeledger verify`` can tell these gaps from records
removed by someone else; and the writer's watch on record deletions is told each name
first (``break_glass.Removals``), so that it records the deletions of others only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import UTC, datetime, timedelta

from kubeledger import backoff
from kubeledger.core import kinds, record_index
from kubeledger.core.record_index import RecordIndex
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes
from kubeledger.recording.break_glass import Removals

logger = logging.getLogger(__name__)


WATERMARK_CONFIG_MAP = "kubeledger-retention"
WATERMARK_KEY = "prunedThrough"


class Expiry:
    """The rule, folded over the records one at a time (pure): which may go.

    A record may go when it is older than the retention, delivered up to
    ``delivered_up_to`` (the lowest delivery position over all sinks), and not its
    object's latest. Of 50,000 records only each object's latest sequence is held, and
    the records old and delivered enough, not a list of every record.
    """

    def __init__(self, *, now: datetime, retention: timedelta, delivered_up_to: int) -> None:
        self._cutoff = now - retention
        self._delivered_up_to = delivered_up_to
        self._latest: dict[str, int] = {}
        self._old: list[tuple[str, str, int]] = []  # name, object's uid, sequence

    def add(self, name: str, index: RecordIndex) -> None:
        """One record, by its index (``core.record_index``). A record outside the chain
        (none is written so) is left alone."""
        if not index.sequence:
            return
        uid = index.subject["uid"]
        self._latest[uid] = max(self._latest.get(uid, 0), index.sequence)
        if (index.sequence <= self._delivered_up_to
                and datetime.fromisoformat(index.observed_at) < self._cutoff):
            self._old.append((name, uid, index.sequence))

    def expired(self) -> list[tuple[str, int]]:
        """``(name, sequence)`` of the records that may go, of those added."""
        return [(name, sequence) for name, uid, sequence in self._old
                if self._latest[uid] != sequence]


class UnindexedError(Exception):
    """A record has no readable index: the records must be read whole."""


async def expired(api: Kubernetes, *, now: datetime, retention: timedelta,
                  delivered_up_to: int) -> list[tuple[str, int]]:
    """The records that may go, from every record's index (their metadata only), or from
    the records read whole where one has none (written before the index existed)."""
    rule = functools.partial(Expiry, now=now, retention=retention,
                             delivered_up_to=delivered_up_to)
    try:
        return await _folded(api, rule(), whole=False)
    except UnindexedError:
        return await _folded(api, rule(), whole=True)


async def _folded(api: Kubernetes, expiry: Expiry, *, whole: bool) -> list[tuple[str, int]]:
    async for page in api.pages(kinds.RECORDS, metadata_only=not whole):
        for item in page:
            metadata = item["metadata"]
            index = (record_index.of(item["spec"]) if whole
                     else record_index.read(metadata.get("annotations")))
            if index is None:
                raise UnindexedError(metadata["name"])
            expiry.add(metadata["name"], index)
    return expiry.expired()


async def pruned_through(api: Kubernetes, namespace: str) -> int:
    """How far retention has pruned: gaps in the chain up to here are expected."""
    try:
        data = await api.read_config_map(namespace, WATERMARK_CONFIG_MAP)
    except errors.NotFound:
        return 0  # nothing pruned yet
    return int(data.get(WATERMARK_KEY, 0))


async def prune(api: Kubernetes, namespace: str, *, retention: timedelta,
                delivered_up_to: int, removals: Removals | None = None) -> int:
    """Deletes expired records; returns how many.

    The watermark is raised before anything is deleted, so a crash half-way leaves only
    gaps ``kubeledger verify`` knows to expect. Each name goes into ``removals`` before
    its record is deleted, for the watch that records the deletions of others.
    """
    chosen = await backoff.retrying(
        lambda: expired(api, now=datetime.now(UTC), retention=retention,
                        delivered_up_to=delivered_up_to),
        what="list records", retry_on=errors.WORTH_WAITING_FOR)
    if not chosen:
        return 0
    previous = await backoff.retrying(lambda: pruned_through(api, namespace),
                                      what="read the retention watermark",
                                      retry_on=errors.WORTH_WAITING_FOR)
    watermark = max(previous, *(sequence for _, sequence in chosen))
    await backoff.retrying(lambda: api.write_config_map(namespace, WATERMARK_CONFIG_MAP,
                                                        {WATERMARK_KEY: str(watermark)}),
                           what="save the retention watermark",
                           retry_on=errors.WORTH_WAITING_FOR)
    for name, _ in chosen:
        if removals is not None:
            removals.add(name)
        await backoff.retrying(functools.partial(_delete, api, name),
                               what=f"remove expired record {name}",
                               retry_on=errors.WORTH_WAITING_FOR)
    logger.info("removed %d delivered, superseded records older than %s", len(chosen),
                retention)
    return len(chosen)


async def _delete(api: Kubernetes, name: str) -> None:
    with contextlib.suppress(errors.NotFound):  # gone already: what we wanted
        await api.delete(kinds.RECORDS, name)
