"""The kopf handlers: of a kind audited for one object (the records' CRD), only that one
is taken; an event given while the writer still starts waits for its start.

kopf cannot select by name, so the handler of CustomResourceDefinitions is given every
CRD of the cluster and must pass on all but the records' own. kopf lists while the
records are still read, so its handlers are given events before the start is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kubeledger import watching
from kubeledger.core import kinds


class Runtime:
    """A runtime's stand-in that notes what the handler hands on (it is its recorder too)."""

    def __init__(self) -> None:
        self.recorder = self
        self.counted: list[str] = []
        self.taken: list[str] = []

    def handed(self, resource: kinds.Resource, event_type: str | None, uid: str) -> None:
        self.counted.append(uid)

    async def take(self, resource: kinds.Resource, event_type: str | None,
                   body: dict[str, Any]) -> None:
        self.taken.append(body["metadata"]["name"])


def _event(name: str) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": {"metadata": {"name": name, "uid": name}}}


async def test_of_every_crd_only_the_records_crd_is_taken() -> None:
    runtime = Runtime()
    started = asyncio.get_running_loop().create_future()
    started.set_result(runtime)
    handler = watching._auditing(kinds.RECORDS_CRD)
    for name in ("rollouts.argoproj.io", kinds.RECORDS_CRD_NAME):
        await handler(event=_event(name), memo=kopf.Memo(starting=started))

    assert runtime.taken == runtime.counted == [kinds.RECORDS_CRD_NAME]


async def test_an_event_given_during_the_start_is_taken_once_the_start_is_over() -> None:
    runtime = Runtime()
    starting = asyncio.get_running_loop().create_future()
    handler = watching._auditing(kinds.DEPLOYMENTS)
    handling = asyncio.create_task(handler(event=_event("web"), memo=kopf.Memo(
        starting=starting)))
    await asyncio.sleep(0)
    assert not handling.done() and runtime.taken == []

    starting.set_result(runtime)
    await handling

    assert runtime.taken == runtime.counted == ["web"]


async def test_an_event_given_during_a_start_that_fails_ends_without_an_error() -> None:
    # An error would have kopf retry the handler; the operator is stopping instead, and
    # the next writer's listing gives the object again.
    starting = asyncio.get_running_loop().create_future()
    handler = watching._auditing(kinds.DEPLOYMENTS)
    handling = asyncio.create_task(handler(event=_event("web"), memo=kopf.Memo(
        starting=starting)))
    await asyncio.sleep(0)
    starting.set_exception(RuntimeError("the records could not be read"))

    await asyncio.wait([handling], timeout=5)

    assert handling.done() and handling.exception() is None
