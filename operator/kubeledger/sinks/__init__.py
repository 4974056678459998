"""Where records go after the cluster: the ``Sink`` protocol, and one folder per backend.

``sinks.delivery`` ships records from the cluster (the outbox) to any ``Sink``, in chain
order, through outages; ``sinks.elasticsearch`` is the Elasticsearch backend. A sink knows
nothing of the cluster, and the shipper nothing of a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kubeledger.core.model import RecordSpec


class Sink(Protocol):
    """Where records are shipped. ``deliver`` must be idempotent per record name."""

    name: str

    async def prepare(self) -> None:
        """Sets the backend up (templates, policies) before the first delivery."""
        ...

    async def deliver(self, records: Sequence[tuple[str, RecordSpec]]) -> None:
        """Stores every record, or raises; a record stored before counts as delivered."""
        ...

    async def anchor(self, sequence: int, digest: str, record: str) -> None:
        """Writes a checkpoint: the chain's record ``sequence`` (``record``) has hash
        ``digest`` and is delivered. Idempotent per sequence; raises when not written."""
        ...

    async def close(self) -> None: ...
