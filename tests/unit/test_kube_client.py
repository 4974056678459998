"""The Kubernetes edge: every call ends within the timeout, and errors arrive as our own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeledger.core import kinds
from kubeledger.kube import errors
from kubeledger.kube.client import KubeClient, _from_status, api_client

TIMEOUT_SECONDS = 0.3


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def kube_at(port: int) -> KubeClient:
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    return KubeClient(api_client(configuration), timeout_seconds=TIMEOUT_SECONDS)


@pytest.mark.parametrize("call", ["get", "list", "create", "read_config_map"])
async def test_a_server_that_never_answers_times_out_instead_of_hanging(call: str) -> None:
    async with silent_server() as port:
        kube = kube_at(port)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: kube.get(kinds.RECORDS, "record-1"),
            "list": lambda: kube.list(kinds.RECORDS, lambda item: item),
            "create": lambda: kube.create(kinds.RECORDS, {"metadata": {"name": "r"}}),
            "read_config_map": lambda: kube.read_config_map("kubeledger", "positions"),
        }
        started = time.monotonic()
        with pytest.raises(errors.TimedOut):
            # The guard only keeps a regression from hanging the suite.
            await asyncio.wait_for(calls[call](), timeout=10)
        # One attempt: the client's own retries are off, ours decide.
        assert time.monotonic() - started < 4 * TIMEOUT_SECONDS


async def test_a_closed_port_is_unavailable() -> None:
    async with silent_server() as port:
        pass  # now closed
    with pytest.raises(errors.Unavailable) as raised:
        await kube_at(port).get(kinds.RECORDS, "record-1")
    assert not isinstance(raised.value, errors.TimedOut)


@pytest.mark.parametrize(("status", "kind"), [
    (404, errors.NotFound), (409, errors.Conflict), (401, errors.Refused),
    (403, errors.Refused), (429, errors.Unavailable), (503, errors.Unavailable),
    (422, errors.KubeError),
])
def test_statuses_become_errors_by_meaning(status: int, kind: type[errors.KubeError]) -> None:
    error = _from_status(ApiException(status=status, reason="Reason"))

    assert type(error) is kind
    assert error.status == status


@contextlib.asynccontextmanager
async def paged_server(pages: list[list[str]]) -> AsyncIterator[tuple[int, list[str]]]:
    """A listing on 127.0.0.1 served in ``pages`` (item names), chained by continue
    tokens; yields the port and the log of what was asked, in order."""
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.readline():
            while (await reader.readline()).strip():
                pass  # the headers
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.split()[1].decode()).query)
            index = int(query.get("continue", ["0"])[0])
            selected = "".join(f" where {each}" for each in query.get("fieldSelector", []))
            asked.append(f"page {index}{selected}")
            more = {"continue": str(index + 1)} if index + 1 < len(pages) else {}
            body = json.dumps({"items": [{"metadata": {"name": name}} for name in pages[index]],
                               "metadata": more}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async with serving(answer) as port:
        yield port, asked


@contextlib.asynccontextmanager
async def serving(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                   Awaitable[None]]) -> AsyncIterator[int]:
    """Serves connections on a port of 127.0.0.1 with ``answer``; yields the port."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_listing_arrives_page_by_page_and_the_next_page_is_read_ahead() -> None:
    async with paged_server([["a", "b"], ["c"], ["d"]]) as (port, asked):
        kube = kube_at(port)
        seen: list[list[str]] = []
        async for page in kube.pages(kinds.RECORDS):
            # The next page is asked for while this one is still being taken.
            await asyncio.sleep(0.05)
            asked.append(f"took {len(seen)}")
            seen.append([item["metadata"]["name"] for item in page])

    assert seen == [["a", "b"], ["c"], ["d"]]
    assert asked == ["page 0", "page 1", "took 0", "page 2", "took 1", "took 2"]


async def test_a_kind_audited_for_one_object_is_listed_for_that_object_only() -> None:
    async with paged_server([["auditrecords.kubeledger.io"]]) as (port, asked):
        listed = await kube_at(port).list(kinds.RECORDS_CRD, lambda item: item)

    assert len(listed) == 1
    assert asked == ["page 0 where metadata.name=auditrecords.kubeledger.io"]


@contextlib.asynccontextmanager
async def watch_server(lines: list[dict[str, Any]]) -> AsyncIterator[tuple[int, list[str]]]:
    """A watch on 127.0.0.1 that sends ``lines`` (watch events) and closes; yields the port
    and the queries it was asked."""
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()).strip():
            pass  # the headers
        asked.append(urllib.parse.urlsplit(request.split()[1].decode()).query)
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async with serving(answer) as port:
        yield port, asked


async def test_a_watch_delivers_events_from_its_version_until_the_server_ends_it() -> None:
    deleted = {"type": "DELETED", "object": {"metadata": {"name": "r-1",
                                                          "resourceVersion": "12"}}}
    async with watch_server([deleted]) as (port, asked):
        events = [event async for event in kube_at(port).watch(kinds.RECORDS,
                                                               resource_version="11")]

    assert events == [deleted]
    query = urllib.parse.parse_qs(asked[0])
    assert (query["watch"], query["resourceVersion"]) == (["true"], ["11"])


async def test_a_watch_from_a_version_no_longer_kept_is_gone() -> None:
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                           "message": "too old resource version: 11 (40)"}}
    async with watch_server([expired]) as (port, _):
        with pytest.raises(errors.Gone):
            async for _ in kube_at(port).watch(kinds.RECORDS, resource_version="11"):
                pass
