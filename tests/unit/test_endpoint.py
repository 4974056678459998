"""The endpoint the probes and the metrics share: real HTTP on the loopback, from a thread.

What the probes and the metrics answer is tested beside them (``test_probes``,
``test_metrics``); here, what every endpoint does whatever it answers.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from kubeledger import endpoint

Serve = Callable[..., endpoint.Endpoint]
Response = tuple[int, str | None, bytes]
E = TypeVar("E", bound=endpoint.Endpoint)


@contextlib.contextmanager
def running(server: E) -> Iterator[E]:
    """``server``, started, then stopped on the way out (``test_probes`` uses it too)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def text(body: str, status: int = 200) -> endpoint.Answer:
    return lambda accept: (status, "text/plain", body.encode())


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts endpoints on a free port of 127.0.0.1; stops every one of them after."""
    with contextlib.ExitStack() as stack:
        def start(answer: endpoint.Answer, path: str = "/here", port: int = 0,
                  host: str = "127.0.0.1") -> endpoint.Endpoint:
            url = f"http://{host}:{port}{path}"
            return stack.enter_context(running(
                endpoint.Endpoint(url, answer, expected="http://HOST:PORT/here")))

        yield start


def request(port: int, path: str, method: str = "GET", host: str = "127.0.0.1",
            headers: dict[str, str] | None = None) -> Response:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_the_path_gets_the_answers_status_type_and_body(serve: Serve) -> None:
    server = serve(text("sick", status=503))
    assert server.port != 0
    assert request(server.port, "/here") == (503, "text/plain", b"sick")


def test_the_answer_is_given_the_accept_header_or_nothing(serve: Serve) -> None:
    asked: list[str] = []

    def answer(accept: str) -> tuple[int, str, bytes]:
        asked.append(accept)
        return 200, "text/plain", b""

    server = serve(answer)
    request(server.port, "/here", headers={"Accept": "application/openmetrics-text"})
    request(server.port, "/here")
    assert asked == ["application/openmetrics-text", ""]


def test_head_gives_the_status_and_length_without_a_body(serve: Serve) -> None:
    server = serve(text("twelve bytes", status=503))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("HEAD", "/here")
        response = connection.getresponse()
        assert (response.status, response.read()) == (503, b"")
        assert response.getheader("Content-Length") == "12"
    finally:
        connection.close()


def test_other_paths_are_404_naming_the_served_path_and_a_query_does_not_matter(
        serve: Serve) -> None:
    server = serve(text("yes"))
    status, content_type, body = request(server.port, "/there")
    assert (status, content_type) == (404, "text/plain; charset=utf-8")
    assert b"/there" in body
    assert b"/here" in body
    assert request(server.port, "/here/")[0] == 404
    assert request(server.port, "/here?verbose=1") == (200, "text/plain", b"yes")


def test_a_url_without_a_path_serves_the_root(serve: Serve) -> None:
    server = serve(text("root"), path="")
    assert request(server.port, "/") == (200, "text/plain", b"root")


def test_other_methods_are_refused(serve: Serve) -> None:
    server = serve(text("yes"))
    assert request(server.port, "/here", "POST")[0] == 501


def test_an_answer_that_raises_is_a_500_and_the_server_goes_on(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def answer(accept: str) -> tuple[int, str, bytes]:
        calls.append(accept)
        if len(calls) == 1:
            raise RuntimeError("no registry yet")
        return 200, "text/plain", b"fine"

    server = serve(answer)
    assert request(server.port, "/here")[0] == 500
    assert request(server.port, "/here") == (200, "text/plain", b"fine")
    [logged] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert logged.exc_info is not None
    assert "no registry yet" in str(logged.exc_info[1])


def test_the_answer_runs_on_a_serving_thread_not_the_callers(serve: Serve) -> None:
    threads: list[threading.Thread] = []

    def answer(accept: str) -> tuple[int, str, bytes]:
        threads.append(threading.current_thread())
        return 200, "text/plain", b""

    server = serve(answer)
    request(server.port, "/here")
    [thread] = threads
    assert thread is not threading.current_thread()
    assert thread.daemon


def test_an_ipv6_host_is_served(serve: Serve) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = serve(text("six"), host="[::1]")
    assert request(server.port, "/here", host="::1") == (200, "text/plain", b"six")


def test_a_silent_client_is_dropped_after_the_timeout_and_others_are_answered(
        serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint._Handler, "timeout", 0.2)  # 5 s otherwise
    server = serve(text("yes"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        assert request(server.port, "/here")[0] == 200  # while the silent one is held
        started = time.monotonic()
        assert silent.recv(1) == b""  # the server hung up on it
        assert time.monotonic() - started < 2.0


def test_stop_frees_the_port_and_a_second_stop_does_nothing(serve: Serve) -> None:
    first = serve(text("first"))
    port = first.port
    assert request(port, "/here")[0] == 200
    first.stop()
    with pytest.raises(ConnectionRefusedError):
        request(port, "/here")
    first.stop()
    again = serve(text("second"), port=port)
    assert again.port == port
    assert request(port, "/here")[2] == b"second"


def test_stop_before_start_does_nothing_and_start_twice_is_refused() -> None:
    server = endpoint.Endpoint("http://127.0.0.1:0/here", text(""), expected="-")
    server.stop()
    assert server.port == 0  # the one asked for, until started
    server.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    finally:
        server.stop()


def test_stop_does_not_wait_long(serve: Serve) -> None:
    server = serve(text(""))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 0.5


def test_a_busy_port_is_reported_with_the_url() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = endpoint.Endpoint(f"http://127.0.0.1:{taken.getsockname()[1]}/here",
                                   text(""), expected="-")
        with pytest.raises(OSError) as raised:
            server.start()
        assert any(server.url in note for note in raised.value.__notes__)
        server.stop()


@pytest.mark.parametrize(("url", "reason"), [
    ("https://0.0.0.0:8080/here", "the scheme is not http"),
    ("0.0.0.0:8080/here", "the scheme is not http"),
    ("http://:8080/here", "the host is missing"),
    ("http://0.0.0.0/here", "the port is missing"),
    ("http://0.0.0.0:http/here", "the port is not a number"),
    ("http://0.0.0.0:70000/here", "the port is not a number"),
])
def test_a_bad_url_names_itself_what_is_wrong_and_the_callers_form(
        url: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        endpoint.parse(url, expected="http://HOST:PORT/here")
    assert str(raised.value).endswith("; expected http://HOST:PORT/here")
    assert repr(url) in str(raised.value)
    assert reason in str(raised.value)


def test_a_good_url_parses_to_host_port_and_path() -> None:
    assert endpoint.parse("http://127.0.0.1:8080/healthz", expected="-") == (
        "127.0.0.1", 8080, "/healthz")
    assert endpoint.parse("http://[::]:9090", expected="-") == ("::", 9090, "/")


def test_requests_are_logged_at_debug_not_written_to_stderr(
        serve: Serve, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kubeledger.endpoint")
    server = serve(text(""))
    request(server.port, "/here")
    request(server.port, "/nowhere")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as garbled:
        garbled.sendall(b"NONSENSE\r\n\r\n")
        garbled.recv(1024)
    assert capfd.readouterr().err == ""
    lines = [record.getMessage() for record in caplog.records
             if record.name == "kubeledger.endpoint"]
    assert any("/nowhere" in line and "404" in line for line in lines)
    assert any("400" in line for line in lines)
    assert all(record.levelno == logging.DEBUG for record in caplog.records
               if record.name == "kubeledger.endpoint")
