"""The kopf handlers: of a kind audited for one object (the records' CRD), only that one
is taken; a handler puts its event into the intake and returns, even while the writer
still starts.

kopf cannot select by name, so the handler of CustomResourceDefinitions is given every
CRD of the cluster and must pass on all but the records' own. kopf lists while the
records are still read, so its handlers are given events before the start is over: kopf
would hold every listed object while a handler waited. kopf is given memories that keep
nothing between an object's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from kubeledger import watching
from kubeledger.core import kinds
from kubeledger.recording.intake import Intake


def _event(name: str) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": {"metadata": {"name": name, "uid": name}}}


async def _taken(intake: Intake) -> list[str]:
    """The names of the objects whose events the intake hands on."""
    taken: list[str] = []

    async def take(resource: kinds.Resource, event_type: str | None,
                   body: Mapping[str, Any], *, relisted: bool) -> None:
        taken.append(body["metadata"]["name"])

    running = asyncio.create_task(intake.run(take, takers=1))
    while len(intake):
        await asyncio.sleep(0)
    running.cancel()
    await asyncio.wait([running])
    return taken


async def test_of_every_crd_only_the_records_crd_is_taken() -> None:
    intake = Intake()
    handler = watching._auditing(kinds.RECORDS_CRD)
    for name in ("rollouts.argoproj.io", kinds.RECORDS_CRD_NAME):
        await handler(event=_event(name), memo=kopf.Memo(intake=intake))

    assert await _taken(intake) == [kinds.RECORDS_CRD_NAME]


async def test_an_event_given_before_the_writer_started_waits_in_the_intake() -> None:
    intake = Intake()
    handler = watching._auditing(kinds.DEPLOYMENTS)

    # Nothing takes from the intake yet (the records are still read): the handler returns.
    await asyncio.wait_for(handler(event=_event("web"), memo=kopf.Memo(intake=intake)), 5)

    assert len(intake) == 1
    assert await _taken(intake) == ["web"]


async def test_kopfs_memory_of_an_object_is_not_kept_between_its_events() -> None:
    memories, memo = watching.Forgetful(), kopf.Memo(intake="the intake")
    body = _event("web")["object"]

    first = await memories.recall(body, memobase=memo, noticed_by_listing=True)
    second = await memories.recall(body, memobase=memo)

    assert first is not second
    assert list(memories.iter_all_memories()) == []
    copied: object = first.memo
    assert copied == memo and copied is not memo  # a copy, made for the event
