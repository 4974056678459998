"""The liveness and readiness endpoints, answered from a thread of their own.

A probe served on the asyncio loop (kopf's liveness endpoint, an aiohttp app) goes
silent when the loop is stuck, say in a blocking call inside a handler: the kubelet sees
timeouts and nobody learns why. ``ProbeServer`` is an ``endpoint.Endpoint``, served from
a daemon thread, so a stuck loop gets an honest 503 that names the problem.
``LoopWatch`` is the loop's heartbeat: a coroutine on the loop notes the time every
second, and ``liveness_problems`` fails liveness when it has not for ``STALL_SECONDS``, on
top of the background tasks that ``supervision.Supervisor`` reports.

The checks run in the server's threads, never on the loop: they may only read plain
attributes (a float, a list), never await or call into the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubeledger import endpoint

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# Well above any pause a healthy operator has (a garbage collection, a large diff), well
# below the kubelet's patience (failureThreshold x periodSeconds, 30 s by default).
STALL_SECONDS = 10.0
_EXPECTED_FORM = "http://HOST:PORT/PATH, e.g. http://0.0.0.0:8080/healthz"

Check = Callable[[], list[str]]


class LoopWatch:
    """Shows, from any thread, whether the asyncio loop still runs its coroutines."""

    def __init__(self, *, interval: float = TICK_SECONDS) -> None:
        self.interval = interval
        # Written on the loop, read by the probe threads: one float, replaced whole,
        # which the interpreter does atomically, so no lock. Counted from construction,
        # so a watch that is never run reads as a loop that never ran.
        self._last_tick = time.monotonic()

    async def run(self) -> None:
        """Ticks until cancelled; run it as a task on the loop being watched."""
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(self.interval)

    def stalled_for(self) -> float:
        """Seconds since the loop last ticked; about ``interval`` at most when healthy."""
        return time.monotonic() - self._last_tick


def liveness_problems(loop_watch: LoopWatch, supervisor_problems: Check,
                      stall_seconds: float = STALL_SECONDS) -> list[str]:
    """A stuck event loop, then the supervisor's failing background tasks."""
    problems = []
    stalled = loop_watch.stalled_for()
    if stalled > stall_seconds:
        problems.append(f"the event loop has not run for {stalled:.1f}s "
                        f"(allowed: {stall_seconds:g}s)")
    problems.extend(supervisor_problems())
    return problems


class ProbeServer(endpoint.Endpoint):
    """Answers ``GET``/``HEAD`` on the URL's path: 200 when ``check()`` finds no problem.

    200 ``{"ok": true}``, or 503 ``{"ok": false, "problems": [...]}``; any other path 404.
    ``start()`` listens and serves from a daemon thread, ``stop()`` closes the socket and
    waits for that thread (see ``endpoint.Endpoint``).
    """

    def __init__(self, url: str, check: Check) -> None:
        super().__init__(url, self._answer_json, expected=_EXPECTED_FORM)
        self._check = check
        # Handler threads answer at the same time; the lock keeps the log to one line per
        # change between passing and failing.
        self._lock = threading.Lock()
        self._failing = False

    def answer(self) -> tuple[int, dict[str, Any]]:
        """The status and body of a probe now; called by the serving threads."""
        try:
            problems = list(self._check())
        except Exception as error:  # a broken check must fail the probe, not the server
            problems = [f"checking failed: {type(error).__name__}: {error}"]
        self._note(problems)
        if problems:
            return 503, {"ok": False, "problems": problems}
        return 200, {"ok": True}

    def _answer_json(self, accept: str) -> tuple[int, str, bytes]:
        status, body = self.answer()
        return status, "application/json", json.dumps(body).encode()

    def _note(self, problems: list[str]) -> None:
        # Logged from this thread: when the loop is stuck, this may be the only line that
        # says why before the kubelet restarts the pod. Once per change, not per probe.
        failing = bool(problems)
        with self._lock:
            if failing and not self._failing:
                logger.info("probe %s fails: %s", self.url, "; ".join(problems))
            elif self._failing and not failing:
                logger.info("probe %s passes again", self.url)
            self._failing = failing
