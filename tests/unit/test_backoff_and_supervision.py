"""The one retry loop, and background tasks that cannot die silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from kubeledger import backoff
from kubeledger.supervision import Supervisor


def test_delays_double_up_to_the_maximum_and_start_over_after_a_reset() -> None:
    delays = backoff.Backoff(first=0.5, maximum=3.0)

    assert [delays.delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    delays.reset()
    assert delays.delay() == 0.5


async def test_retrying_tells_a_stretch_of_failures_once_and_returns_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 5:
            raise ConnectionError("refused")
        return "done"

    with caplog.at_level(logging.INFO):
        result = await backoff.retrying(flaky, what="write record x",
                                        retry_on=(ConnectionError,))

    assert (result, attempts) == ("done", 5)
    assert caplog.text.count("cannot write record x: refused; retrying with backoff") == 1
    assert caplog.text.count("write record x: succeeded again after") == 1


async def test_retrying_lets_other_errors_through_at_once() -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await backoff.retrying(broken, what="x", retry_on=(ConnectionError,))


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_task_that_dies_is_logged_reported_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    healed = asyncio.Event()

    async def shipper() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"crash {runs}")
        await healed.wait()
        await asyncio.Event().wait()  # then runs for good

    supervisor = Supervisor(stable_seconds=0.2)
    supervisor.spawn("shipping to fake", shipper)
    try:
        await until(lambda: runs == 3)
        assert supervisor.problems == [
            "shipping to fake failed 2 times, last with RuntimeError: crash 2"]
        assert caplog.text.count("shipping to fake failed;") == 2
        assert "RuntimeError: crash 1" in caplog.text  # with its traceback
        await until(lambda: not supervisor.problems)  # after running stably again
    finally:
        await supervisor.stop()


async def test_a_task_that_keeps_dying_keeps_the_operator_unhealthy() -> None:
    async def broken() -> None:
        raise RuntimeError("broken for good")

    supervisor = Supervisor(stable_seconds=0.2)
    supervisor.spawn("the periodic deletion check", broken)
    try:
        await asyncio.sleep(0.4)
        (problem,) = supervisor.problems
        assert "broken for good" in problem
    finally:
        await supervisor.stop()


async def test_healthy_tasks_report_no_problem_and_stop_on_request() -> None:
    async def idle() -> None:
        await asyncio.Event().wait()

    supervisor = Supervisor()
    supervisor.spawn("idle", idle)
    await asyncio.sleep(0.01)

    assert supervisor.problems == []
    await supervisor.stop()
