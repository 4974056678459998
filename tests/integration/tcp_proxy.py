"""A TCP proxy on 127.0.0.1 that a test can make stop answering, to fake a dead network.

Put between a client and a server (the operator and the apiserver, the apiserver and the
operator's webhook), it passes bytes both ways until told otherwise:

- ``freeze_open()``: every connection open now stops passing bytes, and stays open, the
  way a connection whose peer vanished behind a NAT or a firewall does. New connections
  pass as before, so a client that gives up on a hung one and connects again gets through.
- ``hold()`` / ``release()``: while held, no connection, old or new, passes anything: a
  server that accepts and then never answers.

TLS goes through untouched (the proxy never reads the bytes), so the client checks the
server's certificate as if connected directly: it must carry 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

CHUNK = 64 * 1024
JOIN_SECONDS = 5.0


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket
    # Set while bytes may pass; a frozen connection's is never set again.
    flowing: threading.Event = field(default_factory=threading.Event)
    frozen: bool = False

    def close(self) -> None:
        self.flowing.set()  # wakes pumps waiting to pass bytes, which then see the closed sockets
        for sock in (self.client, self.upstream):
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; a context manager that closes it all."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._threads: list[threading.Thread] = []
        self._held = False
        self._closed = False
        self._spawn(self._accept)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def opened(self) -> int:
        """How many connections clients have opened through the proxy so far."""
        with self._lock:
            return len(self._connections)

    def freeze_open(self) -> int:
        """Makes every connection open now hang for good; returns how many there were."""
        with self._lock:
            frozen = [c for c in self._connections if not c.frozen]
            for connection in frozen:
                connection.frozen = True
                connection.flowing.clear()
        return len(frozen)

    def hold(self) -> None:
        with self._lock:
            self._held = True
            for connection in self._connections:
                connection.flowing.clear()

    def release(self) -> None:
        with self._lock:
            self._held = False
            for connection in self._connections:
                if not connection.frozen:
                    connection.flowing.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        self._listener.close()
        for connection in connections:
            connection.close()
        for thread in self._threads:
            thread.join(JOIN_SECONDS)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            connection = _Connection(client, upstream)
            with self._lock:
                if self._closed:
                    connection.close()
                    return
                if not self._held:
                    connection.flowing.set()
                self._connections.append(connection)
            self._spawn(self._pump, connection, client, upstream)
            self._spawn(self._pump, connection, upstream, client)

    @staticmethod
    def _pump(connection: _Connection, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                connection.flowing.wait()
                sink.sendall(data)
            # The end of one direction passes too, once bytes may pass: a frozen
            # connection never tells its client that the server went away.
            connection.flowing.wait()
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the other side, or close(), ended the connection
