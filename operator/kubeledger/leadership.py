"""Leader election on a ``coordination.k8s.io/v1`` Lease: one writer of the chain, fenced.

Every replica runs an ``Election`` on the same Lease in the operator's namespace. The one
that holds it watches and writes records; the others are standbys: they serve the
webhook and the audit receiver, and try to take the Lease every ``retry_period``.

The timing rules are client-go's (``k8s.io/client-go/tools/leaderelection``), which the
apiserver's own controllers use, and never compare the clocks of two machines:

- The holder renews every ``retry_period``. When no renewal has succeeded for
  ``renew_deadline``, it is no longer the leader.
- A standby takes a held Lease only after it has seen the Lease unchanged for
  ``lease_duration``, measured on its own monotonic clock from the moment it *saw* the
  last change.
- Fencing: the holder may write only until ``renew_deadline`` after the *start* of its
  last successful renewal (``authority_left``). That renewal reached the apiserver after
  it started and a standby saw it later still, so the holder's authority ends at least
  ``lease_duration - renew_deadline`` before a standby can take over: two writers never
  overlap, even when the holder is cut off from the apiserver and cannot tell anyone.
- A holder that stops releases the Lease (empty ``holderIdentity``), so a standby takes
  over at its next try instead of waiting out the lease duration.

What the new holder found in the Lease (``Predecessor``) says how long nobody wrote and
whether the previous holder handed over: the replay of the audit stream needs both
(``recording.replay``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubeledger import metrics
from kubeledger.core import kinds
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)

# Up to this fraction of ``retry_period`` is added to each standby's wait, so standbys
# that started together do not all ask at the same instant.
RETRY_JITTER = 0.2
# Attempts to hand the Lease back on a stop, each after a write conflict (a renewal).
RELEASE_TRIES = 3


@dataclass(frozen=True)
class Predecessor:
    """The Lease as the new holder found it: the previous holder's last renewal (or its
    release), on that holder's clock, and whether it handed the Lease back."""

    renewed: datetime | None
    handed_over: bool


class LeaseRefusedError(RuntimeError):
    """The operator may not read or write its Lease: RBAC must be fixed before it can run."""


