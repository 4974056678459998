"""Does kubeledger keep pace with the apiserver? The burst and steady phases of the stack bench.

Run by :mod:`bench.stack_run` on a stack whose operator is already recording live:

- **burst**: ``BURST_CHANGES`` changes (an env var set) over ``DEPLOYMENTS`` Deployments
  without pods, from 16 concurrent clients acting as alice and bob, sent as fast as the
  apiserver accepts them. Three clocks start at the first write: when the bare watch
  (the pace reference, :class:`bench.pace.RawWatch`) has seen every change, when every
  AuditRecord exists, when every document is searchable in Elasticsearch.
  ``burst_ratio_records`` is the first divided by the second, ``burst_ratio_es`` the
  first divided by the third: 1.0 is as fast as the watch itself.
- **steady**: ``STEADY_RATE`` changes per second for ``STEADY_SECONDS``; the latency of
  each change, from the write's answer to its record (and to its document). The
  orchestrator runs it twice: with the operator waiting for audit events (the default),
  and restarted with ``KUBELEDGER_AUDIT_WAIT_SECONDS=0`` (the admission webhook's
  identity, taken at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.pace import (
    Arrivals,
    Writers,
    changes_for,
    follow_documents,
    outcome,
    still_fine,
    wait_recorded,
    wait_watched,
)

DEPLOYMENTS = int(os.environ.get("BENCH_DEPLOYMENTS", "200"))
BURST_CHANGES = int(os.environ.get("BENCH_BURST_CHANGES", "2000"))
STEADY_RATE = 100.0
STEADY_SECONDS = float(os.environ.get("BENCH_STEADY_SECONDS", "20"))


@dataclass
class PacePhases:
    """What the burst and steady phases work with: the arrivals, the writers, the targets;
    ``check`` raises when waiting for records is pointless (the operator exited)."""

    arrivals: Arrivals
    writers: Writers
    targets: list[str]
    elasticsearch: Any
    check: Callable[[], None] = still_fine

    def burst(self) -> dict[str, float]:
        return self.run("burst", count=BURST_CHANGES, rate=None)

    def steady(self, name: str) -> dict[str, float]:
        return self.run(name, count=int(STEADY_RATE * STEADY_SECONDS), rate=STEADY_RATE)

    def run(self, name: str, *, count: int, rate: float | None) -> dict[str, float]:
        """One phase: ``count`` changes (at ``rate`` per second, or all at once)."""
        print(f"{name}: {count} changes over {len(self.targets)} Deployments "
              + (f"at {rate:g}/s" if rate else "as fast as accepted"), flush=True)
        changes = changes_for(name, self.targets, count)
        # Searched for while the changes are sent and recorded, so that each document's
        # time is when it became searchable, not when the search began.
        with ThreadPoolExecutor(1, thread_name_prefix="documents") as searching:
            documenting = searching.submit(
                follow_documents, self.arrivals, {change.value for change in changes},
                self.elasticsearch, check=self.check)
            sent = self.writers.send(changes, rate=rate)
            values = set(sent.answered)
            wait_recorded(self.arrivals, values, check=self.check)
            documented = documenting.result()
        wait_watched(self.arrivals, values)
        return outcome(changes, sent, self.arrivals, documented)
