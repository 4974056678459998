"""When kopf's first listing of every audited kind has reached the handlers: readiness.

A writer records changes live only once its watches are established; before that, a
change shows up in the first listing, after the fact. The readiness probe and the log
line ``RECORDING_LIVE`` (``runtime``: once the writer's start is over too) say when
that moment has come.

kopf does not tell handlers when a listing ends. Its indexes would (it holds every
handler until every indexed kind has been listed), but it waits for them with one toggle
per listed object, each waking every other object's worker: quadratic, and minutes of
the event loop at 10,000 objects. So the writer counts instead. At start-up, before
kopf watches, it lists every audited kind anyway (``catchup``, for deletions made while
nobody watched); those uids are what kopf's listing must deliver. A kind is listed once
its handler has put each of them into the intake (``recording.intake``, which hands the
watch's events on first), or once it puts an event of kopf's watch (typed
``ADDED``/``MODIFIED``/``DELETED``: kopf watches only after its listing, in the same
stream). An object deleted between the two listings never comes: when a kind stops
making progress, it is listed again and what is gone is no longer waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping

from kubeledger import backoff
from kubeledger.core.kinds import Resource
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes, list_uids

logger = logging.getLogger(__name__)

RECORDING_LIVE = "every watch has listed its kind: recording changes live"
# How long a kind may make no progress before the objects it still waits for are
# checked: long enough for a listing of thousands, short against a readiness timeout.
STALLED_SECONDS = 5.0
WATCH_EVENTS = frozenset({"ADDED", "MODIFIED", "DELETED"})


class FirstListing:
    """The uids each audited kind's first listing has still to deliver."""

    def __init__(self, expected: Mapping[Resource, set[str]], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pending = {resource: set(uids) for resource, uids in expected.items() if uids}
        self._clock = clock
        self._progress_at = {resource: clock() for resource in self._pending}
        self.listed = asyncio.Event()
        self._when_listed: list[Callable[[], None]] = []
        self._conclude()

    @property
    def done(self) -> bool:
        return self.listed.is_set()

    def when_listed(self, call: Callable[[], None]) -> None:
        """Calls ``call`` once every kind is listed (at once if they are)."""
        if self.done:
            call()
        else:
            self._when_listed.append(call)

    def pending(self, resource: Resource) -> int:
        return len(self._pending.get(resource, ()))

    def seen(self, resource: Resource, event_type: str | None, uid: str) -> None:
        """One event a handler was given (kopf names a listing's events' type None)."""
        waiting = self._pending.get(resource)
        if waiting is None:
            return
        if event_type in WATCH_EVENTS:
            waiting.clear()  # kopf's watch has begun: its listing is over
        elif uid in waiting:
            waiting.discard(uid)
            self._progress_at[resource] = self._clock()
        if not waiting:
            del self._pending[resource]
            self._conclude()

    async def run(self, api: Kubernetes, *, check_every: float = 1.0) -> None:
        """Until every kind is listed: a kind that stalls is listed again (see above)."""
        while not self.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listed.wait(), check_every)
            for resource in self._stalled():
                present = await backoff.retrying(
                    functools.partial(list_uids, api, resource),
                    what=f"list {resource.plural}", retry_on=errors.WORTH_WAITING_FOR)
                self._keep_only(resource, present or set())

    def _stalled(self) -> list[Resource]:
        now = self._clock()
        return [resource for resource in self._pending
                if now - self._progress_at[resource] >= STALLED_SECONDS]

    def _keep_only(self, resource: Resource, present: set[str]) -> None:
        waiting = self._pending.get(resource)
        if waiting is None:
            return
        gone = waiting - present
        if gone:
            logger.info("%d %s deleted before they were listed: not waited for",
                        len(gone), resource.plural)
        waiting &= present
        self._progress_at[resource] = self._clock()
        if not waiting:
            del self._pending[resource]
            self._conclude()

    def _conclude(self) -> None:
        if not self._pending and not self.done:
            self.listed.set()
            calls, self._when_listed = self._when_listed, []
            for call in calls:
                call()
