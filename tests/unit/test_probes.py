"""The probe endpoints: real HTTP on 127.0.0.1, answered from their own thread."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubeledger import probes
from kubeledger.supervision import Supervisor

Serve = Callable[..., probes.ProbeServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts probe servers on a free port of 127.0.0.1; stops every one of them after."""
    started: list[probes.ProbeServer] = []

    def start(check: probes.Check, path: str = "/healthz", port: int = 0) -> probes.ProbeServer:
        server = probes.ProbeServer(f"http://127.0.0.1:{port}{path}", check)
        server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def request(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
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


def test_head_gives_the_status_without_a_body(serve: Serve) -> None:
    healthy = serve(lambda: [])
    sick = serve(lambda: ["broken"])
    assert request(healthy.port, "/healthz", "HEAD") == (200, None)
    assert request(sick.port, "/healthz", "HEAD") == (503, None)


def test_other_paths_are_404_and_a_query_does_not_matter(serve: Serve) -> None:
    server = serve(lambda: [])
    status, body = request(server.port, "/readyz")
    assert status == 404
    assert body["ok"] is False
    assert "/healthz" in body["problems"][0]
    assert request(server.port, "/healthz?verbose=1") == (200, {"ok": True})


def test_a_url_without_a_path_serves_the_root(serve: Serve) -> None:
    server = serve(lambda: [], path="")
    assert request(server.port, "/") == (200, {"ok": True})


def test_a_check_that_raises_fails_the_probe_and_the_server_goes_on(serve: Serve) -> None:
    def broken() -> list[str]:
        raise RuntimeError("no supervisor yet")

    server = serve(broken)
    assert request(server.port, "/healthz") == (
        503, {"ok": False, "problems": ["checking failed: RuntimeError: no supervisor yet"]})
    assert request(server.port, "/healthz")[0] == 503


def test_the_check_runs_on_the_server_thread_not_the_callers(serve: Serve) -> None:
    threads: list[threading.Thread] = []

    def check() -> list[str]:
        threads.append(threading.current_thread())
        return []

    server = serve(check)
    request(server.port, "/healthz")
    assert threads
    assert threads[0] is not threading.current_thread()


def test_stop_frees_the_port(serve: Serve) -> None:
    first = serve(lambda: [])
    port = first.port
    request(port, "/healthz")
    first.stop()
    with pytest.raises(ConnectionRefusedError):
        request(port, "/healthz")
    first.stop()  # a second stop does nothing
    again = serve(lambda: ["the second one"], port=port)
    assert request(port, "/healthz")[1]["problems"] == ["the second one"]
    assert again.port == port


def test_stop_does_not_wait_long(serve: Serve) -> None:
    server = serve(lambda: [])
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0


def test_a_busy_port_is_reported_with_the_url() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = probes.ProbeServer(f"http://127.0.0.1:{taken.getsockname()[1]}/healthz",
                                    lambda: [])
        with pytest.raises(OSError) as raised:
            server.start()
        assert any(server.url in note for note in raised.value.__notes__)
        server.stop()


@pytest.mark.parametrize(("url", "reason"), [
    ("https://0.0.0.0:8080/healthz", "the scheme is not http"),
    ("0.0.0.0:8080/healthz", "the scheme is not http"),
    ("http://:8080/healthz", "the host is missing"),
    ("http://0.0.0.0/healthz", "the port is missing"),
    ("http://0.0.0.0:http/healthz", "the port is not a number"),
    ("http://0.0.0.0:70000/healthz", "the port is not a number"),
])
def test_a_bad_url_names_itself_and_the_expected_form(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT/PATH") as raised:
        probes.ProbeServer(url, lambda: [])
    assert repr(url) in str(raised.value)
    assert reason in str(raised.value)


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


def test_probe_requests_are_not_written_to_stderr(
        serve: Serve, capfd: pytest.CaptureFixture[str]) -> None:
    server = serve(lambda: [])
    request(server.port, "/healthz")
    request(server.port, "/nowhere")
    assert capfd.readouterr().err == ""


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