@dataclass(frozen=True)
class Timing:
    """Seconds; ``lease_duration > renew_deadline > retry_period > 0`` (``config`` checks)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class Election:
    """This replica's part in the election of the one writer."""

    def __init__(self, api: Kubernetes, *, namespace: str, name: str, identity: str,
                 timing: Timing, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._timing = timing
        self._clock = clock
        # Monotonic time until which this replica may write; 0 when it does not lead.
        self._authority_until = 0.0
        # The Lease's holder and renewal as last seen, and when they were first seen so.
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        # Set when leadership ends without ``release`` (a renewal failed, or was lost).
        self.lost = asyncio.Event()
        self._released = False  # handed back by ``release``: ``keep`` ends quietly
        # What the Lease said when this replica took it; None when it created the Lease.
        self.predecessor: Predecessor | None = None

    @property
    def leading(self) -> bool:
        return self.authority_left() > 0

    def authority_left(self) -> float:
        """Seconds this replica may still write (the fence); 0 when it is not the leader."""
        return max(0.0, self._authority_until - self._clock())

    async def acquire(self) -> bool:
        """Returns once this replica holds the Lease; a standby waits here.

        True when it had to wait (it was a standby first), False when it led at once.
        """
        waiting_on: str | None = None
        waited = False
        while not await self._try_to_hold_at_start():
            waited = True
            holder = self._observed[0] if self._observed else ""
            if holder != waiting_on:
                logger.info("standing by: the lease %s/%s is held by %s", self._namespace,
                            self._name, holder or "nobody")
                waiting_on = holder
            jitter = random.uniform(0, RETRY_JITTER)  # noqa: S311 (spreading, not secrecy)
            await asyncio.sleep(self._timing.retry_period * (1 + jitter))
        metrics.LEADER.set(1)
        logger.info("leading: holding the lease %s/%s as %s", self._namespace, self._name,
                    self.identity)
        return waited

    async def keep(self) -> None:
        """Renews the Lease while leading; returns (with ``lost`` set) when leadership ends."""
        while self.leading:
            await asyncio.sleep(self._timing.retry_period)
            if self._released:
                return  # handed over on purpose (a stop): nothing was lost
            try:
                # A renewal that outlives the authority it would extend is of no use.
                held = await asyncio.wait_for(self._try_to_hold(),
                                              timeout=max(self.authority_left(), 0.001))
            except (errors.KubeError, TimeoutError) as error:
                if self._released:
                    return
                logger.warning("could not renew the lease (%s); %.1fs of authority left",
                               error, self.authority_left())
                continue
            if not held and self._observed is not None and self._observed[0] != self.identity:
                self._authority_until = 0.0  # another replica holds it now
            # Else a Conflict with a renewal of this replica's own that was given up on
            # but landed after all: the next attempt reads the Lease again.
        if self._released:
            return
        metrics.LEADER.set(0)
        logger.error("lost the lease %s/%s: stopped writing", self._namespace, self._name)
        self.lost.set()

    async def release(self) -> None:
        """Stops writing, then hands the Lease back so a standby takes over at once.

        Asked of the Lease itself, not of ``leading``: an attempt to take it that was
        cancelled may still have written this replica's name into it.
        """
        self._released = True
        self._authority_until = 0.0
        metrics.LEADER.set(0)
        for _ in range(RELEASE_TRIES):
            try:
                await self._hand_back()
                return
            except errors.Conflict:
                continue  # a renewal still in flight wrote the Lease first: read it again
            except errors.KubeError as error:
                # Not fatal: a standby takes over once the lease duration has passed.
                logger.warning("could not release the lease: %s", error)
                return
        logger.warning("could not release the lease: it kept changing while handed back")

    async def _hand_back(self) -> None:
        """Empties the Lease's holder if it is still this replica (read at its version)."""
        lease = await self._api.get(kinds.LEASES, self._name, namespace=self._namespace)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return  # another replica holds it, or nobody: nothing to hand back
        await self._api.replace(kinds.LEASES, self._body(lease, {
            **spec, "holderIdentity": "", "leaseDurationSeconds": 1,
            "renewTime": _micro_time()}))
        logger.info("released the lease %s/%s", self._namespace, self._name)

    async def _try_to_hold_at_start(self) -> bool:
        """``_try_to_hold`` for a standby: a refusal stops the start, an outage is waited out."""
        try:
            return await self._try_to_hold()
        except errors.Refused as error:
            raise LeaseRefusedError(
                f"the operator may not use its Lease {self._namespace}/{self._name} "
                f"({error.summary}): bind its service account to the chart's Role "
                "(rbac.create=true)") from None
        except errors.KubeError as error:
            logger.warning("could not read the lease %s/%s (%s); trying again",
                           self._namespace, self._name, error)
            return False

    async def _try_to_hold(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it now."""
        started = self._clock()
        try:
            lease = await self._api.get(kinds.LEASES, self._name, namespace=self._namespace)
        except errors.NotFound:
            return await self._write(None, self._spec(transitions=0, acquired=_micro_time()),
                                     started)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(holder, spec.get("renewTime") or "", spec.get("leaseTransitions"))
        duration = float(spec.get("leaseDurationSeconds") or self._timing.lease_duration)
        if holder and holder != self.identity and (
                self._clock() - self._observed_at < duration):
            return False  # held by another replica, which may still be writing
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            renewed = self._spec(transitions=transitions,
                                 acquired=spec.get("acquireTime") or _micro_time())
            return await self._write(lease, renewed, started)
        taken = await self._write(
            lease, self._spec(transitions=transitions + 1, acquired=_micro_time()), started)
        if taken:
            self.predecessor = Predecessor(_parse_time(spec.get("renewTime")),
                                           handed_over=not holder)
        return taken

    async def _write(self, lease: Mapping[str, Any] | None, spec: dict[str, Any],
                     started: float) -> bool:
        try:
            if lease is None:
                await self._api.create(kinds.LEASES, self._body(None, spec))
            else:
                await self._api.replace(kinds.LEASES, self._body(lease, spec))
        except errors.Conflict:
            return False  # another replica wrote the Lease first
        if self._released:
            # A renewal answered after ``release`` began: the Lease is being handed on,
            # and this replica must not take its authority back.
            return False
        self._authority_until = started + self._timing.renew_deadline
        metrics.LEASE_TRANSITIONS.set(spec["leaseTransitions"])
        return True

    def _observe(self, holder: str, renewed: str, transitions: Any) -> None:
        if (holder, renewed) != self._observed:
            self._observed = (holder, renewed)
            self._observed_at = self._clock()
        if isinstance(transitions, int):
            metrics.LEASE_TRANSITIONS.set(transitions)

    def _spec(self, *, transitions: int, acquired: str) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            # The API takes whole seconds; rounding up never shortens a standby's wait.
            "leaseDurationSeconds": -int(-self._timing.lease_duration // 1),
            "acquireTime": acquired,
            "renewTime": _micro_time(),
            "leaseTransitions": transitions,
        }

    def _body(self, lease: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if lease is not None:
            # Replacing at the version read: a concurrent writer makes this a Conflict.
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {"apiVersion": kinds.LEASES.api_version, "kind": kinds.LEASES.kind,
                "metadata": metadata, "spec": dict(spec)}


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _micro_time() -> str:
    """Now, as the API's MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
