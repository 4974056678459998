"""The ledger writes each change exactly once, in chain order, through failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubeledger.core import chain, model
from kubeledger.kube import errors
from kubeledger.recording.ledger import Ledger, NotWriterError
from unit import records
from unit.fake_kube import FakeKube


def spec(replicas: int) -> model.RecordSpec:
    return records.full_spec_with(chain=None, snapshot={"spec": {"replicas": replicas}})


async def test_records_are_chained_in_the_order_they_are_appended() -> None:
    kube = FakeKube()
    ledger = Ledger(kube, chain.Head())

    await asyncio.gather(*(ledger.append(f"record-{n}", spec(n)) for n in range(1, 6)))

    written = kube.records()
    assert [written[f"record-{n}"]["chain"]["sequence"] for n in range(1, 6)] == [1, 2, 3, 4, 5]
    assert chain.verify(written.items()).intact
    assert ledger.head.sequence == 5


async def test_anomalies_are_flagged_in_chain_order_before_the_seal() -> None:
    kube = FakeKube()
    seen: list[int] = []

    def flag(spec: model.RecordSpec) -> model.RecordSpec:
        seen.append((spec.snapshot or {})["spec"]["replicas"])
        return spec.model_copy(update={"anomalies": [
            model.Anomaly(kind=model.AnomalyKind.BURST, reason=f"number {len(seen)}")]})

    ledger = Ledger(kube, chain.Head(), flag=flag)
    await asyncio.gather(*(ledger.append(f"record-{n}", spec(n)) for n in range(1, 4)))

    written = kube.records()
    assert seen == [1, 2, 3]
    assert [written[f"record-{n}"]["anomalies"][0]["reason"] for n in range(1, 4)] == [
        "number 1", "number 2", "number 3"]
    assert chain.verify(written.items()).intact  # the flags are in the hashed content


async def test_a_change_recorded_before_is_not_recorded_again() -> None:
    kube = FakeKube()
    first = Ledger(kube, chain.Head())
    await first.append("record-1", spec(1))
    restarted = Ledger(kube, first.head)  # e.g. after a re-list: same name, same change

    assert await restarted.append("record-1", spec(1)) is None
    assert len(kube.records()) == 1
    assert restarted.head == first.head


async def test_a_write_whose_answer_was_lost_counts_as_written_once() -> None:
    kube = FakeKube()
    kube.fail("create", errors.TimedOut("no answer"), after=True)  # written, then timed out
    ledger = Ledger(kube, chain.Head())
    seen: list[str] = []
    ledger.on_written.append(lambda name, _: seen.append(name))

    written = await ledger.append("record-1", spec(1))

    assert written is not None and written.chain is not None
    assert written.chain.sequence == 1
    assert list(kube.records()) == ["record-1"]
    assert seen == ["record-1"]
    assert kube.calls["create"] == 2  # the retry met the 409 of its own first attempt


@pytest.mark.parametrize("failure", [
    errors.Unavailable("503", status=503),
    errors.TimedOut("no answer"),
    errors.Refused("403 forbidden", status=403),
    errors.NotFound("404 the CRD is being installed", status=404),
])
async def test_failures_that_may_pass_are_retried_until_the_record_is_written(
    failure: errors.KubeError,
) -> None:
    kube = FakeKube()
    kube.fail("create", failure, times=3)
    ledger = Ledger(kube, chain.Head())

    assert await ledger.append("record-1", spec(1)) is not None
    assert list(kube.records()) == ["record-1"]
    assert kube.calls["create"] == 4


async def test_an_invalid_record_is_not_retried() -> None:
    kube = FakeKube()
    kube.fail("create", errors.KubeError("422 invalid", status=422))
    ledger = Ledger(kube, chain.Head())

    with pytest.raises(errors.KubeError):
        await ledger.append("record-1", spec(1))
    assert ledger.head == chain.Head()


async def test_a_record_removed_between_conflict_and_read_is_written_again() -> None:
    kube = FakeKube()
    # The name was taken when we created (409), and is free again when we read (404).
    kube.fail("create", errors.Conflict("409 exists", status=409))
    ledger = Ledger(kube, chain.Head())

    written = await ledger.append("record-1", spec(1))

    assert written is not None
    assert kube.records()["record-1"]["chain"]["sequence"] == 1
    assert (kube.calls["create"], kube.calls["get"]) == (2, 1)


async def test_a_replica_whose_leadership_ended_writes_nothing() -> None:
    kube = FakeKube()
    leading = [True]
    ledger = Ledger(kube, chain.Head(), may_write=lambda: leading[0])
    await ledger.append("record-1", spec(1))
    leading[0] = False

    with pytest.raises(NotWriterError, match="not the leader any more: record record-2"):
        await ledger.append("record-2", spec(2))

    assert list(kube.records()) == ["record-1"]
    assert ledger.head.sequence == 1


async def test_the_fence_is_asked_again_before_each_retry() -> None:
    """An outage outlasting the leadership must not end in a write by a former leader."""
    kube = FakeKube()
    asked = []

    def fence() -> bool:
        asked.append(True)
        return len(asked) < 3

    kube.fail("create", errors.Unavailable("503", status=503), times=5)
    ledger = Ledger(kube, chain.Head(), may_write=fence)

    with pytest.raises(NotWriterError):
        await ledger.append("record-1", spec(1))

    assert kube.records() == {}
    assert kube.calls["create"] == 2


async def test_creates_overlap_and_listeners_hear_of_them_in_sequence_order() -> None:
    kube = FakeKube()
    in_flight = [0]
    most = [0]
    finish_order = [5, 3, 1, 4, 2]
    gates = {n: asyncio.Event() for n in range(1, 6)}
    original = kube.create

    async def slow_create(resource: Any, body: Any) -> Any:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await gates[body["spec"]["chain"]["sequence"]].wait()
        in_flight[0] -= 1
        return await original(resource, body)

    kube.create = slow_create  # type: ignore[method-assign]
    ledger = Ledger(kube, chain.Head(), window=4)
    heard: list[int] = []
    ledger.on_written.append(lambda _, sealed: heard.append(sealed.chain.sequence
                                                            if sealed.chain else 0))
    writes = [asyncio.create_task(ledger.append(f"record-{n}", spec(n))) for n in range(1, 6)]
    await asyncio.sleep(0.05)
    assert most[0] == 4  # the window: the fifth waits for a slot
    for n in finish_order:
        gates[n].set()
        await asyncio.sleep(0.01)
    await asyncio.gather(*writes)

    assert most[0] == 4
    assert heard == [1, 2, 3, 4, 5]
    assert chain.verify(kube.records().items()).intact


async def test_a_sealed_record_that_cannot_be_written_is_declared_lost_by_the_next() -> None:
    kube = FakeKube()
    ledger = Ledger(kube, chain.Head(), window=4)
    gate = asyncio.Event()
    original = kube.create

    async def refuse_the_first(resource: Any, body: Any) -> Any:
        if body["spec"]["chain"]["sequence"] == 1:
            await gate.wait()
            raise errors.KubeError("422 Invalid", status=422)
        return await original(resource, body)

    kube.create = refuse_the_first  # type: ignore[method-assign]
    first = asyncio.create_task(ledger.append("record-1", spec(1)))
    second = asyncio.create_task(ledger.append("record-2", spec(2)))
    await asyncio.sleep(0.05)  # the second is sealed (sequence 2) while the first waits
    gate.set()
    with pytest.raises(errors.KubeError):
        await first
    await second
    third = await ledger.append("record-3", spec(3))

    assert third is not None and third.chain is not None
    assert third.chain.lost == [1]
    verdict = chain.verify(kube.records().items())
    assert verdict.intact, verdict.findings
    assert verdict.lost == (1,)


async def test_the_last_sealed_record_that_is_not_written_gives_its_sequence_back() -> None:
    kube = FakeKube()
    first = Ledger(kube, chain.Head())
    await first.append("record-1", spec(1))
    restarted = Ledger(kube, first.head)

    assert await restarted.append("record-1", spec(1)) is None  # recorded before
    written = await restarted.append("record-2", spec(2))

    assert written is not None and written.chain is not None
    assert (written.chain.sequence, written.chain.lost) == (2, None)


def test_a_gap_nobody_declared_is_still_a_finding() -> None:
    sealed_1, head = chain.seal(spec(1), chain.Head())
    _, head = chain.seal(spec(2), head)
    sealed_3, _ = chain.seal(spec(3), head)
    verdict = chain.verify([("record-1", sealed_1.wire()), ("record-3", sealed_3.wire())])

    assert [finding.problem for finding in verdict.findings] == ["record 2 is missing (removed)"]
