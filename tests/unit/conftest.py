"""Unit-test settings: retries back off for milliseconds, not seconds."""

from __future__ import annotations

import pytest

from kubeledger import backoff


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "FIRST_DELAY_SECONDS", 0.001)
    monkeypatch.setattr(backoff, "MAX_DELAY_SECONDS", 0.004)
