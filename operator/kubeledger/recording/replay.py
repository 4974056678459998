"""Recording, one by one, the changes made while no writer watched, from the audit stream.

The apiserver's audit webhook backend (batch mode) retries a batch it could not deliver:
five attempts, the first after ``--audit-webhook-initial-backoff`` (``b``, 10 s by
default), each wait 1.5 times the one before and up to 20 % longer (jitter): the waits
are b, 1.5b, 2.25b, 3.375b, so a batch is given up 8.125 b (81 s) after its first
attempt at the earliest (``k8s.io/apiserver``: ``plugin/pkg/audit/webhook``,
``pkg/util/webhook.DefaultRetryBackoffWithInitialDelay``). Every event carries the object
as written (audit level ``RequestResponse``), so the events of a downtime that come in
once a receiver answers again hold every write of that time, with its identity
(``identity.written`` keeps them).

When the new writer's first listing shows an object changed since its last record, the
recorder waits until every batch still being retried has had its next attempt
(``Replay.wait``), then records each kept write of the object in resourceVersion order
(``plan``), each against the state before it, and only then decides the listing's state
against the last one: equal (the usual case) records nothing more; a difference (a change
whose event never came, or a rollout's progress, which the controller writes through
the status subresource) is recorded after the fact, as before. Every record keeps its
usual name (kind, uid, resourceVersion), so a write seen both ways is recorded once.

A listing later in a writer's life (kopf lists a kind again when its watch cannot
resume: 410 Gone after etcd compacted, an apiserver restart) is replayed the same way
(``Replay.live``), from the events that came in meanwhile.

What is not known stays after the fact, never guessed:

- a downtime longer than the apiserver's retries (``horizon``): some batches were given
  up, so no write of the downtime is replayed (``Replay.starting`` says so);
- the first kept write of an object when the previous writer did not hand the Lease over
  (it was killed): a write it had been told of but not yet recorded may lie between its
  last record and that write, so that state is recorded after the fact (with the
  identity of its own write, as a listing's records always had); its successors are
  exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeledger.identity.written import WrittenState, WrittenStates, scaled

logger = logging.getLogger(__name__)

# The apiserver's backoff (``DefaultRetryBackoffWithInitialDelay``): factor, jitter, steps.
FACTOR = 1.5
JITTER = 0.2
ATTEMPTS = 5
DEFAULT_INITIAL_BACKOFF_SECONDS = 10.0


def waits(initial_backoff: float) -> list[float]:
    """The shortest waits between the apiserver's attempts at one batch, in order."""
    return [initial_backoff * FACTOR ** step for step in range(ATTEMPTS - 1)]


def horizon(initial_backoff: float) -> float:
    """The least time from a batch's first attempt to its last: the downtime covered."""
    return sum(waits(initial_backoff))


def longest_wait(downtime: float, initial_backoff: float) -> float:
    """The longest a batch that failed during ``downtime`` seconds may take to try again.

    A batch that failed first ``x`` seconds ago is between two attempts whose shortest
    start is at most ``x``; the wait that follows is at most 20 % longer than its base.
    """
    started = 0.0
    longest = 0.0
    for base in waits(initial_backoff):
        if started > downtime:
            break
        longest = base * (1 + JITTER)
        started += base
    return longest


@dataclass(frozen=True)
class Step:
    """One kept write to record: exactly (its own diff), or after the fact when the state
    before it is not known."""

    resource_version: str
    body: dict[str, Any]
    exact: bool


