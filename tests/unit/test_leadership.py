"""Leader election on a Lease: who leads, when a standby may take over, and the fence."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from kubeledger.core import kinds
from kubeledger.kube import errors
from kubeledger.leadership import Election, LeaseRefusedError, Timing
from unit.fake_kube import FakeKube

NAMESPACE, NAME = "kubeledger", "kubeledger"
TIMING = Timing(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def election(kube: FakeKube, identity: str, clock: Clock, timing: Timing = TIMING) -> Election:
    return Election(kube, namespace=NAMESPACE, name=NAME, identity=identity, timing=timing,
                    clock=clock)


def quick_leader(kube: FakeKube) -> Election:
    """pod-a on a real clock, with timings short enough for renewals to happen in a test."""
    quick = Timing(lease_duration=0.6, renew_deadline=0.3, retry_period=0.05)
    return Election(kube, namespace=NAMESPACE, name=NAME, identity="pod-a", timing=quick)


def lease(kube: FakeKube) -> dict[str, object]:
    spec: dict[str, object] = kube.of(kinds.LEASES)[0]["spec"]
    return spec


async def test_the_first_replica_creates_the_lease_and_leads_for_the_renew_deadline() -> None:
    kube, clock = FakeKube(), Clock()
    first = election(kube, "kubeledger-7d9f-a", clock)

    waited = await first.acquire()

    assert not waited
    assert first.leading
    assert first.authority_left() == TIMING.renew_deadline
    spec = lease(kube)
    assert spec["holderIdentity"] == "kubeledger-7d9f-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert kube.of(kinds.LEASES)[0]["metadata"]["namespace"] == NAMESPACE


async def test_a_standby_takes_a_held_lease_only_after_seeing_it_unchanged_for_its_duration(
) -> None:
    kube, clock = FakeKube(), Clock()
    leader, standby = election(kube, "pod-a", clock), election(kube, "pod-b", clock)
    await leader.acquire()

    assert not await standby._try_to_hold()  # first sight of the lease starts its wait
    clock.now += TIMING.lease_duration - 0.1
    assert not await standby._try_to_hold()
    assert not standby.leading

    clock.now += 0.2
    assert await standby._try_to_hold()
    assert standby.leading
    assert lease(kube)["holderIdentity"] == "pod-b"
    assert lease(kube)["leaseTransitions"] == 1


async def test_a_renewal_seen_by_the_standby_restarts_its_wait() -> None:
    kube, clock = FakeKube(), Clock()
    leader, standby = election(kube, "pod-a", clock), election(kube, "pod-b", clock)
    await leader.acquire()
    assert not await standby._try_to_hold()

    clock.now += 10.0
    assert await leader._try_to_hold()  # renewed: a new renewTime
    clock.now += 6.0
    assert not await standby._try_to_hold()  # 16 s since first seen, 6 s since the renewal


async def test_the_fence_closes_before_a_standby_can_take_over() -> None:
    """The leader is cut off from the apiserver: it must stop writing before anyone starts."""
    kube, clock = FakeKube(), Clock()
    leader, standby = election(kube, "pod-a", clock), election(kube, "pod-b", clock)
    await leader.acquire()
    assert not await standby._try_to_hold()
    took_over_at = None
    while took_over_at is None:
        clock.now += 0.5
        if await standby._try_to_hold():
            took_over_at = clock.now
    # The leader's last renewal started at 1000; it was seen by the standby at 1000 too.
    assert leader.authority_left() == 0
    assert took_over_at - 1000.0 >= TIMING.lease_duration
    assert 1000.0 + TIMING.renew_deadline < took_over_at


async def test_a_released_lease_is_taken_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    leader, standby = election(kube, "pod-a", clock), election(kube, "pod-b", clock)
    await leader.acquire()
    assert not await standby._try_to_hold()

    await leader.release()

    assert not leader.leading
    assert lease(kube)["holderIdentity"] == ""
    assert await standby._try_to_hold()
    assert lease(kube)["holderIdentity"] == "pod-b"


async def test_two_replicas_racing_for_the_lease_give_one_leader() -> None:
    kube, clock = FakeKube(), Clock()
    racers = [election(kube, f"pod-{n}", clock) for n in range(3)]

    won = await asyncio.gather(*(racer._try_to_hold() for racer in racers))

    assert won.count(True) == 1
    assert [racer.leading for racer in racers] == won


async def test_a_leader_that_cannot_renew_loses_the_lead_once_its_deadline_passes() -> None:
    kube = FakeKube()
    leader = quick_leader(kube)
    await leader.acquire()
    kube.fail("get", errors.Unavailable("apiserver away"), times=1000)

    await asyncio.wait_for(leader.keep(), timeout=2)

    assert leader.lost.is_set()
    assert not leader.leading


async def test_a_leader_whose_lease_was_taken_stops_at_its_next_renewal() -> None:
    kube = FakeKube()
    leader = quick_leader(kube)
    await leader.acquire()
    taken = kube.of(kinds.LEASES)[0]
    taken["spec"]["holderIdentity"] = "pod-b"
    taken["spec"]["renewTime"] = "2026-12-02T08:00:00.000000Z"
    await kube.replace(kinds.LEASES, taken)

    await asyncio.wait_for(leader.keep(), timeout=2)

    assert leader.lost.is_set()


async def test_a_renewal_conflicting_with_its_own_late_write_keeps_the_lead() -> None:
    """A renewal given up on (its connection hung) may land after all, and the next one
    then meets a Conflict: the Lease still names this replica, so it tries again."""
    kube = FakeKube()
    leader = quick_leader(kube)
    await leader.acquire()
    kube.fail("replace", errors.Conflict("409 the object has been modified", status=409),
              times=2)

    renewing = asyncio.create_task(leader.keep())
    await asyncio.sleep(0.5)  # well past the renew deadline (0.3 s)

    assert kube.calls["replace"] >= 3  # the two Conflicts, then renewals that held
    assert leader.leading and not leader.lost.is_set()
    await leader.release()
    await asyncio.wait_for(renewing, timeout=2)


async def test_acquire_says_whether_the_replica_stood_by_first() -> None:
    kube = FakeKube()
    quick = Timing(lease_duration=0.3, renew_deadline=0.2, retry_period=0.05)
    leader = Election(kube, namespace=NAMESPACE, name=NAME, identity="pod-a", timing=quick)
    standby = Election(kube, namespace=NAMESPACE, name=NAME, identity="pod-b", timing=quick)
    await leader.acquire()
    taking_over = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0.1)
    assert not taking_over.done()  # the lease is held and fresh

    await leader.release()

    assert await asyncio.wait_for(taking_over, timeout=2) is True
    assert lease(kube)["holderIdentity"] == "pod-b"


async def test_a_replica_that_may_not_use_the_lease_stops_saying_what_to_fix() -> None:
    kube = FakeKube()
    kube.fail("get", errors.Refused("403 Forbidden", status=403))
    standby = election(kube, "pod-a", Clock())

    with pytest.raises(LeaseRefusedError, match=r"may not use its Lease kubeledger/kubeledger "
                       r"\(403 Forbidden\): bind its service account to the chart's Role"):
        await standby.acquire()


async def test_an_apiserver_away_at_start_is_waited_out() -> None:
    kube = FakeKube()
    kube.fail("get", errors.Unavailable("503"), times=2)
    quick = Timing(lease_duration=0.3, renew_deadline=0.2, retry_period=0.01)
    standby = Election(kube, namespace=NAMESPACE, name=NAME, identity="pod-a", timing=quick)

    assert await asyncio.wait_for(standby.acquire(), timeout=2) is True
    assert standby.leading


async def test_a_lease_handed_back_ends_the_renewals_without_a_loss() -> None:
    kube = FakeKube()
    leader = quick_leader(kube)
    await leader.acquire()
    renewing = asyncio.create_task(leader.keep())

    await leader.release()
    await asyncio.wait_for(renewing, timeout=2)

    assert not leader.lost.is_set()  # a stop, not a lost lead: the process exits 0
    assert lease(kube)["holderIdentity"] == ""


class SlowAnswers(FakeKube):
    """Renewals reach the Lease at once, but their answers wait for ``answer``."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def replace(self, resource: kinds.Resource,
                      body: Mapping[str, Any]) -> dict[str, Any]:
        written = await super().replace(resource, body)
        if body["spec"]["holderIdentity"]:
            await self.answer.wait()
        return written


