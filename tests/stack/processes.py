"""Background processes tracked by PID files: start once, find again, stop for sure.

Every process of the stack is started in its own session (so it outlives the command
that started it, as ``make dev-up`` needs) with its PID in ``run/<name>.pid`` and its
output in ``logs/<name>.log``. Stopping reads the PID back: SIGTERM, then SIGKILL after
a grace period, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class ProcessTable:
    """The PID and log directories of one stack."""

    run_dir: Path
    log_dir: Path

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Starts ``argv`` detached, records its PID and returns it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(name).open("ab") as log:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )
        self.record(name, process.pid)
        return process.pid

    def record(self, name: str, pid: int) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file(name).write_text(f"{pid}\n")

    def running(self, name: str) -> int | None:
        """The PID of ``name`` if its process is alive, else None (stale PID files are removed)."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        if is_alive(pid):
            return pid
        self.pid_file(name).unlink(missing_ok=True)
        return None

    def stop(self, name: str) -> bool:
        """Stops ``name`` if it runs; True when a process was stopped."""
        pid = self.running(name)
        if pid is None:
            return False
        terminate(pid)
        self.pid_file(name).unlink(missing_ok=True)
        return True


def is_alive(pid: int) -> bool:
    """True for a live process; a zombie child is reaped and counts as dead."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: only the kill probe below can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        # /proc/PID/stat: "pid (comm) S ..."; comm may contain spaces, so split after ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns once the process is gone."""
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    _signal(pid, signal.SIGKILL)
    while is_alive(pid):
        time.sleep(0.05)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
