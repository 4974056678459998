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
import urllib.request
from pathlib import Path
from typing import Any

from stack import cluster
from stack.local_server import LocalServer
from stack.shell import say

BINARY = Path("/usr/bin/prometheus-alertmanager")


class Alertmanager(LocalServer):
    """One Alertmanager with a single do-nothing receiver."""

    title = "Alertmanager"

    def __init__(self, endpoints: cluster.Endpoints, *, name: str = "alertmanager") -> None:
        super().__init__(endpoints, name)

    def start(self) -> None:
        """Writes the config, starts it with empty data and waits until it is ready."""
        config, data = self._prepare("alertmanager.yml", {
            "route": {"receiver": "test", "group_wait": "0s", "group_interval": "1s"},
            "receivers": [{"name": "test"}],
        })
        say(f"starting Alertmanager on {self.url}")
        self._launch([
            str(BINARY), f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: a single instance
        ])

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds (``labels``, ``annotations``, ``status``, ...)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:  # noqa: S310 (loopback)
            found: list[dict[str, Any]] = json.loads(response.read())
        return found
