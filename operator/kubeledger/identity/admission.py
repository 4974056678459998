"""Who is writing, as the admission webhook sees it: remembered until the watch shows the write.

The webhook server (fed by a ``ValidatingWebhookConfiguration`` on the audited resources
and on ``deployments/scale``) passes the ``request`` of every ``admission.k8s.io/v1``
AdmissionReview to :meth:`AdmissionCache.remember`; the attribution asks
:meth:`AdmissionCache.match` when the watch delivers the persisted change.

Admission runs before the write, so it also sees writes that fail later (a conflict,
another webhook's veto). The join therefore checks *what* was admitted: the fingerprint
of the new object's projection (status, managedFields and resourceVersion are not part
of it, so the persisted object fingerprints like the admitted one), or for a write
through the ``scale`` subresource the new replica count. Entries of writes that never
happened just expire. Server-side dry runs are never remembered.

Only the user, the operation and the fingerprint are kept, never the object: admitted
objects hold secrets (env values, the last-applied annotation). That is also all that
is relayed to the other replicas (``peers``): ``remember`` returns it as a plain
mapping and ``adopt`` takes a peer's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeledger.core import chain, projection
from kubeledger.identity import expiring
from kubeledger.identity.user import User

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"
SCALE_SUBRESOURCE = "scale"


@dataclass(frozen=True)
class AdmissionIdentity:
    """The authenticated user of an admitted write (after impersonation, if any)."""

    user: User
    operation: str
    # The field manager the write declared (``kubectl-set``, ``helm``, ...): the tool
    # of exactly this write, where managedFields only tells who wrote last.
    field_manager: str | None = None


@dataclass(frozen=True)
class _Admitted:
    identity: AdmissionIdentity
    # Exactly one of these identifies a CREATE or UPDATE; a DELETE needs neither.
    fingerprint: str | None = None
    replicas: int | None = None

    def shared(self, uid: str) -> dict[str, Any]:
        identity = self.identity
        return {"uid": uid, "user": identity.user.info(), "operation": identity.operation,
                "fieldManager": identity.field_manager, "fingerprint": self.fingerprint,
                "replicas": self.replicas}

    @classmethod
    def from_shared(cls, shared: Mapping[str, Any]) -> tuple[str, _Admitted]:
        identity = AdmissionIdentity(User.from_info(shared["user"]), str(shared["operation"]),
                                     shared.get("fieldManager"))
        return str(shared["uid"]), cls(identity, fingerprint=shared.get("fingerprint"),
                                       replicas=shared.get("replicas"))

    def explains(self, fingerprint: str, replicas: int | None) -> bool:
        """Whether this write could have produced an object with these features."""
        if self.fingerprint is not None:
            return self.fingerprint == fingerprint
        return self.replicas is not None and self.replicas == replicas


class AdmissionCache:
    """Recent admitted writes by object uid, bounded and expiring (see the module docstring)."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl: float = 120.0,
        clock: expiring.Clock = time.monotonic,
    ) -> None:
        self._store: expiring.ExpiringStore[str, _Admitted] = expiring.ExpiringStore(
            max_entries=max_entries, ttl=ttl, clock=clock)

    def __len__(self) -> int:
        return len(self._store)

    def remember(self, review_request: Mapping[str, Any]) -> dict[str, Any] | None:
        """Remembers an AdmissionReview's ``request``; None when it is not worth keeping.

        Returns what was kept, in the form ``adopt`` takes: for the other replicas.
        """
        if review_request.get("dryRun"):
            return None
        admitted = _admitted(review_request)
        if admitted is None:
            return None
        uid, entry = admitted
        self._store.add(uid, entry)
        return entry.shared(uid)

    def adopt(self, shared: Mapping[str, Any]) -> None:
        """Keeps what another replica's webhook was told (``remember``'s result there)."""
        self._store.add(*_Admitted.from_shared(shared))

    def match(
        self, uid: str, body: Mapping[str, Any] | None, operation: str | None = None
    ) -> AdmissionIdentity | None:
        """Who made the change the watch shows, consuming the admitted write that explains it.

        ``body`` is the watched object after the change; a deletion (``body`` None, or
        ``operation`` ``"DELETE"``) is explained by the latest admitted DELETE of ``uid``.
        The most recent explaining write wins: when the same content was admitted twice,
        the earlier attempt is the one more likely to have failed.
        """
        candidates = self._store.get(uid)
        if not candidates:  # the common case: skip fingerprinting the body
            return None
        if body is None or operation == DELETE:
            found = _latest(candidates, lambda entry: entry.identity.operation == DELETE)
        else:
            digest, replicas = fingerprint(body), _replicas(body, default=1)
            found = _latest(candidates, lambda entry: entry.explains(digest, replicas))
        if found is None:
            return None
        self._store.remove(uid, found)
        return found.identity


def fingerprint(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an object's projection."""
    return hashlib.sha256(chain.canonical_json(projection.project(body))).hexdigest()


def _admitted(request: Mapping[str, Any]) -> tuple[str, _Admitted] | None:
    """The uid and entry to remember for an admission request, if it names a known write."""
    operation = request.get("operation")
    sub_resource = request.get("subResource") or ""
    digest: str | None = None
    replicas: int | None = None
    if operation == DELETE and not sub_resource:
        obj = request.get("oldObject") or {}
    elif operation in (CREATE, UPDATE) and sub_resource == SCALE_SUBRESOURCE:
        # An autoscaling/v1 Scale: the Deployment's uid, and the replicas it asks for.
        obj = request.get("object") or {}
        replicas = _replicas(obj, default=0)
    elif operation in (CREATE, UPDATE) and not sub_resource:
        obj = request.get("object") or {}
        digest = fingerprint(obj)
    else:
        # CONNECT, and other subresources (status): nothing people change in a record.
        return None
    uid = (obj.get("metadata") or {}).get("uid")
    if not uid:
        return None
    identity = AdmissionIdentity(User.from_info(request.get("userInfo") or {}), operation,
                                 (request.get("options") or {}).get("fieldManager") or None)
    return uid, _Admitted(identity, fingerprint=digest, replicas=replicas)


def _replicas(obj: Mapping[str, Any], *, default: int) -> int:
    # A Scale omits ``spec.replicas`` when it is 0; a workload defaults it to 1.
    replicas = (obj.get("spec") or {}).get("replicas", default)
    return replicas if isinstance(replicas, int) else default


def _latest(
    candidates: tuple[_Admitted, ...], wanted: Callable[[_Admitted], bool]
) -> _Admitted | None:
    return next((entry for entry in reversed(candidates) if wanted(entry)), None)
