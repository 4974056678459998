"""Checkpoints of the chain as Elasticsearch documents, written and read back.

A checkpoint (``core.checkpoints``) lives beside the records, in the monthly index of
its own time, under the id ``checkpoint-<cluster>-<sequence>``: created once, never
overwritten (the operator's credentials cannot), so a second attempt at the same
sequence is a harmless conflict. It is an ECS ``state`` event of dataset
``kubeledger.checkpoint``, which keeps it out of searches for changes
(``event.kind:event``) and out of the trail (it has no ``kubeledger.chain.sequence``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from elasticsearch import AsyncElasticsearch

from kubeledger.core.checkpoints import Checkpoint
from kubeledger.sinks.elasticsearch import ecs, trail

EVENT_DATASET = "kubeledger.checkpoint"
ORDER = [{"kubeledger.checkpoint.sequence": "asc"}, {"event.id": "asc"}]


def document_id(checkpoint: Checkpoint) -> str:
    return f"checkpoint-{checkpoint.cluster}-{checkpoint.sequence}"


def index_for(prefix: str, checkpoint: Checkpoint) -> str:
    return ecs.index_name(prefix, checkpoint.time)


def to_document(checkpoint: Checkpoint) -> dict[str, Any]:
    fields: dict[str, Any] = {"sequence": checkpoint.sequence, "hash": checkpoint.hash,
                              "record": checkpoint.record}
    if checkpoint.signature is not None:
        fields["signature"] = checkpoint.signature
    return {
        "@timestamp": checkpoint.time.isoformat().replace("+00:00", "Z"),
        "ecs": {"version": ecs.ECS_VERSION},
        "event": {"id": document_id(checkpoint), "kind": "state",
                  "dataset": EVENT_DATASET, "module": ecs.EVENT_MODULE},
        "orchestrator": {"type": "kubernetes", "cluster": {"name": checkpoint.cluster}},
        "related": {"hash": [checkpoint.hash]},
        "kubeledger": {"checkpoint": fields},
    }


def from_document(source: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint a document says; raises KeyError or ValueError for one that is not."""
    fields = source["kubeledger"]["checkpoint"]
    return Checkpoint(
        cluster=source["orchestrator"]["cluster"]["name"],
        sequence=int(fields["sequence"]),
        hash=str(fields["hash"]),
        record=str(fields["record"]),
        time=datetime.fromisoformat(source["@timestamp"]),
        signature=fields.get("signature"),
    )


async def read(client: AsyncElasticsearch, prefix: str,
               cluster: str) -> AsyncIterator[Checkpoint | str]:
    """Every checkpoint of ``cluster``, in sequence order; for a document that is no
    checkpoint, its id, which a verifier reports."""
    query = {"bool": {"filter": [
        {"term": {"orchestrator.cluster.name": cluster}},
        {"term": {"event.dataset": EVENT_DATASET}},
    ]}}
    async for hit in trail.hits(client, prefix, query, ORDER):
        try:
            yield from_document(hit["_source"])
        except (KeyError, TypeError, ValueError):
            yield str(hit["_id"])
