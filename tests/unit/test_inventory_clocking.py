"""A first install's inventory is clocked by the ledger: a new inventoried record starts
only while fewer than ``INVENTORY_IN_FLIGHT`` are being written, and a change made
meanwhile is written at once, not behind the inventory."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubeledger.core import chain, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.kinds import Resource
from kubeledger.core.redaction import Redactor
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import INVENTORY_IN_FLIGHT, Recorder
from unit import objects
from unit.fake_kube import FakeKube, Object

INSTALLED_AT = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


class HeldCreates(FakeKube):
    """A cluster whose creates wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        # The actions of the records whose create is waiting, and the most inventoried
        # records ever waiting at once.
        self.waiting: list[str] = []
        self.most_inventoried = 0

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> Object:
        action = body["spec"]["action"]
        self.waiting.append(action)
        self.most_inventoried = max(self.most_inventoried, self.waiting.count("inventoried"))
        await self.gate.wait()
        self.waiting.remove(action)
        return await super().create(resource, body)


def deployment(name: str, *, created: str) -> dict[str, Any]:
    body = objects.deployment(name=name)
    body["metadata"] |= {"uid": f"uid-{name}", "creationTimestamp": created}
    return body


async def test_inventoried_records_wait_for_the_ledger_and_a_live_change_does_not() -> None:
    kube = HeldCreates()
    recorder = Recorder(cluster="prod", redactor=Redactor(b"salt"), baselines=Baselines(),
                        ledger=Ledger(kube, chain.Head()), installed_at=INSTALLED_AT,
                        inventory_per_second=1_000.0)
    listed = [asyncio.create_task(recorder.take(
        kinds.DEPLOYMENTS, None, deployment(f"old-{n}", created="2025-11-20T08:59:00Z")))
        for n in range(INVENTORY_IN_FLIGHT + 4)]
    await asyncio.sleep(0.05)

    assert kube.waiting == ["inventoried"] * INVENTORY_IN_FLIGHT
    live = await recorder.take(kinds.DEPLOYMENTS, "ADDED",
                               deployment("new", created="2026-12-02T08:00:05Z"))
    await asyncio.sleep(0.05)
    assert kube.waiting == ["inventoried"] * INVENTORY_IN_FLIGHT + ["created"]

    kube.gate.set()
    writings = await asyncio.gather(*listed)
    assert live is not None
    written = await asyncio.gather(live, *[writing for writing in writings if writing])
    assert sorted(spec.action.value for spec in written if spec) == (
        ["created"] + ["inventoried"] * (INVENTORY_IN_FLIGHT + 4))
    assert kube.most_inventoried == INVENTORY_IN_FLIGHT
