"""A bounded memory whose entries expire: what the admission and audit caches are built on.

Identity facts arrive shortly before (admission) or shortly after (audit) the watch event
they belong to, and only that window matters. Every entry lives ``ttl`` seconds at most,
and at most ``max_entries`` are held, so a burst of writes nobody looks up (or an
apiserver sending more than expected) cannot grow memory without bound.

All entries share one lifetime, so insertion order is also expiry order: expiring and
evicting both take from the old end of one ordered dict, which keeps every operation
amortised O(1) plus O(entries of the key looked at). Not thread-safe; it lives on the
operator's event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


@dataclass(eq=False)  # identity semantics: two entries with equal values stay distinct
class _Entry(Generic[K, V]):
    key: K
    value: V
    expires_at: float


class ExpiringStore(Generic[K, V]):
    """Several values per key, oldest first; each expires ``ttl`` seconds after it was added.

    ``clock`` is a monotonic clock in seconds (injectable so tests control time).
    """

    def __init__(
        self, *, max_entries: int = 10_000, ttl: float = 120.0, clock: Clock = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("an expiring store needs max_entries >= 1 and ttl > 0")
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        # Every live entry, oldest first: the order in which they expire or are evicted.
        self._order: OrderedDict[_Entry[K, V], None] = OrderedDict()
        self._by_key: dict[K, list[_Entry[K, V]]] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._order)

    def add(self, key: K, value: V) -> None:
        """Remembers ``value`` under ``key``, evicting the oldest entry when full."""
        self._expire()
        if len(self._order) >= self._max_entries:
            oldest, _ = self._order.popitem(last=False)
            self._unlink(oldest)
        entry = _Entry(key, value, self._clock() + self._ttl)
        self._order[entry] = None
        self._by_key.setdefault(key, []).append(entry)

    def get(self, key: K) -> tuple[V, ...]:
        """The unexpired values of ``key``, oldest first."""
        self._expire()
        return tuple(entry.value for entry in self._by_key.get(key, ()))

    def remove(self, key: K, value: V) -> None:
        """Forgets one value of ``key`` (the very object :meth:`get` returned)."""
        for entry in self._by_key.get(key, ()):
            if entry.value is value:
                del self._order[entry]
                self._unlink(entry)
                return

    def _expire(self) -> None:
        now = self._clock()
        while self._order:
            oldest = next(iter(self._order))
            if oldest.expires_at > now:
                return
            del self._order[oldest]
            self._unlink(oldest)

    def _unlink(self, entry: _Entry[K, V]) -> None:
        siblings = self._by_key[entry.key]
        siblings.remove(entry)
        if not siblings:
            del self._by_key[entry.key]
