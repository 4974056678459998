"""The intake between kopf's handlers and the recorder: every event is handed on, each
object's in order and one at a time, other objects' meanwhile; a failed one does not
stop the object's next; what is handed on is the event as it was put, not the caller's
object (it waited packed). Objects whose next event is a watch's go before those waiting
with a listing's (a first install paces those); the first listing's events are counted
as they are put, and a later listing's are handed on as relisted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from kubeledger import metrics
from kubeledger.core import kinds
from kubeledger.first_listing import FirstListing
from kubeledger.recording.intake import Intake


def _body(uid: str, version: int) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid, "resourceVersion": str(version)},
            "spec": {"replicas": version}}


class Taker:
    """Takes events the way the recorder may: one object's can wait while others go on."""

    def __init__(self, held: str | None = None) -> None:
        self.taken: list[tuple[str, str | None, int]] = []
        self.bodies: list[Mapping[str, Any]] = []
        self.at_once: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.relisted: list[bool] = []
        self.held = held
        self.release = asyncio.Event()

    async def __call__(self, resource: kinds.Resource, event_type: str | None,
                       body: Mapping[str, Any], *, relisted: bool) -> None:
        uid = body["metadata"]["uid"]
        self.relisted.append(relisted)
        self.at_once[uid] = self.at_once.get(uid, 0) + 1
        self.most_at_once[uid] = max(self.most_at_once.get(uid, 0), self.at_once[uid])
        if uid == self.held:
            await self.release.wait()
        if body["spec"]["replicas"] < 0:
            self.at_once[uid] -= 1
            raise ValueError("cannot decide this one")
        self.taken.append((uid, event_type, body["spec"]["replicas"]))
        self.bodies.append(body)
        self.at_once[uid] -= 1


async def _until(done: Any) -> None:
    async with asyncio.timeout(5):
        while not done():
            await asyncio.sleep(0)


async def _running(intake: Intake, take: Taker, takers: int = 4) -> asyncio.Task[None]:
    return asyncio.create_task(intake.run(take, takers=takers))


async def test_each_objects_events_are_handed_on_in_order_one_at_a_time() -> None:
    intake, take = Intake(), Taker(held="web")
    running = await _running(intake, take)
    for version in range(1, 4):
        intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("web", version))
        intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("api", version))
    try:
        # web's first event waits: api's events are all handed on meanwhile.
        await _until(lambda: len(take.taken) == 3)
        assert take.taken == [("api", "MODIFIED", 1), ("api", "MODIFIED", 2),
                              ("api", "MODIFIED", 3)]
        take.release.set()
        await _until(lambda: len(take.taken) == 6)
    finally:
        running.cancel()
    assert [event for event in take.taken if event[0] == "web"] == [
        ("web", "MODIFIED", 1), ("web", "MODIFIED", 2), ("web", "MODIFIED", 3)]
    assert take.most_at_once == {"web": 1, "api": 1}
    assert len(intake) == 0


async def test_an_event_put_while_its_object_is_being_taken_is_handed_on_after_it() -> None:
    intake, take = Intake(), Taker(held="web")
    running = await _running(intake, take)
    intake.put(kinds.DEPLOYMENTS, None, _body("web", 1))
    try:
        await _until(lambda: take.at_once.get("web") == 1)
        intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("web", 2))
        take.release.set()
        await _until(lambda: len(take.taken) == 2)
    finally:
        running.cancel()
    assert take.taken == [("web", None, 1), ("web", "MODIFIED", 2)]
    assert take.most_at_once == {"web": 1}


async def test_a_failed_event_is_logged_and_the_objects_next_is_still_handed_on(
        caplog: pytest.LogCaptureFixture) -> None:
    intake, take = Intake(), Taker()
    running = await _running(intake, take, takers=1)
    intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("web", -1))
    intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("web", 2))
    try:
        with caplog.at_level(logging.ERROR):
            await _until(lambda: take.taken)
    finally:
        running.cancel()
    assert take.taken == [("web", "MODIFIED", 2)]
    assert "the MODIFIED event of Deployment web was not recorded" in caplog.text
    assert "cannot decide this one" in caplog.text


async def test_what_is_handed_on_is_the_event_as_it_was_put() -> None:
    intake, take = Intake(), Taker()
    body = _body("web", 1)
    intake.put(kinds.DEPLOYMENTS, "ADDED", body)
    body["spec"]["replicas"] = 7  # the caller's object changes after the put
    waiting = metrics.REGISTRY.get_sample_value("kubeledger_intake_events")

    running = await _running(intake, take)
    try:
        await _until(lambda: take.taken)
    finally:
        running.cancel()
    assert take.taken == [("web", "ADDED", 1)]
    assert take.bodies[0] is not body and take.bodies[0] == _body("web", 1)
    assert waiting is not None
    assert metrics.REGISTRY.get_sample_value("kubeledger_intake_events") == waiting - 1


async def test_a_watched_change_goes_before_the_listings_events_that_wait() -> None:
    intake, take = Intake(), Taker()
    for uid in ("a", "b", "c"):
        intake.put(kinds.DEPLOYMENTS, None, _body(uid, 1))
    intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("d", 2))
    intake.put(kinds.DEPLOYMENTS, "MODIFIED", _body("b", 2))  # b goes forward, in order

    running = await _running(intake, take, takers=1)
    try:
        await _until(lambda: len(take.taken) == 5)
    finally:
        running.cancel()
    assert take.taken == [("d", "MODIFIED", 2), ("b", None, 1), ("b", "MODIFIED", 2),
                          ("a", None, 1), ("c", None, 1)]
    assert len(intake) == 0


async def test_the_first_listing_is_counted_as_put_and_a_later_one_is_relisted() -> None:
    intake, take = Intake(), Taker()
    intake.put(kinds.DEPLOYMENTS, None, _body("early", 1))  # before the catch-up listing
    listing = intake.first_listing = FirstListing({kinds.DEPLOYMENTS: {"web", "api"}})
    intake.put(kinds.DEPLOYMENTS, None, _body("web", 1))
    intake.put(kinds.DEPLOYMENTS, None, _body("api", 1))
    listed_when_put = listing.done  # nothing taken yet
    intake.put(kinds.DEPLOYMENTS, None, _body("web", 2))  # kopf listed again

    running = await _running(intake, take, takers=1)
    try:
        await _until(lambda: len(take.taken) == 4)
    finally:
        running.cancel()
    assert listed_when_put
    assert list(zip(take.taken, take.relisted, strict=True)) == [
        (("early", None, 1), False), (("web", None, 1), False), (("web", None, 2), True),
        (("api", None, 1), False)]


async def test_the_first_listing_is_held_until_all_of_it_is_in_but_a_watch_is_not() -> None:
    intake, take = Intake(), Taker()
    intake.first_listing = FirstListing({kinds.DEPLOYMENTS: {"a", "b", "c"}})
    running = await _running(intake, take)
    try:
        intake.put(kinds.DEPLOYMENTS, None, _body("a", 1))
        intake.put(kinds.DEPLOYMENTS, None, _body("b", 1))
        intake.put(kinds.ROLES, "MODIFIED", _body("role", 1))  # a kind listed already
        await _until(lambda: take.taken)
        await asyncio.sleep(0.01)
        assert take.taken == [("role", "MODIFIED", 1)]

        intake.put(kinds.DEPLOYMENTS, None, _body("c", 1))  # the last of the listing
        await _until(lambda: len(take.taken) == 4)
    finally:
        running.cancel()
    assert take.taken[1:] == [("a", None, 1), ("b", None, 1), ("c", None, 1)]
    assert len(intake) == 0
