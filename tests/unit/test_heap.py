"""Returning freed memory to the system: glibc's malloc_trim where there is glibc, nothing
where there is none; the periodic task calls it again and again."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util

import pytest

from kubeledger import heap


def test_on_glibc_the_trim_is_malloc_trim() -> None:
    trim = heap.trimmer()

    assert trim is not None  # this machine's C library is glibc
    assert trim() in {0, 1}


def test_without_a_c_library_nothing_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)

    assert heap.trimmer() is None


def test_a_c_library_without_malloc_trim_is_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Musl:
        def __init__(self, name: str) -> None:
            self.name = name

    monkeypatch.setattr(ctypes, "CDLL", Musl)

    assert heap.trimmer() is None


async def test_the_trim_is_made_again_and_again() -> None:
    calls: list[int] = []

    def trim() -> int:
        calls.append(1)
        return 1

    trimming = asyncio.create_task(heap.trim_periodically(trim, every=0.01))
    try:
        async with asyncio.timeout(5):
            while len(calls) < 3:
                await asyncio.sleep(0.01)
    finally:
        trimming.cancel()
    assert len(calls) >= 3
