"""Waiting for a started server to answer, and failing early with its log when it dies."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from stack.processes import ProcessTable

READY_TIMEOUT_SECONDS = 180.0


def http_ok(
    url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
) -> bool:
    """True when ``url`` answers 200."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (local URLs only)
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(ready: Callable[[], bool], what: str, processes: ProcessTable, name: str) -> None:
    """Waits for ``ready``; raises with the tail of the process log if it dies or times out."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ready():
            return
        if processes.running(name) is None:
            break
        time.sleep(0.25)
    log = processes.log_file(name)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    raise RuntimeError(f"{what} did not become ready; see {log}:\n{tail}")
