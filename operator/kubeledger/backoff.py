"""The one retry loop: exponential backoff, and failures told once, not on every attempt.

Every retry in the operator goes through ``retrying`` (writing records, delivery to a
sink, the bookkeeping ConfigMaps, listings) and the supervisor restarts dead background
tasks with the same ``Backoff``. A stretch of failures is logged when it starts, every
``STILL_FAILING_EVERY_SECONDS`` while it lasts, and once when it ends: a long outage
reads as three lines, not thousands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
STILL_FAILING_EVERY_SECONDS = 300.0


class Backoff:
    """Delays that double from ``first`` up to ``maximum``; ``reset`` after a success."""

    def __init__(self, first: float | None = None, maximum: float | None = None) -> None:
        # Read at construction, not import: tests make the module's delays short.
        self._first = FIRST_DELAY_SECONDS if first is None else first
        self._maximum = MAX_DELAY_SECONDS if maximum is None else maximum
        self._next = self._first

    def delay(self) -> float:
        """The wait before the next attempt; each call doubles the one after."""
        delay = self._next
        self._next = min(delay * 2, self._maximum)
        return delay

    def reset(self) -> None:
        self._next = self._first


@dataclass(frozen=True)
class Messages:
    """How a stretch of failures is told: ``failing: <error>; <meanwhile>``, then ``recovered``."""

    failing: str
    recovered: str
    meanwhile: str = "retrying with backoff"

    @classmethod
    def about(cls, what: str) -> Messages:
        """The messages for an action named by an infinitive ("write record x")."""
        return cls(failing=f"cannot {what}", recovered=f"{what}: succeeded again")


class Outage:
    """One stretch of failures: loud at its start and end, a reminder now and then."""

    def __init__(self, messages: Messages, *, level: int = logging.WARNING) -> None:
        self._messages = messages
        self._level = level
        self._since: float | None = None
        self._last_said = 0.0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = self._last_said = now
            logger.log(self._level, "%s: %s; %s", self._messages.failing, error,
                       self._messages.meanwhile)
        elif now - self._last_said > STILL_FAILING_EVERY_SECONDS:
            self._last_said = now
            logger.warning("still %s after %.0fs: %s", self._messages.failing,
                           now - self._since, error)
        else:
            logger.debug("%s: %s", self._messages.failing, error)

    def ended(self) -> None:
        if self._since is not None:
            logger.info("%s after %.0fs", self._messages.recovered,
                        time.monotonic() - self._since)
        self._since = None


async def retrying(call: Callable[[], Awaitable[T]], *, what: str | Messages,
                   retry_on: tuple[type[BaseException], ...],
                   level: int = logging.WARNING) -> T:
    """Awaits ``call`` until it succeeds, backing off after each failure in ``retry_on``.

    Any other exception goes to the caller at once.
    """
    messages = what if isinstance(what, Messages) else Messages.about(what)
    outage = Outage(messages, level=level)
    backoff = Backoff()
    while True:
        try:
            result = await call()
        except retry_on as error:
            outage.failed(error)
            await asyncio.sleep(backoff.delay())
            continue
        outage.ended()
        return result
