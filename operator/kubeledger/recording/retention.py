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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeledger import backoff
from kubeledger.core import kinds, record_index
from kubeledger.core.record_index import RecordIndex
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes
from kubeledger.recording.break_glass import Removals

logger = logging.getLogger(__name__)


WATERMARK_CONFIG_MAP = "kubeledger-retention"
WATERMARK_KEY = "prunedThrough"


@dataclass(frozen=True)
class Held:
    """What the rule needs of one record: listing 50,000 records holds only this."""

    name: str
    uid: str
    sequence: int
    observed_at: str

    @classmethod
    def indexed(cls, name: str, index: RecordIndex) -> Held | None:
        """From a record's index (``core.record_index``); None for a record outside the
        chain (none is written so; it is left alone)."""
        if not index.sequence:
            return None
        return cls(name, index.subject["uid"], index.sequence, index.observed_at)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Held | None:
        """From a record read whole (one without an index): its index, derived."""
        return cls.indexed(record["metadata"]["name"], record_index.of(record["spec"]))


class UnindexedError(Exception):
    """A record has no readable index: the records must be read whole."""


async def held_records(api: Kubernetes) -> list[Held | None]:
    """What the rule needs of every record, from their indexes (their metadata only), or
    from the records read whole where one has none (written before the index existed)."""

    def of_metadata(item: Mapping[str, Any]) -> Held | None:
        metadata = item["metadata"]
        index = record_index.read(metadata.get("annotations"))
        if index is None:
            raise UnindexedError(metadata["name"])
        return Held.indexed(metadata["name"], index)

    try:
        return [of_metadata(item) async for page in api.pages(kinds.RECORDS,
                                                                metadata_only=True)
                for item in page]
    except UnindexedError:
        return await api.list(kinds.RECORDS, Held.of)


def expired(records: list[Held], *, now: datetime, retention: timedelta,
            delivered_up_to: int) -> list[tuple[str, int]]:
    """``(name, sequence)`` of the records that may go (pure: the rule above, nothing else).

    ``delivered_up_to`` is the lowest delivery position over all sinks.
    """
    latest: dict[str, int] = {}
    for record in records:
        latest[record.uid] = max(latest.get(record.uid, 0), record.sequence)
    cutoff = now - retention
    return [(record.name, record.sequence) for record in records
            if datetime.fromisoformat(record.observed_at) < cutoff
            and record.sequence <= delivered_up_to
            and latest[record.uid] != record.sequence]


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
    held = await backoff.retrying(lambda: held_records(api),
                                  what="list records", retry_on=errors.WORTH_WAITING_FOR)
    chosen = expired([record for record in held if record is not None],
                     now=datetime.now(UTC), retention=retention,
                     delivered_up_to=delivered_up_to)
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
