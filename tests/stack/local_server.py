"""What the test-only servers (Prometheus, Alertmanager) share: a child process on a free
port of 127.0.0.1, fresh data on each start, stopped by its PID.

Their config and data live in ``<stack>/<name>/``, their PID and log in the stack's ``run/``
and ``logs/``, so ``purge`` removes them with the rest. They are not part of ``Stack.up``:
a test that needs one starts it (``with Server(...) as server: ...``).
"""

from __future__ import annotations

import abc
import json
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from stack import cluster
from stack.readiness import http_ok, wait_until


class LocalServer(abc.ABC):
    """One such server; ``title`` names it in messages."""

    title = "server"

    def __init__(self, endpoints: cluster.Endpoints, name: str) -> None:
        self.name = name  # of its directory, PID file and log: several may run side by side
        self.directory = endpoints.directory / name
        self.processes = cluster.Stack(endpoints.directory).processes
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self, config_name: str, config: dict[str, Any]) -> tuple[Path, Path]:
        """Stops what an earlier run left, writes the config, empties the data directory
        and picks a port; returns the config file and the data directory."""
        self.processes.stop(self.name)
        data = self.directory / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        path = self.directory / config_name
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        (self.port,) = cluster._free_ports(1)  # the stack's own port picker
        return path, data

    def _launch(self, argv: list[str]) -> None:
        """Starts the process and waits until it answers ``/-/ready``."""
        self.processes.start(self.name, argv)
        wait_until(lambda: http_ok(f"{self.url}/-/ready"), self.title, self.processes,
                   self.name)

    def stop(self) -> None:
        """Stops it by its PID (SIGTERM, SIGKILL after a grace period); its data stays."""
        self.processes.stop(self.name)
        self.port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @abc.abstractmethod
    def start(self) -> None:
        """Starts it (see ``_prepare`` and ``_launch``) and waits until it is ready."""
