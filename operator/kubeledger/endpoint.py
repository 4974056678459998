"""An HTTP endpoint served from a daemon thread: what the probes and the metrics share.

Why a thread and not the asyncio loop (as kopf's aiohttp liveness endpoint is): an
endpoint on the loop goes silent when the loop is stuck, say in a blocking call inside a
handler. One served by the standard library's HTTP server from threads of its own keeps
answering, so a stuck loop still gets an honest probe answer and a last scrape.

``Endpoint`` listens at one URL, ``http://HOST:PORT/PATH``, and answers ``GET`` and
``HEAD`` on that path with whatever its ``answer`` callable returns; any other path is a
404. ``probes.ProbeServer`` answers with a check's JSON verdict, ``metrics.serve`` with
the Prometheus exposition. ``answer`` runs in a serving thread, never on the loop: it may
only read plain attributes, never await or call into the loop.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

# How often the serving thread looks whether stop() was asked: the longest stop() waits.
_SHUTDOWN_POLL_SECONDS = 0.1
# A client that connects and sends nothing must not hold a thread for ever.
_REQUEST_TIMEOUT_SECONDS = 5.0
_TEXT = "text/plain; charset=utf-8"

# Given the request's Accept header (empty when it has none): status, content type, body.
Answer = Callable[[str], tuple[int, str, bytes]]


def parse(url: str, *, expected: str) -> tuple[str, int, str]:
    """``(host, port, path)`` of ``http://HOST:PORT/PATH``; path ``/`` when there is none.

    A ValueError names the URL, what is wrong with it, and the ``expected`` form (the
    caller's, e.g. ``http://HOST:PORT/metrics``).
    """
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
        raise ValueError(f"URL {url!r}: {problem or 'not understood'}; expected {expected}")
    return parts.hostname, port, parts.path or "/"


class Endpoint:
    """Answers ``GET``/``HEAD`` at ``url``'s path with ``answer``; 404 anywhere else.

    The URL is checked here (see :func:`parse`); ``start()`` listens and serves from a
    daemon thread, ``stop()`` closes the socket and waits for that thread.
    """

    def __init__(self, url: str, answer: Answer, *, expected: str) -> None:
        self.url = url
        self._host, self._port, self._path = parse(url, expected=expected)
        self._answer = answer
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on: the one the system chose, after ``start()``, for port 0."""
        return self._server.server_address[1] if self._server else self._port

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"the endpoint at {self.url} is already started")
        try:
            server = _Server((self._host, self._port), path=self._path, answer=self._answer)
        except OSError as error:  # the port is taken, the host is not ours
            error.add_note(f"while starting the endpoint at {self.url}")
            raise
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
                                  name=f"endpoint {self.url}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Stops serving and frees the port; does nothing if not started (or stopped).

        Waits at most about ``_SHUTDOWN_POLL_SECONDS`` for the serving thread to notice.
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung request must not keep the process alive

    def __init__(self, address: tuple[str, int], *, path: str, answer: Answer) -> None:
        self.served_path = path
        self.answer = answer
        # Read by TCPServer.__init__ when it makes the socket: "::" needs an IPv6 one.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's full name, a reverse DNS query
        # that can hang where cluster DNS is slow; the name is only for CGI.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-answer, say: the parent prints a traceback to stderr.
        logger.debug("endpoint %s, request from %s failed", self.served_path, client_address,
                     exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT_SECONDS

    # http.server calls do_<METHOD>.
    def do_GET(self) -> None:
        self._respond(with_body=True)

    def do_HEAD(self) -> None:
        self._respond(with_body=False)

    def _respond(self, *, with_body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path != self.server.served_path:
            status, content_type, body = 404, _TEXT, (
                f"nothing at {path}; this endpoint is at {self.server.served_path}\n".encode())
        else:
            try:
                status, content_type, body = self.server.answer(self.headers.get("Accept", ""))
            except Exception:  # a broken answer must fail the request, not the server
                logger.exception("endpoint %s could not answer", self.server.served_path)
                status, content_type, body = 500, _TEXT, b"the answer failed; see the log\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Every request (a probe every few seconds, a scrape) and every malformed one: a
        # debug line in the operator's log format, not the parent's raw line on stderr.
        logger.debug("endpoint %s, request from %s: %s", self.server.served_path,
                     self.address_string(), format % args)