def plan(writes: Iterable[WrittenState], *, recorded: str | None, listed: str,
         handed_over: bool) -> list[Step]:
    """The kept writes of one object to record before its listed state, in order.

    ``recorded`` is the resourceVersion of the object's last record (None: never
    recorded), ``listed`` the listing's. Writes at or before ``recorded`` are recorded
    already, writes after ``listed`` will come through the watch; a write kept twice
    (from two replicas, or sent twice) counts once. ``handed_over``: the previous writer
    released the Lease, so it had recorded what it was told. A write whose state is not
    known (a scale with no known state before it) is not recorded itself, and the next
    state is recorded after the fact: its diff then holds both changes.
    """
    low, high = _number(recorded) if recorded else 0, _number(listed)
    if low is None or high is None:
        return []  # not etcd revisions: their order is unknown, so nothing is replayed
    by_version: dict[int, WrittenState] = {}
    for written in writes:
        number = _number(written.resource_version)
        if number is not None and low < number <= high:
            by_version.setdefault(number, written)
    ordered = [by_version[number] for number in sorted(by_version)]
    known = handed_over
    if recorded is None:
        # Never recorded: only a life seen from its creation on is known whole.
        created = [index for index, written in enumerate(ordered) if written.created]
        if not created:
            return []
        ordered, known = ordered[created[-1]:], True
    steps: list[Step] = []
    before: dict[str, Any] | None = None
    for written in ordered:
        body = written.body
        if body is None and written.replicas is not None and before is not None:
            body = scaled(before, written.replicas, written.resource_version)
        if body is None:
            known, before = False, None  # the state after this write is not known
            continue
        steps.append(Step(written.resource_version, body, exact=known))
        known, before = True, body
    return steps


def _number(resource_version: str) -> int | None:
    try:
        return int(resource_version)
    except ValueError:
        return None


@dataclass(frozen=True)
class Replay:
    """Whether this writer replays the audit stream, and until when it waits for it."""

    written: WrittenStates
    # When retried batches have all tried again (monotonic clock).
    until: float
    handed_over: bool
    # How long any listed change waits for the audit events of its latest writes.
    settle: float = 0.0

    @classmethod
    def live(cls, written: WrittenStates, *, batch_wait: float) -> Replay:
        """The replay of a writer that has been receiving audit events all along.

        kopf lists a kind again when its watch cannot resume (410 Gone after a
        compaction, an apiserver restart): the writes of the gap came in live, but for
        those of the last ``batch_wait`` seconds, which the apiserver may still hold.
        Every write after this writer's own last record is known, so each is exact.
        """
        return cls(written, until=0.0, handed_over=True, settle=batch_wait)

    @classmethod
    def starting(cls, written: WrittenStates, *, previous_renewal: datetime | None,
                 handed_over: bool, now: datetime, initial_backoff: float,
                 batch_wait: float) -> Replay | None:
        """The replay of a writer taking over now, or None when it cannot be trusted.

        ``previous_renewal``: the Lease's renewTime as this writer found it (the previous
        writer's last sign of life, or its release); None when there was no Lease.
        ``batch_wait``: how long the apiserver may hold an event before a batch's first
        attempt (``--audit-webhook-batch-max-wait``, the live audit wait covers it).
        """
        if previous_renewal is None:
            return None  # the first writer here: nothing was recorded to continue from
        downtime = max(0.0, (now - previous_renewal).total_seconds())
        covered = horizon(initial_backoff)
        if downtime > covered:
            logger.warning(
                "no writer for %.0fs, longer than the apiserver retries audit batches "
                "(%.0fs with an initial backoff of %gs): changes of that time are recorded "
                "after the fact", downtime, covered, initial_backoff)
            return None
        wait = longest_wait(downtime, initial_backoff) + batch_wait
        logger.info("no writer for %.0fs: changes of that time are recorded from the "
                    "audit events the apiserver sends again within %.0fs", downtime, wait)
        return cls(written, until=time.monotonic() + wait, handed_over=handed_over)

    def left(self) -> float:
        """Seconds until every retried batch has tried again (and the latest arrived)."""
        return max(self.settle, self.until - time.monotonic())

    def steps(self, uid: str, *, recorded: str | None, listed: str) -> list[Step]:
        """``plan`` for the object ``uid``, with the writes kept of it."""
        return plan(self.written.of(uid), recorded=recorded, listed=listed,
                    handed_over=self.handed_over)
