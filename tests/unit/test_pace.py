"""A first install's records are paced: evenly spaced, at most the configured rate."""

from __future__ import annotations

import pytest

from kubeledger.recording import recorder


async def test_callers_arriving_together_leave_one_interval_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("kubeledger.recording.recorder.time.monotonic", lambda: 100.0)
    monkeypatch.setattr("kubeledger.recording.recorder.asyncio.sleep", sleep)
    pace = recorder.Pace(50.0)

    for _ in range(4):
        await pace()

    assert slept == pytest.approx([0.02, 0.04, 0.06])  # the first goes at once
