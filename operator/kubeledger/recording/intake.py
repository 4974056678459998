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
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubeledger import metrics
from kubeledger.core import packing
from kubeledger.core.kinds import Resource

logger = logging.getLogger(__name__)

# Events handed on at once: each holds one decoded body while the recorder decides it,
# and waits there for what the recorder waits for (a snapshot's read, the first
# install's pace, a free slot among the records in flight).
TAKERS = 100

Take = Callable[[Resource, str | None, Mapping[str, Any]], Awaitable[object]]


class Intake:
    """Watch events waiting for the recorder, by object, in their order."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[tuple[Resource, str | None, bytes]]] = {}
        # Objects with events waiting and no taker on them, in the order they came.
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._count = 0

    def __len__(self) -> int:
        """The events waiting."""
        return self._count

    def put(self, resource: Resource, event_type: str | None,
            body: Mapping[str, Any]) -> None:
        """Keeps one watch event (kopf names a listing's events' type None) until taken."""
        uid = body["metadata"]["uid"]
        event = (resource, event_type, packing.pack(body))
        waiting = self._waiting.get(uid)
        if waiting is None:
            self._waiting[uid] = deque([event])
            self._ready.put_nowait(uid)
        else:
            waiting.append(event)  # a taker is on this object, or it is queued already
        self._count += 1
        metrics.INTAKE_EVENTS.inc()

    async def run(self, take: Take, *, takers: int = TAKERS) -> None:
        """Hands every event to ``take``, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for number in range(takers):
                group.create_task(self._taker(take), name=f"intake taker {number}")

    async def _taker(self, take: Take) -> None:
        while True:
            uid = await self._ready.get()
            waiting = self._waiting[uid]
            while waiting:
                resource, event_type, packed = waiting.popleft()
                self._count -= 1
                metrics.INTAKE_EVENTS.dec()
                try:
                    await take(resource, event_type, packing.unpack(packed))
                except Exception:
                    # kopf would log a failed handler and go on: so does this, so that
                    # the object's later events are still taken.
                    logger.exception("the %s event of %s %s was not recorded", event_type,
                                     resource.kind, uid)
            del self._waiting[uid]  # none came meanwhile: the next is queued afresh
