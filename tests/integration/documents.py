"""The records' copies in Elasticsearch, as a test reads them (as the superuser)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from integration.kubectl import Kubectl, eventually
from integration.operator import records_of

INDICES = "kubeledger-*"


def documents(es: Elasticsearch, uid: str) -> list[dict[str, Any]]:
    """The documents of one object's records, as searchable now (all of them: scrolled,
    since a stream of writes under a long outage gives thousands)."""
    es.indices.refresh(index=INDICES, allow_no_indices=True)
    return list(helpers.scan(es, index=INDICES,
                             query={"query": {"term": {"kubeledger.subject.uid": uid}}},
                             allow_no_indices=True))


def every_document(es: Elasticsearch) -> Iterator[dict[str, Any]]:
    """Every document of every kubeledger index (records and checkpoints alike).

    Scrolled, not searched: a value need not be indexed to be stored in a document.
    """
    es.indices.refresh(index=INDICES, allow_no_indices=True)
    yield from helpers.scan(es, index=INDICES, query={"query": {"match_all": {}}},
                            allow_no_indices=True)


def delivered(es: Elasticsearch, kubectl: Kubectl, uid: str, count: int,
              timeout: float = 60.0) -> list[dict[str, Any]]:
    """Waits until at least ``count`` records of ``uid`` exist and all are in Elasticsearch.

    At least: a real rollout adds its own ``rollout-completed`` record in its own time.
    """
    def done() -> list[dict[str, Any]] | None:
        names = {r["metadata"]["name"] for r in records_of(kubectl, uid)}
        docs = documents(es, uid)
        if len(names) >= count and {d["_id"] for d in docs} == names:
            return docs
        return None
    return eventually(done, timeout=timeout, what=f"{count} records of {uid} in Elasticsearch")
