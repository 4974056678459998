"""The objects as written, from the audit events: what a writer replays after a downtime.

An audit event at level ``RequestResponse`` answers a write with the object as it was
persisted. ``identity.audit`` hands every kept create, update and patch of an audited
object here, and a writer that takes over replays the writes made while nobody watched
(``recording.replay``). Only what a record is made of is kept, and redacted as the
record will be: the projection (``core.projection``, which drops
``kubectl.kubernetes.io/last-applied-configuration``), the metadata the record and the
attribution need (managedFields names the tool) and the status fields the rollout's
phase is read from. No secret value is held: a redacted projection redacts to itself.
Bounded and expiring like the identities: events older than the replay can use are of
no use. Held in this process only, never relayed to other replicas.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeledger.core import packing, projection
from kubeledger.core.redaction import Redactor
from kubeledger.identity import expiring

# A downtime's writes, at most: the apiserver's own buffer holds 10,000 events.
MAX_STATES = 5_000
# Long enough for a writer to take over, load its records and wait out the retries.
TTL_SECONDS = 600.0
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp",
                  "generation", "ownerReferences", "managedFields")
# What the projection reads of a workload's status (its rollout phase).
_KEPT_STATUS = ("observedGeneration", "replicas", "updatedReplicas", "availableReplicas",
                "conditions", "phase")


@dataclass(frozen=True)
class WrittenState:
    """One persisted write of an object, as its audit event answered it."""

    resource_version: str
    created: bool  # the write was the object's creation
    # The trimmed body (see the module docstring), packed (``core.packing``), read by
    # ``body``:
    # held as dicts, a write of ``bench.hot_paths``'s Deployment (25 env vars) took
    # 65.6 kB, so a full store about 300 MiB; packed, 4.0 kB. None for a write through
    # the scale subresource, which answers with a Scale: then only the new ``replicas``
    # are known.
    packed: bytes | None
    replicas: int | None = None

    @classmethod
    def of_body(cls, resource_version: str, created: bool,
                body: Mapping[str, Any]) -> WrittenState:
        return cls(resource_version, created, packing.pack(body))

    @property
    def body(self) -> dict[str, Any] | None:
        """The trimmed body, decoded (only a replay reads it)."""
        if self.packed is None:
            return None
        return packing.unpack(self.packed)


class WrittenStates:
    """uid -> the writes of that object the audit stream told of, oldest first."""

    def __init__(self, redactor: Redactor, *, max_entries: int = MAX_STATES,
                 ttl: float = TTL_SECONDS, clock: expiring.Clock = time.monotonic) -> None:
        self._redactor = redactor
        self._store: expiring.ExpiringStore[str, WrittenState] = expiring.ExpiringStore(
            max_entries=max_entries, ttl=ttl, clock=clock)

    def keep(self, verb: str, response: Mapping[str, Any]) -> None:
        metadata = response.get("metadata") or {}
        uid, version = metadata.get("uid"), metadata.get("resourceVersion")
        if not (uid and version):
            return
        if response.get("kind") == "Scale":
            replicas = (response.get("spec") or {}).get("replicas")
            written = WrittenState(str(version), False, None,
                                   replicas if isinstance(replicas, int) else None)
        else:
            written = WrittenState.of_body(str(version), verb == "create",
                                           trimmed(response, self._redactor))
        self._store.add(str(uid), written)

    def of(self, uid: str) -> tuple[WrittenState, ...]:
        return self._store.get(uid)


def trimmed(body: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    """What a record needs of an object, redacted (see the module docstring).

    Its projection is the redacted projection of ``body``.
    """
    redacted = redactor.redact(projection.project(body))
    source = body.get("metadata") or {}
    metadata = {key: source[key] for key in _KEPT_METADATA if key in source}
    metadata.update(redacted.pop("metadata", {}))  # labels and annotations, redacted
    kept: dict[str, Any] = {key: body[key] for key in ("apiVersion", "kind") if key in body}
    kept["metadata"] = metadata
    redacted.pop("rollout", None)  # read again from the status below
    kept.update(redacted)
    status = body.get("status") or {}
    if status:
        kept["status"] = {key: status[key] for key in _KEPT_STATUS if key in status}
    return kept


def scaled(body: Mapping[str, Any], replicas: int, resource_version: str) -> dict[str, Any]:
    """``body`` after a write through its scale subresource set ``replicas``.

    The generation moves as the apiserver moves it (a spec change), so the rollout's
    phase reads as progressing, as the watch would have shown it.
    """
    spec = body.get("spec") or {}
    metadata = dict(body.get("metadata") or {}, resourceVersion=resource_version)
    if spec.get("replicas", 1) != replicas:
        metadata["generation"] = int(metadata.get("generation") or 0) + 1
    return {**body, "metadata": metadata, "spec": {**spec, "replicas": replicas}}
