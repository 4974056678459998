"""The Kubernetes edge: ``kube.api.Kubernetes`` implemented with the official client.

The only module that imports the client library. Its calls block, so each runs in a
worker thread of the client's own pool: a blocking call inside an async handler would
stall every other handler. The pool and the connection pool are sized for
``CONCURRENT_CALLS``; asyncio's default executor (``os.cpu_count() + 4`` threads, six on
two cores) would cap the ledger's write window far below its size. Every call carries a
timeout (``api_timeout_seconds``): a thread cannot be cancelled, and one connection that
never answers must not hold up recording for good. The client's own retries are off:
``backoff.retrying`` is the one retry loop, and it sees each failure as one of the errors
of ``kube.errors``. A watch (``watch``) reads its stream in a daemon thread of its own
instead: it blocks for minutes, and a stopping process must not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import urllib3.exceptions
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kubeledger.core.kinds import Resource
from kubeledger.kube import errors
from kubeledger.kube.api import Object, Page

PAGE_SIZE = 500
# Who the apiserver names as the owner of what the operator writes (its managedFields);
# without it, the client's user agent up to its first "/": "OpenAPI-Generator".
FIELD_MANAGER = "kubeledger"
# A listing of the objects' metadata only (their ``PartialObjectMetadata``), in JSON.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# How long the apiserver keeps one watch request open before closing it: the caller then
# watches again from where it was.
WATCH_SECONDS = 300
# The apiserver sends a watch that asked for them a bookmark about once a minute: a watch
# silent for longer has lost its connection, and is opened again.
WATCH_SILENCE_SECONDS = 90
# Calls in flight at once: the ledger's write window (16 by default), the shippers'
# position, the Lease, the peer and deletion listings, with room to spare.
CONCURRENT_CALLS = 32
T = TypeVar("T")
UNAVAILABLE_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


def load_client(*, concurrent_calls: int = CONCURRENT_CALLS) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
    # The client's config loaders carry no type annotations.
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        _load_kube_config(None, None)
    return api_client(client.Configuration.get_default_copy(),
                      concurrent_calls=concurrent_calls)


def kubeconfig_client(kubeconfig: str | None = None,
                      context: str | None = None) -> tuple[client.ApiClient, str]:
    """A client the way kubectl finds its cluster, and the context's namespace.

    ``kubeconfig`` (else ``KUBECONFIG``, else ``~/.kube/config``) and its ``context``
    (else the current one); with neither file nor flag, in a pod, the service account.
    NotConfigured when no cluster can be found that way.
    """
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return api_client(client.Configuration.get_default_copy()), "default"
        except config.ConfigException:
            pass
    _load_kube_config(kubeconfig, context)
    contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=kubeconfig)
    chosen = next((each for each in contexts if each["name"] == context), current)
    return (api_client(client.Configuration.get_default_copy()),
            str(chosen.get("context", {}).get("namespace") or "default"))


def _load_kube_config(kubeconfig: str | None, context: str | None) -> None:
    """The client's default configuration from a kubeconfig; NotConfigured when unusable."""
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as error:
        raise errors.NotConfigured(
            f"no cluster to talk to ({error}): set KUBECONFIG or pass --kubeconfig"
        ) from None


def api_client(configuration: client.Configuration, *,
               concurrent_calls: int = CONCURRENT_CALLS) -> client.ApiClient:
    """A client without urllib3's retries (a failure surfaces at once, to our backoff),
    with a connection for each of ``concurrent_calls`` (past its size, urllib3 opens and
    drops extra ones)."""
    configuration.retries = False
    configuration.connection_pool_maxsize = concurrent_calls
    return client.ApiClient(configuration)


