"""The operator's own Kubernetes API calls: AuditRecords, the CRD, and listing watched objects.

kopf does the watching; everything the operator writes goes through here, with the
official client. Its calls block, so each runs in a worker thread (``asyncio.to_thread``):
a blocking call inside an async handler would stall every other handler. Objects travel
as plain JSON-like dicts, the way kopf hands them to handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubeledger import model

PAGE_SIZE = 500
T = TypeVar("T")
CRD_GROUP, CRD_VERSION, CRD_PLURAL = "apiextensions.k8s.io", "v1", "customresourcedefinitions"
# Set on the CRD we install: the digest of our manifest, so an unchanged CRD is not rewritten.
CRD_DIGEST_ANNOTATION = "kubeledger.io/manifest-sha256"
RETRYABLE_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


class ApiUnavailableError(RuntimeError):
    """A call failed in a way that may pass (timeouts, 5xx, 429): worth retrying."""


@dataclass(frozen=True)
class Resource:
    """A Kubernetes resource addressed the way the dynamic API needs it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def load_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
    # The client's config loaders carry no type annotations.
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubeApi:
    """Blocking calls, each run in a thread; API errors translated at this edge."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data, or None when it does not exist."""
        try:
            found = await asyncio.to_thread(self._core.read_namespaced_config_map, name,
                                            namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _retryable(error) from error
        return dict(found.data or {})

    async def write_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Creates the ConfigMap or replaces its data."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=dict(data))
        try:
            await asyncio.to_thread(self._core.replace_namespaced_config_map, name, namespace,
                                    body)
        except ApiException as error:
            if error.status != 404:
                raise _retryable(error) from error
            try:
                await asyncio.to_thread(self._core.create_namespaced_config_map, namespace,
                                        body)
            except ApiException as create_error:
                raise _retryable(create_error) from create_error

    async def create_record(self, name: str, labels: Mapping[str, str],
                            spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """Creates an AuditRecord; if the name is taken, returns the existing record's spec."""
        body = {
            "apiVersion": model.API_VERSION, "kind": model.KIND,
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": dict(spec),
        }
        try:
            await _call(self._custom.create_cluster_custom_object,
                        model.GROUP, model.VERSION, model.PLURAL, body)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = await self.get(model.GROUP, model.VERSION, model.PLURAL, name)
            return cast(dict[str, Any], existing["spec"]) if existing else None
        return None

    async def get(self, group: str, version: str, plural: str,
                  name: str) -> dict[str, Any] | None:
        """A cluster-scoped object, or None when it does not exist."""
        try:
            return await _call(self._custom.get_cluster_custom_object,
                               group, version, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def get_namespaced(self, group: str, version: str, plural: str, namespace: str,
                             name: str) -> dict[str, Any] | None:
        """A namespaced object, or None when it (or its resource) does not exist."""
        try:
            return await _call(self._custom.get_namespaced_custom_object,
                               group, version, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def delete_record(self, name: str) -> None:
        try:
            await _call(self._custom.delete_cluster_custom_object,
                        model.GROUP, model.VERSION, model.PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise

    async def list_all(self, resource: Resource) -> list[dict[str, Any]] | None:
        """Every object of ``resource`` in all namespaces, fetched in pages.

        None when the resource does not exist in this cluster (an absent CRD).
        """
        return await self._collect(resource, lambda item: item)

    async def list_uids(self, resource: Resource) -> set[str] | None:
        """The uids of every object of ``resource``; None when the resource does not exist.

        Only one page of objects is held at a time: listing every Deployment of a large
        cluster must not hold every Deployment.
        """
        uids = await self._collect(resource, lambda item: str(item["metadata"]["uid"]))
        return None if uids is None else set(uids)

    async def _collect(self, resource: Resource,
                       keep: Callable[[dict[str, Any]], T]) -> list[T] | None:
        items: list[T] = []
        token: str | None = None
        while True:
            paging = {"limit": PAGE_SIZE, **({"_continue": token} if token else {})}
            try:
                page = await _call(self._custom.list_cluster_custom_object, resource.group,
                                   resource.version, resource.plural, **paging)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            items.extend(keep(item) for item in page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items

    async def apply_crd(self, manifest: Mapping[str, Any]) -> str:
        """Creates or replaces a CRD; returns "created", "updated" or "unchanged"."""
        name = manifest["metadata"]["name"]
        current = await self.get(CRD_GROUP, CRD_VERSION, CRD_PLURAL, name)
        if current is None:
            await _call(self._custom.create_cluster_custom_object,
                        CRD_GROUP, CRD_VERSION, CRD_PLURAL, dict(manifest))
            return "created"
        digest = manifest["metadata"]["annotations"][CRD_DIGEST_ANNOTATION]
        if current["metadata"].get("annotations", {}).get(CRD_DIGEST_ANNOTATION) == digest:
            return "unchanged"
        metadata = {**manifest["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"]}
        await _call(self._custom.replace_cluster_custom_object,
                    CRD_GROUP, CRD_VERSION, CRD_PLURAL, name, {**manifest, "metadata": metadata})
        return "updated"

    async def crd_established(self, name: str) -> bool:
        crd = await self.get(CRD_GROUP, CRD_VERSION, CRD_PLURAL, name)
        # A CRD created a moment ago has ``status.conditions: null``.
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def _call(function: Callable[..., object], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Runs one blocking client call in a thread; transient failures become retryable."""
    try:
        result = await asyncio.to_thread(function, *args, **kwargs)
    except ApiException as error:
        raise _retryable(error) from error
    return cast(dict[str, Any], result)


def _retryable(error: ApiException) -> Exception:
    """A transient failure as ApiUnavailableError; anything else unchanged."""
    if error.status in RETRYABLE_STATUSES:
        return ApiUnavailableError(
            f"Kubernetes API unavailable ({error.status}: {error.reason})")
    return error
