"""Which pod templates each Deployment (or Rollout) has run before: to recognise a rollback.

``kubectl rollout undo`` copies an older ReplicaSet's template back into the Deployment,
so a template change whose fingerprint matches one of the owner's older ReplicaSets is a
rollback. Only a fingerprint and the resourceVersion it was first seen at are kept per
ReplicaSet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeledger.core.projection import template_fingerprint


class Revisions:
    """owner uid -> {ReplicaSet uid: (template fingerprint, first-seen resourceVersion)}."""

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[str, tuple[str, int]]] = {}

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata", {})
        owner = _controller_uid(metadata)
        if owner is None:
            return
        replicasets = self._by_owner.setdefault(owner, {})
        uid = metadata["uid"]
        if event_type == "DELETED":
            replicasets.pop(uid, None)
            if not replicasets:
                del self._by_owner[owner]
            return
        fingerprint = template_fingerprint(body.get("spec", {}).get("template", {}))
        known = replicasets.get(uid)
        first_seen = known[1] if known else _version(metadata)
        replicasets[uid] = (fingerprint, first_seen)

    def earlier_templates(self, owner_uid: str, before_version: str) -> frozenset[str]:
        """Fingerprints of the owner's ReplicaSets that existed before ``before_version``.

        resourceVersions are etcd revisions: comparing them as integers orders writes
        within one cluster, which is all this needs. A ReplicaSet the controller creates
        in reaction to the change being classified comes later and is excluded.
        """
        limit = int(before_version)
        return frozenset(
            fingerprint
            for fingerprint, first_seen in self._by_owner.get(owner_uid, {}).values()
            if first_seen < limit
        )


def _controller_uid(metadata: Mapping[str, Any]) -> str | None:
    for reference in metadata.get("ownerReferences", ()):
        if reference.get("controller"):
            uid: str = reference["uid"]
            return uid
    return None


def _version(metadata: Mapping[str, Any]) -> int:
    return int(metadata.get("resourceVersion", "0"))
