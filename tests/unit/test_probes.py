"""The probe endpoints: real HTTP on 127.0.0.1, answered from their own thread.

What every endpoint does (HEAD, 404 elsewhere, stopping, the URL's form, no stderr) is in
``test_endpoint``; here, what a probe answers and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubeledger import probes
from kubeledger.supervision import Supervisor
from unit.test_endpoint import running

Serve = Callable[[probes.Check], probes.ProbeServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts probe servers on a free port of 127.0.0.1; stops every one of them after."""
    with contextlib.ExitStack() as stack:
        yield lambda check: stack.enter_context(
            running(probes.ProbeServer("http://127.0.0.1:0/healthz", check)))


def request(port: int, path: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        raw = response.read()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def test_healthy_answers_200_ok(serve: Serve) -> None:
    server = serve(lambda: [])
    assert server.port != 0
    assert request(server.port, "/healthz") == (200, {"ok": True})


def test_problems_answer_503_with_the_problems(serve: Serve) -> None:
    server = serve(lambda: ["shipper failed 3 times", "not listed yet"])
    assert request(server.port, "/healthz") == (
        503, {"ok": False, "problems": ["shipper failed 3 times", "not listed yet"]})


def test_the_answer_follows_the_check_from_one_request_to_the_next(serve: Serve) -> None:
    problems: list[str] = []
    server = serve(lambda: list(problems))
    assert request(server.port, "/healthz")[0] == 200
    problems.append("broken")
    assert request(server.port, "/healthz") == (503, {"ok": False, "problems": ["broken"]})
    problems.clear()
    assert request(server.port, "/healthz")[0] == 200


def test_a_check_that_raises_fails_the_probe_and_the_server_goes_on(serve: Serve) -> None:
    def broken() -> list[str]:
        raise RuntimeError("no supervisor yet")

    server = serve(broken)
    assert request(server.port, "/healthz") == (
        503, {"ok": False, "problems": ["checking failed: RuntimeError: no supervisor yet"]})
    assert request(server.port, "/healthz")[0] == 503


def test_a_bad_url_is_refused_with_the_probes_form() -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT/PATH") as raised:
        probes.ProbeServer("http://0.0.0.0/healthz", lambda: [])
    assert "the port is missing" in str(raised.value)


async def test_a_blocked_loop_fails_liveness_while_the_probe_still_answers(
        serve: Serve) -> None:
    watch = probes.LoopWatch(interval=0.01)
    ticking = asyncio.create_task(watch.run())
    try:
        server = serve(lambda: probes.liveness_problems(watch, lambda: [], stall_seconds=0.2))
        await asyncio.sleep(0.05)
        assert watch.stalled_for() < 0.2
        assert request(server.port, "/healthz") == (200, {"ok": True})

        time.sleep(0.4)  # a blocking call on the loop, as a careless handler would make
        # Still on the blocked loop: the answer can only come from the server's thread.
        status, body = request(server.port, "/healthz")
        assert status == 503
        [problem] = body["problems"]
        assert problem.startswith("the event loop has not run for 0.")
        assert "(allowed: 0.2s)" in problem

        await asyncio.sleep(0.05)  # the loop runs again, and the watch ticks
        assert request(server.port, "/healthz") == (200, {"ok": True})
    finally:
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking


def test_a_watch_that_never_runs_reads_as_a_stuck_loop() -> None:
    watch = probes.LoopWatch()
    time.sleep(0.02)
    assert watch.stalled_for() >= 0.02
    assert probes.liveness_problems(watch, lambda: [], stall_seconds=0.01)


async def test_liveness_adds_the_supervisors_problems() -> None:
    supervisor = Supervisor(stable_seconds=60)

    async def shipper() -> None:
        raise ConnectionError("elasticsearch is down")

    watch = probes.LoopWatch(interval=0.01)
    ticking = asyncio.create_task(watch.run())
    supervisor.spawn("shipper", shipper)
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if supervisor.problems:
                break
        problems = probes.liveness_problems(watch, lambda: supervisor.problems)
        assert len(problems) == 1
        assert problems[0].startswith("shipper failed")
        assert "ConnectionError: elasticsearch is down" in problems[0]
    finally:
        await supervisor.stop()
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking


def test_the_stall_comes_before_the_supervisors_problems() -> None:
    watch = probes.LoopWatch()
    time.sleep(0.02)
    problems = probes.liveness_problems(watch, lambda: ["shipper failed 1 times"],
                                        stall_seconds=0.01)
    assert problems[0].startswith("the event loop has not run for")
    assert problems[1:] == ["shipper failed 1 times"]


def test_only_changes_between_passing_and_failing_are_logged(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kubeledger.probes")
    problems: list[str] = []
    server = serve(lambda: list(problems))
    request(server.port, "/healthz")
    problems.append("the event loop has not run for 12.0s")
    request(server.port, "/healthz")
    request(server.port, "/healthz")
    problems.clear()
    request(server.port, "/healthz")
    request(server.port, "/healthz")
    assert [record.getMessage() for record in caplog.records] == [
        f"probe {server.url} fails: the event loop has not run for 12.0s",
        f"probe {server.url} passes again",
    ]
