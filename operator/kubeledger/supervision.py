"""Background work that cannot die silently: the shipper and the periodic checks.

Each task runs under a ``Supervisor``. A task that raises is logged with its traceback,
marks the operator unhealthy, and is started again after a backoff (``backoff.Backoff``,
up to 30 s). It counts as recovered once its new run has lasted ``STABLE_SECONDS``
without failing. Until then ``Supervisor.problems`` names it, and kopf's liveness probe
fails (see ``watching``): a task that keeps dying keeps the operator unhealthy, and the
kubelet restarts the pod, while a task that failed once heals in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubeledger import backoff

logger = logging.getLogger(__name__)

STABLE_SECONDS = 60.0


@dataclass
class _Supervised:
    name: str
    work: Callable[[], Awaitable[None]]
    backoff: backoff.Backoff = field(default_factory=backoff.Backoff)
    failures: int = 0
    last_error: str = ""
    # When the current run started, on the monotonic clock; None while waiting to restart.
    running_since: float | None = None
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Runs background tasks, restarts the ones that die, and says whether all are well."""

    def __init__(self, *, stable_seconds: float | None = None) -> None:
        # Read at construction, not import: tests make the period short.
        self._stable_seconds = STABLE_SECONDS if stable_seconds is None else stable_seconds
        self._tasks: list[_Supervised] = []

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Starts ``work()`` now, and again whenever it ends with an error."""
        supervised = _Supervised(name, work)
        supervised.task = asyncio.create_task(self._supervise(supervised), name=name)
        self._tasks.append(supervised)

    @property
    def problems(self) -> list[str]:
        """One sentence per task that died and has not yet run stably since."""
        now = time.monotonic()
        return [
            f"{task.name} failed {task.failures} times, last with {task.last_error}"
            for task in self._tasks
            if task.failures and (task.running_since is None
                                  or now - task.running_since < self._stable_seconds)
        ]

    async def stop(self) -> None:
        tasks = [supervised.task for supervised in self._tasks if supervised.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, supervised: _Supervised) -> None:
        while True:
            supervised.running_since = time.monotonic()
            try:
                await supervised.work()
            except Exception as error:  # whatever it was, it must be seen and survived
                ran_for = time.monotonic() - supervised.running_since
                supervised.running_since = None
                supervised.failures += 1
                supervised.last_error = f"{type(error).__name__}: {error}"
                if ran_for >= self._stable_seconds:
                    supervised.backoff.reset()  # it had recovered: start the backoff over
                delay = supervised.backoff.delay()
                logger.exception("%s failed; the operator is unhealthy until it runs "
                                 "again for %.0fs; restarting it in %.1fs", supervised.name,
                                 self._stable_seconds, delay)
                await asyncio.sleep(delay)
            else:
                logger.info("%s ended", supervised.name)
                supervised.running_since = None
                return