async def test_a_renewal_answered_after_the_release_gives_no_authority_back() -> None:
    kube = SlowAnswers()
    leader = quick_leader(kube)
    await leader.acquire()
    renewing = asyncio.create_task(leader.keep())
    while not kube.calls["replace"]:
        await asyncio.sleep(0.01)  # the renewal has written the Lease; its answer waits

    await leader.release()
    kube.answer.set()
    await asyncio.wait_for(renewing, timeout=2)

    assert lease(kube)["holderIdentity"] == ""
    assert not leader.leading  # a standby may take the Lease now: this replica must not write


async def test_a_release_that_meets_a_renewal_reads_the_lease_again() -> None:
    kube = FakeKube()
    leader = election(kube, "pod-a", Clock())
    await leader.acquire()
    kube.fail("replace", errors.Conflict("409 the object has been modified", status=409))

    await leader.release()

    assert lease(kube)["holderIdentity"] == ""
    assert kube.calls["replace"] == 2


async def test_the_new_holder_keeps_what_the_lease_said_of_its_predecessor() -> None:
    """The replay of the audit stream needs the previous writer's last renewal and whether
    it handed the Lease back (recording/replay.py)."""
    kube, clock = FakeKube(), Clock()
    first, second, third = (election(kube, name, clock) for name in ("pod-a", "pod-b", "pod-c"))
    await first.acquire()
    assert first.predecessor is None  # it created the Lease: nobody wrote before
    renewed = lease(kube)["renewTime"]

    assert not await second._try_to_hold()
    clock.now += TIMING.lease_duration + 0.1
    assert await second._try_to_hold()  # pod-a stopped renewing: it was not handed over
    assert second.predecessor is not None and not second.predecessor.handed_over
    assert second.predecessor.renewed == datetime.fromisoformat(str(renewed))

    await second.release()
    assert await third._try_to_hold()
    assert third.predecessor is not None and third.predecessor.handed_over
