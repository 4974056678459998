"""Writing the delivered head of the chain down as a checkpoint, now and then.

The shipper tells a ``Checkpointer`` each time its delivery position moves (and when
idle). The first delivered head after start-up is written at once, later ones at most
once per interval: checkpoints stay few (a dozen an hour by default) while a chain
rebuilt from scratch is caught against the last one (``core.checkpoints``). A failed
checkpoint is told once per outage and tried again later; it never holds delivery up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kubeledger import backoff, metrics, sinks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    """The last delivered record: its chain sequence, hash and name."""

    sequence: int
    hash: str
    record: str


class Checkpointer:
    """Anchors the delivered head in one sink, at most once per ``interval`` seconds."""

    def __init__(self, sink: sinks.Sink, *, interval: float) -> None:
        self._sink = sink
        self._interval = interval
        self._written = 0  # the sequence of the last checkpoint written
        self._due = 0.0  # monotonic time from which the next may be written
        self._retry = backoff.Backoff()
        self._outage = backoff.Outage(backoff.Messages(
            failing=f"cannot write a checkpoint to {sink.name}",
            recovered=f"checkpoints written to {sink.name} again",
            meanwhile="delivery goes on; the checkpoint is tried again later"))

    async def delivered(self, head: Head | None) -> None:
        """Writes ``head`` down if it is new and a checkpoint is due."""
        now = time.monotonic()
        if head is None or head.sequence <= self._written or now < self._due:
            return
        try:
            await self._sink.anchor(head.sequence, head.hash, head.record)
        except Exception as error:  # any failure of the sink is retried
            self._outage.failed(error)
            self._due = now + self._retry.delay()
            return
        self._outage.ended()
        self._retry.reset()
        self._written = head.sequence
        self._due = now + self._interval
        metrics.CHECKPOINT_SEQUENCE.labels(self._sink.name).set(head.sequence)
        logger.debug("checkpoint of sequence %d written to %s", head.sequence, self._sink.name)