class KubeClient:
    """Blocking calls, each run in a thread with a timeout; errors translated here."""

    def __init__(self, api_client: client.ApiClient, *, timeout_seconds: float) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = timeout_seconds
        self._pool = api_client.rest_client.pool_manager
        # A thread for each connection of the client's pool.
        self._threads = ThreadPoolExecutor(api_client.configuration.connection_pool_maxsize,
                                           thread_name_prefix="kube")

    async def get(self, resource: Resource, name: str, *,
                  namespace: str | None = None) -> Object:
        if namespace is None:
            return await self._call(self._custom.get_cluster_custom_object,
                                    resource.group, resource.version, resource.plural, name)
        return await self._call(self._custom.get_namespaced_custom_object, resource.group,
                                resource.version, namespace, resource.plural, name)

    async def list(self, resource: Resource, keep: Callable[[Object], T], *,
                   namespace: str | None = None, label_selector: str | None = None) -> list[T]:
        return [keep(item) async for page in self.pages(
                    resource, namespace=namespace, label_selector=label_selector)
                for item in page]

    async def pages(self, resource: Resource, *, namespace: str | None = None,
                    label_selector: str | None = None,
                    metadata_only: bool = False) -> AsyncIterator[Page]:
        if namespace is None:
            list_page: Callable[..., object] = self._custom.list_cluster_custom_object
            scope: tuple[str, ...] = ()
        else:
            list_page, scope = self._custom.list_namespaced_custom_object, (namespace,)
        selected: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        if resource.field_selector:  # only the one object audited of its kind
            selected["field_selector"] = resource.field_selector
        if metadata_only:
            selected["_headers"] = {"Accept": METADATA_ONLY}

        def fetch(token: str | None) -> asyncio.Future[Object]:
            paging = {"limit": PAGE_SIZE, **({"_continue": token} if token else {})}
            return asyncio.ensure_future(self._call(
                list_page, resource.group, resource.version, *scope, resource.plural,
                **selected, **paging))

        coming = fetch(None)
        try:
            while True:
                page = await coming
                token = page.get("metadata", {}).get("continue")
                if token:
                    # The apiserver reads the next page while the caller folds this one.
                    coming = fetch(token)
                # A metadata-only listing of nothing has "items": null.
                yield page.get("items") or []
                if not token:
                    return
        finally:
            _discard(coming)

    async def collection_version(self, resource: Resource) -> str:
        listed = await self._call(self._custom.list_cluster_custom_object, resource.group,
                                  resource.version, resource.plural, limit=1)
        return str(listed["metadata"]["resourceVersion"])

    async def watch(self, resource: Resource, *,
                    resource_version: str) -> AsyncIterator[Object]:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[tuple[Object | None, BaseException | None]] = asyncio.Queue()
        # The client's watch helper carries no type annotations.
        watcher = watch.Watch()  # type: ignore[no-untyped-call]

        def hand_over(event: Object | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(arrived.put_nowait, (event, error))

        def read() -> None:
            try:
                # With a timeout, the library neither retries nor hides a 410: it raises.
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                        self._custom.list_cluster_custom_object, resource.group,
                        resource.version, resource.plural, resource_version=resource_version,
                        allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS,
                        _request_timeout=(self._timeout, WATCH_SILENCE_SECONDS)):
                    hand_over({"type": event["type"], "object": event["object"]}, None)
            except Exception as error:  # handed to the caller, translated there
                hand_over(None, error)
            else:
                hand_over(None, None)

        threading.Thread(target=read, name=f"watch {resource.plural}", daemon=True).start()
        try:
            while True:
                event, error = await arrived.get()
                if error is not None:
                    translated = _translated(error)
                    if translated is error:
                        raise error
                    raise translated from error
                if event is None:
                    return
                yield event
        finally:
            # The thread ends at its next event, or when the request ends.
            watcher.stop()  # type: ignore[no-untyped-call]

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        if resource.namespaced:
            return await self._write(self._custom.create_namespaced_custom_object,
                                     resource.group, resource.version,
                                     body["metadata"]["namespace"], resource.plural, dict(body))
        return await self._write(self._custom.create_cluster_custom_object, resource.group,
                                 resource.version, resource.plural, dict(body))

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        metadata = body["metadata"]
        if resource.namespaced:
            return await self._write(self._custom.replace_namespaced_custom_object,
                                     resource.group, resource.version, metadata["namespace"],
                                     resource.plural, metadata["name"], dict(body))
        return await self._write(self._custom.replace_cluster_custom_object, resource.group,
                                 resource.version, resource.plural, metadata["name"],
                                 dict(body))

    async def delete(self, resource: Resource, name: str) -> None:
        await self._call(self._custom.delete_cluster_custom_object, resource.group,
                         resource.version, resource.plural, name)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        found = await self._run(self._core.read_namespaced_config_map, name, namespace)
        return dict(found.data or {})

    async def write_config_map(self, namespace: str, name: str,
                               data: Mapping[str, str]) -> None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=dict(data))
        try:
            await self._run(self._core.replace_namespaced_config_map, name, namespace, body,
                            field_manager=FIELD_MANAGER)
        except errors.NotFound:
            await self._run(self._core.create_namespaced_config_map, namespace, body,
                            field_manager=FIELD_MANAGER)

    async def _call(self, function: Callable[..., object], *args: Any,
                    **kwargs: Any) -> Object:
        return cast(Object, await self._run(function, *args, **kwargs))

    async def _write(self, function: Callable[..., object], *args: Any) -> Object:
        """A custom object's create or replace, attributed to ``FIELD_MANAGER``."""
        return await self._call(function, *args, field_manager=FIELD_MANAGER)

    async def _run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs one blocking client call in a thread, bounded by the timeout."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._threads, functools.partial(function, *args,
                                                 _request_timeout=self._timeout, **kwargs))
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            if isinstance(error, urllib3.exceptions.ReadTimeoutError):
                # The connections kept alive beside the one that hung may be as dead (a
                # NAT or a proxy that lost them all): the next calls open fresh ones.
                self._pool.clear()
            raise _translated(error) from error


