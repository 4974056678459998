"""The last recorded state of every audited object: what the next change is diffed against.

Rebuilt at start-up from the AuditRecords themselves (each carries the redacted snapshot
of its object after the change), so the operator keeps no state of its own that could
drift from the trail. Only the projection needed for diffs is held, never whole objects,
and as canonical JSON bytes: a fifth of the memory of the same data as Python dicts, and
an unchanged object (status churn, the most common event) is recognised by comparing
bytes, without decoding anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeledger.core import revisions
from kubeledger.core.model import Action, Subject

DELETING_ACTIONS = frozenset({Action.DELETED.value, Action.DELETED_WHILE_UNOBSERVED.value})
# The ``seen_at`` of a baseline read from the records: no watch or listing of this
# process has confirmed it yet, so any listing may find it gone.
NEVER_SEEN = -math.inf


@dataclass
class Baseline:
    """The object as last recorded (or last seen unchanged)."""

    subject: Subject
    encoded: bytes  # canonical JSON of the redacted projection
    # ``Redactor.fingerprint`` of the projection before redaction, once seen by a watch
    # (a record holds only the redacted one): an event with the same is unchanged.
    fingerprint: bytes | None = None
    # ``revisions.fingerprint`` of the pod templates it was recorded with, oldest first
    # (the current one last): a change back to an earlier one is a rollback.
    templates: tuple[bytes, ...] = ()
    # When this entry was last confirmed, on the monotonic clock: lets the deletion
    # reconciler ignore objects it cannot have seen in a listing started earlier.
    seen_at: float = field(default_factory=time.monotonic)
    # Read from a record whose snapshot was cut (``core.bounds``): ``encoded`` is the cut
    # one, and this the SHA-256 hex of the whole, by which the object is known unchanged.
    digest: str | None = None

    def holds(self, encoded: bytes) -> bool:
        """Whether ``encoded`` (a projection, redacted and encoded) is this baseline."""
        if self.encoded == encoded:
            return True
        return self.digest is not None and hashlib.sha256(encoded).hexdigest() == self.digest

    @property
    def snapshot(self) -> dict[str, Any]:
        """The projection, decoded (only when a change is diffed or classified)."""
        decoded: dict[str, Any] = json.loads(self.encoded)
        return decoded


class Baselines:
    """uid -> Baseline for every live audited object."""

    def __init__(self) -> None:
        self._by_uid: dict[str, Baseline] = {}
        # (kind, namespace, name) -> uid: bindings resolve their role by name.
        self._uid_by_name: dict[tuple[str, str, str], str] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def get(self, uid: str) -> Baseline | None:
        return self._by_uid.get(uid)

    def remember(self, subject: Subject, snapshot: Mapping[str, Any]) -> None:
        self.remember_encoded(subject, encode(snapshot))

    def remember_encoded(self, subject: Subject, encoded: bytes,
                         fingerprint: bytes | None = None,
                         templates: tuple[bytes, ...] = (), *,
                         seen_at: float | None = None, digest: str | None = None) -> None:
        """``seen_at`` defaults to now (the object was just seen)."""
        self._by_uid[subject.uid] = Baseline(
            subject, encoded, fingerprint, templates,
            time.monotonic() if seen_at is None else seen_at, digest)
        self._uid_by_name[(subject.kind, subject.namespace or "", subject.name)] = subject.uid

    def find(self, kind: str, namespace: str, name: str) -> Baseline | None:
        uid = self._uid_by_name.get((kind, namespace, name))
        return self._by_uid.get(uid) if uid else None

    def touch(self, uid: str, fingerprint: bytes | None = None) -> None:
        """Marks an unchanged object as seen now (and its projection's fingerprint)."""
        baseline = self._by_uid.get(uid)
        if baseline is not None:
            baseline.seen_at = time.monotonic()
            baseline.fingerprint = fingerprint or baseline.fingerprint

    def forget(self, uid: str) -> None:
        baseline = self._by_uid.pop(uid, None)
        if baseline is not None:
            subject = baseline.subject
            key = (subject.kind, subject.namespace or "", subject.name)
            if self._uid_by_name.get(key) == uid:
                del self._uid_by_name[key]

    def of_kind(self, api_version: str, kind: str) -> Iterator[Baseline]:
        for baseline in list(self._by_uid.values()):
            if baseline.subject.kind == kind and baseline.subject.apiVersion == api_version:
                yield baseline



class LatestRecords:
    """The latest record of each object, folded in one record at a time, in any order.

    Start-up reads the records a page at a time; only what a baseline needs of the latest
    record so far is kept (its subject, and its snapshot as encoded bytes), and of every
    record the fingerprint of its pod template, so 50,000 records cost about what their
    10,000 objects' baselines cost.
    """

    def __init__(self) -> None:
        # uid -> (order, subject as recorded, encoded snapshot (None: deleted), and the
        # whole snapshot's hash when the record holds a cut one)
        self._latest: dict[str, tuple[tuple[int, str], Mapping[str, Any], bytes | None,
                                      str | None]] = {}
        # uid -> {template fingerprint: the order of the latest record showing it}
        self._templates: dict[str, dict[bytes, tuple[int, str]]] = {}

    def add(self, spec: Mapping[str, Any]) -> None:
        uid = spec["subject"]["uid"]
        order = _order(spec)
        self._add_template(uid, order, spec.get("snapshot"))
        current = self._latest.get(uid)
        if current is not None and current[0] >= order:
            return
        snapshot = spec.get("snapshot")
        kept = None if snapshot is None or spec["action"] in DELETING_ACTIONS else snapshot
        self._latest[uid] = (order, spec["subject"], None if kept is None else encode(kept),
                             _whole_snapshot_digest(spec))

    def baselines(self) -> Baselines:
        """Objects last recorded as deleted drop out; none counts as seen (``NEVER_SEEN``)."""
        baselines = Baselines()
        for uid, (_, subject, encoded, digest) in self._latest.items():
            if encoded is not None:
                baselines.remember_encoded(
                    Subject.model_validate(subject), encoded,
                    templates=revisions.ordered(self._templates.get(uid, {})),
                    seen_at=NEVER_SEEN, digest=digest)
        return baselines

    def _add_template(self, uid: str, order: tuple[int, str],
                      snapshot: Mapping[str, Any] | None) -> None:
        template = None if snapshot is None else revisions.template_fingerprint(snapshot)
        if template is None:
            return
        seen = self._templates.setdefault(uid, {})
        seen[template] = max(order, seen.get(template, order))


def encode(snapshot: Mapping[str, Any]) -> bytes:
    """The stored form of a projection: compact JSON with sorted keys.

    Deterministic, which is all an equality test needs, and done by the C encoder: this
    runs on every watch event. (The hash chain's canonical form also normalises floats,
    at several times the cost.)
    """
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _whole_snapshot_digest(spec: Mapping[str, Any]) -> str | None:
    """The hash ``core.bounds`` gives of a record's whole snapshot, when it cut it."""
    for cut in spec.get("truncated") or ():
        if cut.get("path") == "snapshot":
            digest: str = cut["sha256"]
            return digest
    return None


def _order(spec: Mapping[str, Any]) -> tuple[int, str]:
    return (spec.get("chain", {}).get("sequence", 0), spec.get("observedAt", ""))
