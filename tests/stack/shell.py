"""Running the installer's external commands, with progress a person can follow.

The first install on a machine builds Kubernetes from source for several minutes; a
silent terminal for that long looks like a hang, so long commands print a heartbeat
line with the elapsed time and the last line of their log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

HEARTBEAT_SECONDS = 30


def say(message: str) -> None:
    """Prints one progress line on stderr, where it does not mix with command output."""
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    stdin: str | None = None,
) -> None:
    """Runs a command to completion; on failure raises with the tail of its log.

    With ``log`` the output goes to that file and a heartbeat is printed while the
    command runs; without it the output is captured and shown only on failure.
    """
    merged_env = {**os.environ, **(env or {})}
    if log is None:
        done = subprocess.run(
            list(argv), cwd=cwd, env=merged_env, input=stdin, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
        )
        if done.returncode != 0:
            raise CommandError(argv, done.returncode, done.stdout)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=merged_env, text=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT,
        )
        if stdin is not None and process.stdin is not None:
            process.stdin.write(stdin)
            process.stdin.close()
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(argv, log, stop), daemon=True)
        beat.start()
        try:
            code = process.wait()
        finally:
            stop.set()
            if process.poll() is None:
                process.kill()
                process.wait()
    if code != 0:
        raise CommandError(argv, code, _tail(log, 40))


def _heartbeat(argv: Sequence[str], log: Path, stop: threading.Event) -> None:
    started = time.monotonic()
    name = Path(argv[0]).name
    while not stop.wait(HEARTBEAT_SECONDS):
        elapsed = int(time.monotonic() - started)
        last = _tail(log, 1).strip()[:100]
        say(f"  … {name} still running ({elapsed // 60}m{elapsed % 60:02d}s): {last}")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class CommandError(RuntimeError):
    """An installer command exited non-zero; the message carries its output's tail."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        super().__init__(f"`{' '.join(argv)}` exited with {code}:\n{output}")
