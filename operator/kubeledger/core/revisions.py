"""Which pod templates a workload ran before: to recognise a rollback.

``kubectl rollout undo`` (and Argo Rollouts' undo) copies an earlier revision's template
back into the object, so a template change back to one the object's records show it had
before is a rollback. Each baseline carries the fingerprints of the object's last
templates, oldest first; at start-up they are folded from the records' snapshots
(``baselines.LatestRecords``), and every recorded change adds its own.

Both sides of the comparison are redacted projections, fingerprinted the same way: a
template holding a secret-looking env value matches itself (its marker is the same
under the same salt). The history is the trail's own, so a revision from before
kubeledger was installed is not known, and no ReplicaSet has to be watched or read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

# As many earlier templates as the Deployment controller keeps ReplicaSets by default
# (``revisionHistoryLimit``), beside the current one.
EARLIER_KEPT = 10


def fingerprint(template: Mapping[str, Any]) -> bytes:
    """A stable digest of a pod template: equal templates, whatever their key order."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


def template_fingerprint(projected: Mapping[str, Any]) -> bytes | None:
    """The fingerprint of a workload projection's pod template; None: it has none."""
    template = (projected.get("spec") or {}).get("template")
    return fingerprint(template) if template else None


def advanced(history: tuple[bytes, ...], template: bytes | None) -> tuple[bytes, ...]:
    """``history`` once the object runs ``template``: it moves (or is added) to the end."""
    if template is None:
        return history
    return (*(kept for kept in history if kept != template), template)[-(EARLIER_KEPT + 1):]


def ordered(seen: Mapping[bytes, Any]) -> tuple[bytes, ...]:
    """A history from templates and when each was last recorded (any sortable order)."""
    latest_last: Iterable[bytes] = sorted(seen, key=seen.__getitem__)
    return tuple(latest_last)[-(EARLIER_KEPT + 1):]
