"""Where the operator's time goes during a scenario: py-spy samples the process by PID.

``Sampling(pid, output)`` starts ``py-spy record`` (raw collapsed stacks, on-CPU samples
only, without pausing the process); ``stop()`` ends it and returns a ``Profile``, which
names the functions holding most samples, by their own time and inclusive of what they
call. Beside it, ``cpu_seconds(pid)`` reads the process's CPU time from /proc: its
difference over a phase, divided by the phase's length, says how busy the operator was
(1.0 is one core), which tells waiting from computing before any stack is read.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_SECOND = 100
START_TIMEOUT_SECONDS = 30.0
# "function (path/to/file.py:123)": the line is dropped, so a function counts once.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])  # utime, stime (fields 14, 15)
    return (user + system) / os.sysconf("SC_CLK_TCK")


def py_spy() -> str | None:
    """py-spy from the virtualenv (a dev dependency), if installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    """Samples by function: own (the function was running) and inclusive (on the stack)."""

    samples: int
    own: Counter[str]
    inclusive: Counter[str]

    @classmethod
    def read(cls, collapsed: Path) -> Profile:
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in collapsed.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [_short(frame) for frame in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        return cls(total, own, inclusive)

    def table(self, top: int = 12) -> str:
        """The top functions both ways, as percentages of all samples."""
        if not self.samples:
            return "no samples (py-spy saw the operator idle, or could not attach)"
        lines = [f"{self.samples} samples on CPU"]
        # Inclusive time is read for the operator's own functions: the frames every stack
        # shares (the event loop, a thread's start) say nothing.
        ours = Counter({name: n for name, n in self.inclusive.items()
                        if "(kubeledger/" in name and n < self.samples / 2})
        for title, counts in (("own time", self.own), ("inclusive, kubeledger", ours)):
            lines.append(f"  {title}:")
            lines.extend(f"    {100 * n / self.samples:5.1f}%  {name}"
                         for name, n in counts.most_common(top))
        return "\n".join(lines)


class Sampling:
    """A running ``py-spy record`` of one process."""

    @classmethod
    def from_start(cls, pid_of: Callable[[], int | None], output: Path) -> Sampling:
        """Samples the process ``pid_of`` names as soon as it names one (within 50 ms).

        For a start-up: the process is started by a call that returns only once it is
        ready, which is too late to begin sampling.
        """
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while (pid := pid_of()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the process to sample never started")
            time.sleep(0.05)
        return cls(pid, output)

    def __init__(self, pid: int, output: Path) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed: make venv installs it (dev extra)")
        self._output = output
        self._log = output.with_suffix(".log").open("w")
        self._process = subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_SECOND),
             "--format", "raw", "--nonblocking", "--output", str(output)],
            stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> Profile:
        """Ends the recording (SIGINT makes py-spy write its file) and reads it."""
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        return Profile.read(self._output) if self._output.exists() else Profile(
            0, Counter(), Counter())


def _short(frame: str) -> str:
    """``function (package/module.py)``, without the line and the site-packages prefix."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"
