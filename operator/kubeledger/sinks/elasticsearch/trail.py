"""The trail as Elasticsearch holds it, read back for ``kubeledger verify``.

Every document carries the canonical spec that its record's hash covers
(``kubeledger.chain.content``). A document is read back as that spec and checked
against it: one whose searchable fields no longer say what its content says was
altered in Elasticsearch, even where the content was left alone; one whose content
was altered breaks the hash chain, which ``chain.verify`` then finds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import AsyncElasticsearch
from pydantic import ValidationError

from kubeledger.core.model import RecordSpec
from kubeledger.sinks.elasticsearch import ecs

PAGE_SIZE = 1000
# A chain has one document per sequence number; the name breaks a tie (a fork).
ORDER = [{"kubeledger.chain.sequence": "asc"}, {"event.id": "asc"}]


@dataclass(frozen=True)
class Document:
    """One record as Elasticsearch holds it: its spec (None when unreadable) and, when
    the document does not match that spec, what is wrong with it."""

    name: str
    sequence: int | None
    spec: dict[str, Any] | None
    problem: str | None = None


async def clusters(client: AsyncElasticsearch, prefix: str) -> list[str]:
    """The cluster names whose records the indices hold."""
    found = await client.search(
        index=f"{prefix}-*", size=0, allow_no_indices=True,
        aggs={"clusters": {"terms": {"field": "orchestrator.cluster.name", "size": 100}}})
    return [bucket["key"] for bucket in found["aggregations"]["clusters"]["buckets"]]


async def documents(client: AsyncElasticsearch, prefix: str, cluster: str, *,
                    subject: Mapping[str, str] | None = None) -> AsyncIterator[Document]:
    """Every chained document of ``cluster`` (only those of one ``subject``, by its
    ``kubeledger.subject.*`` fields, when given), in sequence order, a page at a time."""
    query = {"bool": {"filter": [
        {"term": {"orchestrator.cluster.name": cluster}},
        {"exists": {"field": "kubeledger.chain.sequence"}},
        *({"term": {f"kubeledger.subject.{field}": value}}
          for field, value in (subject or {}).items()),
    ]}}
    async for hit in hits(client, prefix, query, ORDER):
        yield read(hit["_id"], hit["_source"])


async def hits(client: AsyncElasticsearch, prefix: str, query: Mapping[str, Any],
               order: list[dict[str, str]]) -> AsyncIterator[Mapping[str, Any]]:
    """Every hit of ``query`` in the ``<prefix>-*`` indices, in ``order`` (which must end
    in a unique field), a page at a time."""
    after: list[Any] | None = None
    while True:
        page = await client.search(index=f"{prefix}-*", query=query, sort=order,
                                   size=PAGE_SIZE, allow_no_indices=True, search_after=after)
        found = page["hits"]["hits"]
        for hit in found:
            yield hit
        if len(found) < PAGE_SIZE:
            return
        after = found[-1]["sort"]


def read(name: str, source: Mapping[str, Any]) -> Document:
    """The record a document carries, checked against the document's own fields."""
    link = source.get("kubeledger", {}).get("chain", {})
    sequence = link.get("sequence")
    content = link.get("content")
    if content is None:
        return Document(name, sequence, None, "carries no record content (delivered before "
                                              "documents carried it): cannot be checked")
    try:
        spec = json.loads(content)
        rebuilt = ecs.to_document(name, RecordSpec.model_validate(spec),
                                  ecs_version=source.get("ecs", {}).get("version",
                                                                        ecs.ECS_VERSION))
    except (ValueError, ValidationError):
        return Document(name, sequence, None, "its content is not a record (altered)")
    if rebuilt != source:
        return Document(name, sequence, spec, "its fields differ from the record it carries "
                                              f"({', '.join(differing(rebuilt, source))}: "
                                              "altered in Elasticsearch)")
    return Document(name, sequence, spec)


def differing(expected: Mapping[str, Any], found: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths where two documents differ."""
    paths: list[str] = []
    for key in sorted(set(expected) | set(found)):
        mine, theirs = expected.get(key), found.get(key)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            paths += differing(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            paths.append(f"{prefix}{key}")
    return paths
