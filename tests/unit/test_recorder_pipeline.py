"""The recorder takes an object's next event while the previous record still waits for
its attribution, and still chains each object's records in the order of its changes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubeledger.core import chain, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.model import Commit, Initiator, InitiatorSource, Subject
from kubeledger.core.redaction import Redactor
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import objects
from unit.fake_kube import FakeKube


class SlowAudit:
    """An attribution whose answers the test releases, one resourceVersion at a time."""

    def __init__(self) -> None:
        self.released: dict[str, asyncio.Event] = {}

    def release(self, version: str) -> None:
        self.released.setdefault(version, asyncio.Event()).set()

    async def __call__(self, subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, wait_for_audit: bool) -> tuple[Initiator, Commit]:
        await self.released.setdefault(subject.resourceVersion, asyncio.Event()).wait()
        return Initiator(source=InitiatorSource.AUDIT, username=f"writer-of-"
                         f"{subject.resourceVersion}", verified=True), Commit()


def scaled(replicas: int, version: str) -> dict[str, Any]:
    body = objects.deployment(replicas=replicas)
    body["metadata"]["resourceVersion"] = version
    return body


def recorder_over(kube: FakeKube, attribute: SlowAudit) -> Recorder:
    return Recorder(cluster="prod", redactor=Redactor(b"salt"), baselines=Baselines(),
                    ledger=Ledger(kube, chain.Head()),
                    attribute=attribute)


async def test_the_next_change_is_taken_before_the_previous_one_is_attributed() -> None:
    kube, audit = FakeKube(), SlowAudit()
    recorder = recorder_over(kube, audit)

    first = await recorder.take(kinds.DEPLOYMENTS, "ADDED", scaled(3, "10"))
    second = await recorder.take(kinds.DEPLOYMENTS, "MODIFIED", scaled(5, "11"))

    assert first is not None and second is not None
    assert not first.done() and not second.done()  # both wait for their audit events
    audit.release("10")
    audit.release("11")
    written = [await first, await second]
    assert [spec.action.value for spec in written if spec] == ["created", "scaled"]


async def test_an_object_s_records_are_chained_in_the_order_of_its_changes() -> None:
    kube, audit = FakeKube(), SlowAudit()
    recorder = recorder_over(kube, audit)
    first = await recorder.take(kinds.DEPLOYMENTS, "ADDED", scaled(3, "10"))
    second = await recorder.take(kinds.DEPLOYMENTS, "MODIFIED", scaled(5, "11"))
    assert first is not None and second is not None

    audit.release("11")  # the later change's audit event comes first
    await asyncio.sleep(0.05)
    assert kube.records() == {}  # it waits for the object's earlier record
    audit.release("10")
    await asyncio.gather(first, second)

    by_sequence = sorted(kube.records().values(), key=lambda spec: spec["chain"]["sequence"])
    assert [(spec["subject"]["resourceVersion"], spec["initiator"]["username"])
            for spec in by_sequence] == [("10", "writer-of-10"), ("11", "writer-of-11")]
    assert by_sequence[1]["changes"][0]["old"] == 3  # diffed against the first change


async def test_draining_waits_for_the_records_being_written() -> None:
    kube, audit = FakeKube(), SlowAudit()
    recorder = recorder_over(kube, audit)
    await recorder.take(kinds.DEPLOYMENTS, "ADDED", scaled(3, "10"))

    asyncio.get_running_loop().call_later(0.05, audit.release, "10")
    await recorder.drain(timeout=5)

    assert len(kube.records()) == 1


async def test_draining_gives_up_after_its_timeout() -> None:
    kube, audit = FakeKube(), SlowAudit()
    recorder = recorder_over(kube, audit)
    writing = await recorder.take(kinds.DEPLOYMENTS, "ADDED", scaled(3, "10"))

    await recorder.drain(timeout=0.05)

    assert writing is not None and not writing.done() and kube.records() == {}
    writing.cancel()
