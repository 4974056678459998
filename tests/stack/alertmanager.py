"""A real Alertmanager that a test's Prometheus sends alerts to, queried by its HTTP API.

Debian's ``prometheus-alertmanager`` (installed by ``install``; its system service is kept
off), run as a child process like the stack's servers: bound to 127.0.0.1 on a free port,
its cluster gossip off, its PID and log in the stack's ``run/`` and ``logs/``, its config and
data in ``<stack>/<name>/``; stopped by its PID. Like ``prometheus.Prometheus`` it is not
part of ``Stack.up``: the test that needs one starts it (``with Alertmanager(endpoints) as
alertmanager: ...``). Its one receiver sends nowhere: a test reads the alerts that reached
it from ``/api/v2/alerts``.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from stack import cluster
from stack.readiness import http_ok, wait_until
from stack.shell import say

BINARY = Path("/usr/bin/prometheus-alertmanager")


class Alertmanager:
    """One Alertmanager with a single do-nothing receiver."""

    def __init__(self, endpoints: cluster.Endpoints, *, name: str = "alertmanager") -> None:
        self.name = name
        self.directory = endpoints.directory / name
        self.processes = cluster.Stack(endpoints.directory).processes
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Writes the config, starts it with empty data and waits until it is ready."""
        self.processes.stop(self.name)
        data = self.directory / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        config = self.directory / "alertmanager.yml"
        config.write_text(json.dumps({
            "route": {"receiver": "test", "group_wait": "0s", "group_interval": "1s"},
            "receivers": [{"name": "test"}],
        }, indent=2) + "\n")  # JSON is YAML
        (self.port,) = cluster._free_ports(1)  # the stack's own port picker
        say(f"starting Alertmanager on {self.url}")
        self.processes.start(self.name, [
            str(BINARY), f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: a single instance
        ])
        wait_until(lambda: http_ok(f"{self.url}/-/ready"), "Alertmanager", self.processes,
                   self.name)

    def stop(self) -> None:
        """Stops it by its PID (SIGTERM, SIGKILL after a grace period)."""
        self.processes.stop(self.name)
        self.port = None

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds (``labels``, ``annotations``, ``status``, ...)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:  # noqa: S310 (loopback)
            found: list[dict[str, Any]] = json.loads(response.read())
        return found
