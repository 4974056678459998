"""The liveness and readiness endpoints, answered from a thread of their own.

A probe served on the asyncio loop (kopf's liveness endpoint, an aiohttp app) goes
silent when the loop is stuck, say in a blocking call inside a handler: the kubelet sees
timeouts and nobody learns why. ``ProbeServer`` answers from a daemon thread with the
standard library's HTTP server, so a stuck loop gets an honest 503 that names the
problem. ``LoopWatch`` is the loop's heartbeat: a coroutine on the loop notes the time
every second, and ``liveness_problems`` fails liveness when it has not for
``STALL_SECONDS``, on top of the background tasks that ``supervision.Supervisor`` reports.

The checks run in the server's threads, never on the loop: they may only read plain
attributes (a float, a list), never await or call into the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# Well above any pause a healthy operator has (a garbage collection, a large diff), well
# below the kubelet's patience (failureThreshold x periodSeconds, 30 s by default).
STALL_SECONDS = 10.0
# How often the serving thread looks whether stop() was asked: the longest stop() waits.
_SHUTDOWN_POLL_SECONDS = 0.1
# A client that connects and sends nothing must not hold a thread for ever.
_REQUEST_TIMEOUT_SECONDS = 5.0
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


class ProbeServer:
    """Answers ``GET``/``HEAD`` on the URL's path: 200 when ``check()`` finds no problem.

    200 ``{"ok": true}``, or 503 ``{"ok": false, "problems": [...]}``; any other path 404.
    ``start()`` listens and serves from a daemon thread, ``stop()`` closes the socket and
    waits for that thread.
    """

    def __init__(self, url: str, check: Check) -> None:
        self.url = url
        self._host, self._port, self._path = _parse(url)
        self._check = check
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Handler threads answer at the same time; the lock keeps the log to one line per
        # change between passing and failing.
        self._lock = threading.Lock()
        self._failing = False

    @property
    def port(self) -> int:
        """The port listened on: the one the system chose, after ``start()``, for port 0."""
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"the probe at {self.url} is already started")
        try:
            server = _HTTPServer((self._host, self._port), path=self._path,
                                 answer=self.answer)
        except OSError as error:
            error.add_note(f"while starting the probe at {self.url}")
            raise
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
                                  name=f"probe {self.url}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Stops serving and frees the port; does nothing if not started."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()

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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung request must not keep the process alive

    def __init__(self, address: tuple[str, int], *, path: str,
                 answer: Callable[[], tuple[int, dict[str, Any]]]) -> None:
        self.probe_path = path
        self.answer = answer
        # Read by TCPServer.__init__ when it makes the socket: "::" needs an IPv6 one.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's full name, a reverse DNS query
        # that can hang where cluster DNS is slow; the name is only for CGI.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = _REQUEST_TIMEOUT_SECONDS

    # http.server calls do_<METHOD>.
    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, *, with_body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == self.server.probe_path:
            status, body = self.server.answer()
        else:
            status, body = 404, {"ok": False, "problems": [
                f"no probe at {path}; this one is at {self.server.probe_path}"]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # a line per probe, every few seconds, outside the log format: no

    def log_message(self, format: str, *args: Any) -> None:
        # What is left are errors (a malformed request, a client gone): a debug line, not
        # the parent's raw line on stderr.
        logger.debug("probe %s, request from %s: %s", self.server.probe_path,
                     self.address_string(), format % args)


def _parse(url: str) -> tuple[str, int, str]:
    """``(host, port, path)`` of ``http://HOST:PORT/PATH``; a ValueError says what is off."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port, problem = None, "the port is not a number from 0 to 65535"
    else:
        problem = ("the scheme is not http" if parts.scheme != "http" else
                   "the host is missing" if not parts.hostname else
                   "the port is missing" if port is None else "")
    if problem or port is None or not parts.hostname:
        raise ValueError(f"probe URL {url!r}: {problem or 'not understood'}; "
                         f"expected {_EXPECTED_FORM}")
    return parts.hostname, port, parts.path or "/"
