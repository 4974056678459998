"""Removing old records from the cluster once every sink has them.

The cluster holds a recent window; Elasticsearch keeps the history. A record goes only
when it is older than the retention, delivered to every configured sink, and not the
latest record of its object: that one is the object's baseline, the state the next
change (or a catch-up after downtime) is diffed against.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeledger.kube import KubeApi, Resource
from kubeledger.ledger import retrying

logger = logging.getLogger(__name__)


def expired(records: list[Mapping[str, Any]], *, now: datetime, retention: timedelta,
            delivered_up_to: int | None) -> list[str]:
    """Names of the records that may go (pure: the rule above, nothing else).

    ``delivered_up_to`` is the lowest delivery position over all sinks; None means there
    is no sink to wait for.
    """
    latest: dict[str, int] = {}
    for record in records:
        spec = record["spec"]
        uid, sequence = spec["subject"]["uid"], spec["chain"]["sequence"]
        latest[uid] = max(latest.get(uid, 0), sequence)
    cutoff = now - retention
    names = []
    for record in records:
        spec = record["spec"]
        sequence = spec["chain"]["sequence"]
        if (datetime.fromisoformat(spec["observedAt"]) < cutoff
                and (delivered_up_to is None or sequence <= delivered_up_to)
                and latest[spec["subject"]["uid"]] != sequence):
            names.append(record["metadata"]["name"])
    return names


async def prune(api: KubeApi, records_resource: Resource, *, retention: timedelta,
                delivered_up_to: int | None) -> int:
    """Deletes expired records; returns how many."""
    records = await retrying(lambda: api.list_all(records_resource), what="listing records")
    names = expired([r for r in records or [] if "chain" in r["spec"]],
                    now=datetime.now(UTC), retention=retention,
                    delivered_up_to=delivered_up_to)
    for name in names:
        await retrying(functools.partial(api.delete_record, name),
                       what=f"removing expired record {name}")
    if names:
        logger.info("removed %d records older than %s (delivered, superseded)", len(names),
                    retention)
    return len(names)
