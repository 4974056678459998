"""An in-memory Kubernetes for unit tests: ``kube.api.Kubernetes`` over a dict.

It keeps objects by (resource, namespace, name), gives each write a resourceVersion,
answers with the errors of ``kubeledger.kube.errors`` as the apiserver would (404, 409,
410 for a watch from a version no longer kept), keeps the watch history of every write
and deletion, and counts every call. ``fail`` queues failures for the next calls of one method, so a
test can stage an outage, a refusal or a lost answer (the write happens, then the call
fails: a timeout after the apiserver acted).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from kubeledger.core import kinds
from kubeledger.core.kinds import Resource
from kubeledger.kube import errors
from kubeledger.kube.api import Page

T = TypeVar("T")
Object = dict[str, Any]
Key = tuple[str, str, str, str]  # (group, plural, namespace, name)


class FakeKube:
    """What the operator sees of a cluster, without one."""

    def __init__(self) -> None:
        self.objects: dict[Key, Object] = {}
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: Counter[str] = Counter()
        # method -> failures to raise on its next calls; ``after=True`` acts first.
        self._failures: defaultdict[str, deque[tuple[errors.KubeError, bool]]] = (
            defaultdict(deque))
        self._versions = itertools.count(1000)
        # Awaited after each listing, before it returns: what happens while it travels.
        self.after_list: list[Callable[[], Awaitable[None]]] = []
        # Objects per page of ``pages``, small so that tests see several pages.
        self.page_size = 3
        # The watch history: (resourceVersion, group and plural, event), oldest first, and
        # the oldest version still kept (``compact``).
        self.history: list[tuple[int, tuple[str, str], Object]] = []
        self._kept_from = 0
        self._changed = asyncio.Event()
        self._version = 999

    def fail(self, method: str, error: errors.KubeError, *, times: int = 1,
             after: bool = False) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (having acted, if ``after``)."""
        self._failures[method].extend([(error, after)] * times)

    def add(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        """Puts an object into the cluster directly (as someone else would)."""
        stored = copy.deepcopy(dict(body))
        key = _key(resource, stored["metadata"])
        stored["metadata"]["resourceVersion"] = self._next_version()
        self._happened("MODIFIED" if key in self.objects else "ADDED", resource, stored)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def remove(self, resource: Resource, name: str) -> None:
        """Deletes a cluster-scoped object directly (as someone else would)."""
        gone = self.objects.pop((resource.group, resource.plural, "", name))
        gone["metadata"]["resourceVersion"] = self._next_version()
        self._happened("DELETED", resource, gone)

    def compact(self) -> None:
        """Forgets the watch history so far, as etcd's compaction does: a watch from an
        earlier version is Gone."""
        self._kept_from = self._version + 1
        self.history.clear()

    def of(self, resource: Resource) -> list[Object]:
        """The stored objects of ``resource``, in order of creation."""
        return [copy.deepcopy(body) for key, body in self.objects.items()
                if key[:2] == (resource.group, resource.plural)]

    def records(self) -> dict[str, Object]:
        """AuditRecords by name: their specs."""
        return {body["metadata"]["name"]: body["spec"] for body in self.of(kinds.RECORDS)}

    # The protocol.

    async def get(self, resource: Resource, name: str, *,
                  namespace: str | None = None) -> Object:
        with self._call("get"):
            found = self.objects.get((resource.group, resource.plural, namespace or "", name))
            if found is None:
                raise errors.NotFound(f"404 {resource.plural} {name} not found", status=404)
            return copy.deepcopy(found)

    async def list(self, resource: Resource, keep: Callable[[Object], T], *,
                   namespace: str | None = None, label_selector: str | None = None) -> list[T]:
        return [keep(body) async for page in self.pages(
                    resource, namespace=namespace, label_selector=label_selector)
                for body in page]

    async def pages(self, resource: Resource, *, namespace: str | None = None,
                    label_selector: str | None = None,
                    metadata_only: bool = False) -> AsyncIterator[Page]:
        # Equality selectors (``a=b,c=d``) are all the operator uses.
        wanted = dict(term.split("=", 1) for term in (label_selector or "").split(",") if term)
        with self._call("list"):
            listed = [body for body in self.of(resource)
                      if namespace in (None, body["metadata"].get("namespace"))
                      and resource.audits(body["metadata"]["name"])  # its field selector
                      and wanted.items() <= (body["metadata"].get("labels") or {}).items()]
        if metadata_only:
            listed = [{"metadata": body["metadata"]} for body in listed]
        for start in range(0, len(listed), self.page_size):
            yield listed[start:start + self.page_size]
        for happening in self.after_list:
            await happening()

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        with self._call("create"):
            if _key(resource, body["metadata"]) in self.objects:
                raise errors.Conflict(f"409 {body['metadata']['name']} exists", status=409)
            # The apiserver gives every new object its uid.
            uid = body["metadata"].get("uid") or f"uid-{next(self._versions)}"
            return self.add(resource, {**body, "metadata": {**body["metadata"], "uid": uid}})

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        with self._call("replace"):
            key = _key(resource, body["metadata"])
            if key not in self.objects:
                raise errors.NotFound("404 not found", status=404)
            current = self.objects[key]["metadata"]["resourceVersion"]
            if body["metadata"].get("resourceVersion", current) != current:
                raise errors.Conflict("409 the object has been modified", status=409)
            return self.add(resource, body)

    async def delete(self, resource: Resource, name: str) -> None:
        with self._call("delete"):
            if (resource.group, resource.plural, "", name) not in self.objects:
                raise errors.NotFound(f"404 {name} not found", status=404)
            self.remove(resource, name)

    async def collection_version(self, resource: Resource) -> str:
        with self._call("collection_version"):
            return str(self._version)

    async def watch(self, resource: Resource, *,
                    resource_version: str) -> AsyncIterator[Object]:
        """Every change after ``resource_version``, then waits for more (never ends)."""
        with self._call("watch"):
            if int(resource_version) < self._kept_from - 1:
                raise errors.Gone("410 too old resource version", status=410)
        seen = int(resource_version)
        while True:
            coming = [(version, event) for version, kind, event in self.history
                      if version > seen and kind == (resource.group, resource.plural)]
            for version, event in coming:
                seen = version
                yield copy.deepcopy(event)
            if not coming:
                self._changed.clear()
                await self._changed.wait()

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        with self._call("read_config_map"):
            if (namespace, name) not in self.config_maps:
                raise errors.NotFound(f"404 configmap {name} not found", status=404)
            return dict(self.config_maps[(namespace, name)])

    async def write_config_map(self, namespace: str, name: str,
                               data: Mapping[str, str]) -> None:
        with self._call("write_config_map"):
            self.config_maps[(namespace, name)] = dict(data)

    def _next_version(self) -> str:
        self._version = next(self._versions)
        return str(self._version)

    def _happened(self, event_type: str, resource: Resource, body: Object) -> None:
        event = {"type": event_type, "object": copy.deepcopy(body)}
        self.history.append((self._version, (resource.group, resource.plural), event))
        self._changed.set()

    def _call(self, method: str) -> _Call:
        self.calls[method] += 1
        queued = self._failures[method]
        return _Call(*queued.popleft()) if queued else _Call(None, after=False)


class _Call:
    """Raises a staged failure before the call acts, or after it (a lost answer)."""

    def __init__(self, error: errors.KubeError | None, after: bool) -> None:
        self._error = error
        self._after = after

    def __enter__(self) -> None:
        if self._error is not None and not self._after:
            raise self._error

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._error is not None and self._after and kind is None:
            raise self._error


def _key(resource: Resource, metadata: Mapping[str, Any]) -> Key:
    return (resource.group, resource.plural, metadata.get("namespace") or "", metadata["name"])
