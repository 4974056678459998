"""Holding watch events, packed, until the recorder takes them.

kopf lists a kind as fast as the apiserver answers and keeps every listed object it has
not yet handed to a handler: its scheduler bounds the workers that run, not those that
wait, and each waiting one holds its object's decoded body. A handler that waits (for the
writer's start, for the first install's pace, for records in flight) therefore makes kopf
hold the whole listing: a first install over 10,000 Deployments grew by some 300 MiB,
which CPython then kept. So the handler only puts the event here and returns. An event
waits packed (``core.packing``: a Deployment like the benchmark's, 2.5 kB of JSON, is
0.7 kB packed and some 20 kB decoded), and a fixed number of takers hand the events on,
unpacked one at a time, each object's in the order they came: an object's events are
taken by one taker at a time.

Objects whose next event is one of a watch go before those whose next is a listing's:
a first install writes its listing's records a few at a time (some 300 s for 10,000
objects in the benchmark), and a change made meanwhile is taken at once and recorded
live (its record still enters the chain after those already queued for it). An object
that has a listing's event waiting when one of a watch comes goes forward too: its
events keep their order.

The intake also counts the events of kopf's first listing as they come
(``first_listing``): a listing's event is handed on as of the first listing (what a
start replays, ``recording.replay``) or as ``relisted``, of a later one (kopf lists
again when a watch cannot resume). The first listing's events are held until all of it
has come: comparing them with their records took a tenth of the core while kopf listed,
and until kopf's listing is in, no change is recorded live. A watch's event (of a kind
listed already) is handed on meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from kubeledger import metrics
from kubeledger.core import packing
from kubeledger.core.kinds import Resource
from kubeledger.first_listing import FirstListing

logger = logging.getLogger(__name__)

# Events handed on at once: each holds one decoded body while the recorder decides it,
# and waits there for what the recorder waits for (a snapshot's read, the first
# install's pace, a free slot among the records in flight).
TAKERS = 100
# The order in which objects are taken: by the kind of their next event, then as queued.
WATCHED, LISTED = 0, 1


class Take(Protocol):
    """Hands one event on (``relisted``: a listing's, of one after kopf's first)."""

    def __call__(self, resource: Resource, event_type: str | None,
                 body: Mapping[str, Any], *, relisted: bool) -> Awaitable[object]: ...


class Intake:
    """Watch events waiting for the recorder, by object, in their order."""

    def __init__(self) -> None:
        # uid -> its events not yet taken: (resource, type, packed body, relisted);
        # present while the object is queued or a taker is on it.
        self._waiting: dict[str, deque[tuple[Resource, str | None, bytes, bool]]] = {}
        # (WATCHED or LISTED, arrival, uid) of the objects to take. An object moved
        # forward stays queued behind too, and is passed over there.
        self._ready: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        # uid -> the place it is queued at, until a taker is on it.
        self._queued: dict[str, int] = {}
        self._count = 0
        self._first_listing: FirstListing | None = None
        # The objects queued with a listing's event while the first listing comes in.
        self._held: list[str] = []

    def __len__(self) -> int:
        """The events waiting."""
        return self._count

    @property
    def first_listing(self) -> FirstListing | None:
        """What kopf's first listing must deliver, once the catch-up listing said it
        (``runtime``); kopf lists nothing before that."""
        return self._first_listing

    @first_listing.setter
    def first_listing(self, listing: FirstListing) -> None:
        self._first_listing = listing
        listing.when_listed(self._release_held)

    def put(self, resource: Resource, event_type: str | None,
            body: Mapping[str, Any]) -> None:
        """Keeps one watch event (kopf names a listing's events' type None) until taken."""
        uid = body["metadata"]["uid"]
        listing = self.first_listing
        relisted = event_type is None and listing is not None and listing.done
        if listing is not None:
            listing.seen(resource, event_type, uid)
        event = (resource, event_type, packing.pack(body), relisted)
        place = LISTED if event_type is None else WATCHED
        waiting = self._waiting.get(uid)
        if waiting is None:
            self._waiting[uid] = deque([event])
            if place == LISTED and listing is not None and not listing.done:
                self._queued[uid] = LISTED
                self._held.append(uid)
            else:
                self._queue(uid, place)
        else:
            waiting.append(event)
            if self._queued.get(uid, WATCHED) > place:
                self._queue(uid, place)  # forward, behind the objects watched already
        self._count += 1
        metrics.INTAKE_EVENTS.inc()

    def _queue(self, uid: str, place: int) -> None:
        self._queued[uid] = place
        self._ready.put_nowait((place, next(self._arrivals), uid))

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for uid in held:
            # Passed over by the takers if moved forward meanwhile.
            self._ready.put_nowait((LISTED, next(self._arrivals), uid))

    async def run(self, take: Take, *, takers: int = TAKERS) -> None:
        """Hands every event to ``take``, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for number in range(takers):
                group.create_task(self._taker(take), name=f"intake taker {number}")

    async def _taker(self, take: Take) -> None:
        while True:
            place, _, uid = await self._ready.get()
            if self._queued.get(uid) != place:
                continue  # moved forward and taken from there, or a taker is on it
            del self._queued[uid]
            waiting = self._waiting[uid]
            while waiting:
                resource, event_type, packed, relisted = waiting.popleft()
                self._count -= 1
                metrics.INTAKE_EVENTS.dec()
                try:
                    await take(resource, event_type, packing.unpack(packed),
                               relisted=relisted)
                except Exception:
                    # kopf would log a failed handler and go on: so does this, so that
                    # the object's later events are still taken.
                    logger.exception("the %s event of %s %s was not recorded", event_type,
                                     resource.kind, uid)
                # An event decided unchanged awaits nothing that suspends, and a queue
                # with objects ready hands the next at once: without this, a taker went
                # through 10,000 listed objects while nothing else ran (kopf's watches,
                # the readiness that waits on the listing), for seconds.
                await asyncio.sleep(0)
            del self._waiting[uid]  # none came meanwhile: the next is queued afresh