def _discard(page: asyncio.Future[Object]) -> None:
    """A page read ahead that nobody will take (the caller stopped early)."""
    page.cancel()
    if page.done() and not page.cancelled():
        page.exception()  # taken, so that its failure is not reported as never retrieved


def _translated(error: BaseException) -> BaseException:
    """Our error for one of the client library's; anything else as it is (a bug)."""
    if isinstance(error, ApiException):
        return _from_status(error)
    if isinstance(error, urllib3.exceptions.HTTPError):
        return _from_transport(error)
    if isinstance(error, OSError):
        return errors.Unavailable(f"Kubernetes API unreachable: {error}")
    return error


def _from_status(error: ApiException) -> errors.KubeError:
    status = int(error.status or 0)
    message = f"{status} {error.reason}"
    if status == 404:
        return errors.NotFound(message, status=status)
    if status == 409:
        return errors.Conflict(message, status=status)
    if status == 410:
        return errors.Gone(message, status=status)
    if status in (401, 403):
        # The body says which verb on which resource was refused: what an admin must grant.
        return errors.Refused(message, status=status, detail=_status_message(error.body))
    if status in UNAVAILABLE_STATUSES:
        return errors.Unavailable(f"Kubernetes API unavailable ({message})", status=status)
    return errors.KubeError(message, status=status, detail=_status_message(error.body))


def _status_message(body: object) -> str:
    """The one-line ``message`` of a Kubernetes Status body, else the body as it came."""
    try:
        decoded = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return str(decoded["message"])
    return str(body or "")


def _from_transport(error: urllib3.exceptions.HTTPError) -> errors.KubeError:
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    # urllib3 derives a refused connection from its connect timeout: ask for it first.
    if isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
            cause, urllib3.exceptions.NewConnectionError):
        return errors.TimedOut(f"Kubernetes API did not answer in time: {cause}")
    return errors.Unavailable(f"Kubernetes API unreachable: {cause}")
