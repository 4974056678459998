"""What the operator asks of Kubernetes: the one seam between its services and the cluster.

``Kubernetes`` is the protocol; ``kube.client.KubeClient`` implements it with the official
client, and the unit tests' in-memory fake (``tests/unit/fake_kube.py``) implements it
for fast tests of the ledger, the shipper, retention, catch-up and attribution. Objects
travel as plain JSON-like dicts, the way kopf hands them to handlers. Every method raises
the errors of ``kube.errors`` and nothing else from the client library.

The few compositions every caller would otherwise repeat (a listing where an absent
resource is no error) are functions here, over the protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, TypeVar

from kubeledger.core.kinds import Resource
from kubeledger.kube import errors

T = TypeVar("T")
Object = dict[str, Any]
# One chunk of a listing (named: inside the protocol, ``list`` is its method).
Page = list[Object]


class Kubernetes(Protocol):
    """The apiserver calls the operator makes; kopf does the watching of audited kinds."""

    async def get(self, resource: Resource, name: str, *,
                  namespace: str | None = None) -> Object:
        """One object; NotFound when it (or its resource) does not exist."""
        ...

    async def list(self, resource: Resource, keep: Callable[[Object], T], *,
                   namespace: str | None = None, label_selector: str | None = None) -> list[T]:
        """``keep(item)`` for every object of ``resource`` (in all namespaces, or one).

        Only what ``keep`` returns is held: listing every Deployment of a large cluster
        must not hold every Deployment. NotFound when the resource does not exist.
        """
        ...

    def pages(self, resource: Resource, *, namespace: str | None = None,
              label_selector: str | None = None,
              metadata_only: bool = False) -> AsyncIterator[Page]:
        """The objects of ``resource``, one page (a chunk of the listing) at a time.

        For readers that fold what they read: they hold one page, however many objects
        there are (50,000 records at start-up). ``metadata_only``: each object's
        ``metadata`` alone, as the apiserver sends it (``PartialObjectMetadata``).
        NotFound when the resource does not exist.
        """
        ...

    async def collection_version(self, resource: Resource) -> str:
        """The resourceVersion of a listing of ``resource`` now (a list of one object):
        where a watch that must not replay what exists starts."""
        ...

    def watch(self, resource: Resource, *, resource_version: str) -> AsyncIterator[Object]:
        """The changes of a cluster-scoped ``resource`` after ``resource_version``, as
        ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}``.

        Ends when the apiserver closes the watch (it does after a while): watch again from
        the last object's resourceVersion. Gone when that version is no longer kept.
        """
        ...

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        """Creates an object (a namespaced one in its ``metadata.namespace``); Conflict
        when the name is taken."""
        ...

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        """Replaces an object; Conflict when its ``metadata.resourceVersion`` is stale."""
        ...

    async def delete(self, resource: Resource, name: str) -> None:
        """Deletes a cluster-scoped object; NotFound when it is gone already."""
        ...

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's data; NotFound when it does not exist."""
        ...

    async def write_config_map(self, namespace: str, name: str,
                               data: Mapping[str, str]) -> None:
        """Creates the ConfigMap or replaces its data."""
        ...


async def list_all(api: Kubernetes, resource: Resource) -> list[Object] | None:
    """Every object of ``resource``; None when the resource does not exist (an absent CRD)."""
    try:
        return await api.list(resource, lambda item: item)
    except errors.NotFound:
        return None


async def list_uids(api: Kubernetes, resource: Resource) -> set[str] | None:
    """The uids of every object of ``resource``; None when the resource does not exist.

    Listed as metadata only: whole objects were decoded for their uids alone, at every
    start (beside kopf's own listing) and every periodic deletion check.
    """
    try:
        return {str(item["metadata"]["uid"])
                async for page in api.pages(resource, metadata_only=True) for item in page}
    except errors.NotFound:
        return None
