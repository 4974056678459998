"""Who wrote, as the apiserver's audit log says: joined to watch events by uid + resourceVersion.

The audit webhook receiver passes every ``audit.k8s.io/v1`` EventList the apiserver sends to
:meth:`AuditLog.ingest`; the attribution asks :meth:`AuditLog.wait_for` (or
:meth:`AuditLog.wait_for_deletion`) when the watch delivers a change. The apiserver batches
audit events, so the event of a write often arrives a second or so *after* its watch event:
waiting is part of the lookup.

Only successful writes to audited resources (of AuditRecords: deletions) at stage
``ResponseComplete`` are kept, and only when the response object names the object's uid
and new resourceVersion (audit level ``RequestResponse``): that pair is an exact join key
with the watch event. A write through a subresource (``deployments/scale``) answers with
the Deployment's uid and resourceVersion, so it joins the same way. Server-side dry runs
are skipped: their response repeats the current resourceVersion and would impersonate
the write that made it.

Request and response bodies may hold secrets. Of the response object, only what a record
is made of is kept (``identity.written``: a writer that takes over replays the writes made
while nobody watched), in this process; only the identity fields are relayed to the other
replicas (``peers``): ``ingest`` returns them as plain mappings and ``adopt`` takes a peer's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubeledger.core import kinds
from kubeledger.core.redaction import Redactor
from kubeledger.identity import expiring, written
from kubeledger.identity.user import User

# Every kind that can be audited, switched on or not: an event of a kind not watched
# only waits in the store until it expires.
AUDITED_RESOURCES = frozenset(resource.plural for resource in kinds.every_audited())
# Resources whose deletions alone are kept: a record deleted outside retention becomes a
# record itself (``recording.break_glass``), while records' creations are the operator's.
AUDITED_DELETIONS = frozenset({kinds.RECORDS.plural})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
# The resourceVersion slot of a deletion's key: deletions are looked up by uid alone.
DELETION = "DELETE"

Key = tuple[str, str]  # (uid, resourceVersion or DELETION)


@dataclass(frozen=True)
class AuditIdentity:
    """Who made one write, as the audit event tells it."""

    # The user who authenticated.
    user: User
    # The user they acted as (``kubectl --as``), when impersonating.
    impersonated: User | None = None
    source_ips: tuple[str, ...] = ()
    user_agent: str | None = None

    @property
    def effective(self) -> User:
        """The user the write was made as: the impersonated one, if any."""
        return self.impersonated or self.user

    def shared(self, key: Key) -> dict[str, Any]:
        return {"uid": key[0], "resourceVersion": key[1], "user": self.user.info(),
                "impersonated": self.impersonated.info() if self.impersonated else None,
                "sourceIPs": list(self.source_ips), "userAgent": self.user_agent}

    @classmethod
    def from_shared(cls, shared: Mapping[str, Any]) -> tuple[Key, AuditIdentity]:
        impersonated = shared.get("impersonated")
        return (str(shared["uid"]), str(shared["resourceVersion"])), cls(
            user=User.from_info(shared["user"]),
            impersonated=User.from_info(impersonated) if impersonated else None,
            source_ips=tuple(shared.get("sourceIPs") or ()),
            user_agent=shared.get("userAgent"))


class AuditLog:
    """Recent audited writes by (uid, resourceVersion), bounded and expiring."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        # As long as the written states: a replayed write is attributed from here.
        ttl: float = written.TTL_SECONDS,
        clock: expiring.Clock = time.monotonic,
        redactor: Redactor | None = None,
    ) -> None:
        self._store: expiring.ExpiringStore[Key, AuditIdentity] = expiring.ExpiringStore(
            max_entries=max_entries, ttl=ttl, clock=clock)
        # The objects as written, redacted, for a writer that takes over
        # (``recording.replay``); not kept without a redactor.
        self.written = (None if redactor is None
                        else written.WrittenStates(redactor, ttl=ttl, clock=clock))
        # Lookups waiting for an event not yet received, by the key they wait for.
        self._waiters: dict[Key, list[asyncio.Future[AuditIdentity]]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def ingest(self, event_list: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Keeps the identities of an EventList's audited writes; returns what was kept.

        In the form ``adopt`` takes: for the other replicas.
        """
        kept = []
        for event in event_list.get("items") or ():
            found = _keyed_identity(event)
            if found is None:
                continue
            if self._keep(*found):
                kept.append(found[1].shared(found[0]))
            if found[0][1] != DELETION and self.written is not None:
                # Even when a peer relayed the identity first: only this replica has the
                # state (a twice-kept write counts once when replayed).
                self.written.keep(event["verb"], event.get("responseObject") or {})
        return kept

    def adopt(self, shared: Mapping[str, Any]) -> None:
        """Keeps an identity another replica's receiver was told (``ingest``'s result there)."""
        self._keep(*AuditIdentity.from_shared(shared))

    def _keep(self, key: Key, identity: AuditIdentity) -> bool:
        # The first event of a key is the write that made it: later ones with the same
        # key are no-op updates (same resourceVersion) or repeated deletes of an object
        # held by finalizers.
        if self._store.get(key):
            return False
        self._store.add(key, identity)
        self._wake(key, identity)
        return True

    def lookup(self, uid: str, resource_version: str) -> AuditIdentity | None:
        """Who wrote ``resource_version`` of the object ``uid``, if the event is here."""
        return self._first((uid, resource_version))

    def lookup_deletion(self, uid: str) -> AuditIdentity | None:
        """Who deleted the object ``uid``, if the event is here."""
        return self._first((uid, DELETION))

    async def wait_for(
        self, uid: str, resource_version: str, timeout: float
    ) -> AuditIdentity | None:
        """:meth:`lookup`, waiting up to ``timeout`` seconds for a late event."""
        return await self._wait((uid, resource_version), timeout)

    async def wait_for_deletion(self, uid: str, timeout: float) -> AuditIdentity | None:
        """:meth:`lookup_deletion`, waiting up to ``timeout`` seconds for a late event."""
        return await self._wait((uid, DELETION), timeout)

    def _first(self, key: Key) -> AuditIdentity | None:
        identities = self._store.get(key)
        return identities[0] if identities else None

    async def _wait(self, key: Key, timeout: float) -> AuditIdentity | None:
        found = self._first(key)
        if found is not None or timeout <= 0:
            return found
        arrival: asyncio.Future[AuditIdentity] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(arrival)
        try:
            return await asyncio.wait_for(arrival, timeout)
        except TimeoutError:
            return None
        finally:
            self._forget_waiter(key, arrival)

    def _wake(self, key: Key, identity: AuditIdentity) -> None:
        for arrival in self._waiters.pop(key, ()):
            if not arrival.done():
                arrival.set_result(identity)

    def _forget_waiter(self, key: Key, arrival: asyncio.Future[AuditIdentity]) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None and arrival in waiters:
            waiters.remove(arrival)
            if not waiters:
                del self._waiters[key]


def _keyed_identity(event: Mapping[str, Any]) -> tuple[Key, AuditIdentity] | None:
    """The join key and identity of an audit event, None when it is not a kept write."""
    if not _is_audited_write(event):
        return None
    key = _key(event)
    if key is None:
        return None
    impersonated = event.get("impersonatedUser")
    return key, AuditIdentity(
        user=User.from_info(event.get("user") or {}),
        impersonated=User.from_info(impersonated) if impersonated else None,
        source_ips=tuple(event.get("sourceIPs") or ()),
        user_agent=event.get("userAgent") or None,
    )


def _is_audited_write(event: Mapping[str, Any]) -> bool:
    code = (event.get("responseStatus") or {}).get("code")
    return (
        event.get("stage") == "ResponseComplete"
        and event.get("verb") in WRITE_VERBS
        and _is_audited(event.get("verb"), (event.get("objectRef") or {}).get("resource"))
        and isinstance(code, int) and 200 <= code < 300
        and not _is_dry_run(event.get("requestURI") or "")
    )


def _is_audited(verb: object, resource: object) -> bool:
    return resource in AUDITED_RESOURCES or (verb == "delete" and resource in AUDITED_DELETIONS)


def _is_dry_run(request_uri: str) -> bool:
    return bool(parse_qs(urlsplit(request_uri).query).get("dryRun"))


def _key(event: Mapping[str, Any]) -> Key | None:
    response = event.get("responseObject") or {}
    metadata = response.get("metadata") or {}
    if event.get("verb") == "delete":
        # Most deletions answer with a Status naming the uid; deletions held up by
        # finalizers answer with the object itself.
        details = response.get("details") or {}
        uid = details.get("uid") if response.get("kind") == "Status" else metadata.get("uid")
        return (uid, DELETION) if uid else None
    uid, resource_version = metadata.get("uid"), metadata.get("resourceVersion")
    return (uid, resource_version) if uid and resource_version else None
