"""The last recorded state of every audited object: what the next change is diffed against.

Rebuilt at start-up from the AuditRecords themselves (each carries the redacted snapshot
of its object after the change, and an index of it, ``record_index``), so the operator
keeps no state of its own that could drift from the trail. Only the projection needed
for diffs is held, never whole objects, and as canonical JSON bytes: a fifth of the
memory of the same data as Python dicts, and an unchanged object (status churn, the most
common event) is recognised by comparing bytes, without decoding anything. A baseline
read at start-up holds only its snapshot's hash until a change must be diffed against it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from kubeledger.core.model import Action, Subject

DELETING_ACTIONS = frozenset({Action.DELETED.value, Action.DELETED_WHILE_UNOBSERVED.value})
# The ``seen_at`` of a baseline read from the records: no watch or listing of this
# process has confirmed it yet, so any listing may find it gone.
NEVER_SEEN = -math.inf


class NotLoadedError(LookupError):
    """A baseline's snapshot was asked for before it was read from its record."""


class Baseline:
    """The object as last recorded (or last seen unchanged).

    One is held for every live object, so compactly: the subject as a tuple of its
    fields (a pydantic model is about 1 kB), the projection compressed (a third of its
    canonical JSON) and known by its hash.
    """

    __slots__ = ("_digest", "_packed", "_subject", "fingerprint", "record", "seen_at",
                 "templates")

    def __init__(self, subject: Subject, encoded: bytes | None,
                 fingerprint: bytes | None = None, templates: tuple[bytes, ...] = (), *,
                 seen_at: float | None = None, digest: str | None = None,
                 record: str | None = None) -> None:
        self._subject = (sys.intern(subject.apiVersion), sys.intern(subject.kind),
                         None if subject.namespace is None else sys.intern(subject.namespace),
                         subject.name, subject.uid, subject.resourceVersion)
        # Canonical JSON of the redacted projection, compressed; None while it is still
        # only in its record (``record``): start-up reads the records' index, not their
        # snapshots.
        self._packed = None if encoded is None else zlib.compress(encoded, 1)
        # SHA-256 of the whole encoded projection, by which the object is known unchanged
        # (a record may hold a cut snapshot, ``core.bounds``; its index has this hash).
        if digest is not None:
            self._digest = bytes.fromhex(digest)
        elif encoded is not None:
            self._digest = hashlib.sha256(encoded).digest()
        else:
            raise ValueError("a baseline is its projection or, read from a record, its hash")
        # ``Redactor.fingerprint`` of the projection before redaction, once seen by a
        # watch (a record holds only the redacted one): an event with the same is
        # unchanged.
        self.fingerprint = fingerprint
        # ``revisions.fingerprint`` of the pod templates it was recorded with, oldest
        # first (the current one last): a change back to an earlier one is a rollback.
        self.templates = templates
        # When this entry was last confirmed, on the monotonic clock: lets the deletion
        # reconciler ignore objects it cannot have seen in a listing started earlier.
        self.seen_at = time.monotonic() if seen_at is None else seen_at
        # The record the baseline was read from, where its snapshot is.
        self.record = record

    @property
    def subject(self) -> Subject:
        api_version, kind, namespace, name, uid, resource_version = self._subject
        return Subject.model_construct(apiVersion=api_version, kind=kind,
                                       namespace=namespace, name=name, uid=uid,
                                       resourceVersion=resource_version)

    @property
    def uid(self) -> str:
        return self._subject[4]

    @property
    def named(self) -> tuple[str, str, str]:
        """``(kind, namespace or "", name)``: how a binding names its role."""
        _, kind, namespace, name, _, _ = self._subject
        return kind, namespace or "", name

    def is_a(self, api_version: str, kind: str) -> bool:
        return self._subject[:2] == (api_version, kind)

    @property
    def digest(self) -> str:
        """The SHA-256 hex of the whole encoded projection (as a record's index has it)."""
        return self._digest.hex()

    def holds(self, encoded: bytes) -> bool:
        """Whether ``encoded`` (a projection, redacted and encoded) is this baseline."""
        return hashlib.sha256(encoded).digest() == self._digest

    @property
    def loaded(self) -> bool:
        return self._packed is not None

    @property
    def encoded(self) -> bytes:
        """The projection's canonical JSON, as held (the record's, once loaded)."""
        if self._packed is None:
            raise NotLoadedError(f"the snapshot of {self._subject[1]}/{self._subject[3]} "
                                 f"is still in record {self.record}")
        return zlib.decompress(self._packed)

    @property
    def snapshot(self) -> dict[str, Any]:
        """The projection, decoded (only when a change is diffed or classified)."""
        decoded: dict[str, Any] = json.loads(self.encoded)
        return decoded

    def load(self, snapshot: Mapping[str, Any]) -> None:
        """Holds the snapshot read from the baseline's record (its hash stays the index's:
        the record's snapshot may be cut)."""
        self._packed = zlib.compress(encode(snapshot), 1)


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

    def remember_encoded(self, subject: Subject, encoded: bytes | None,
                         fingerprint: bytes | None = None,
                         templates: tuple[bytes, ...] = (), *,
                         seen_at: float | None = None, digest: str | None = None,
                         record: str | None = None) -> None:
        """``seen_at`` defaults to now (the object was just seen)."""
        baseline = Baseline(subject, encoded, fingerprint, templates, seen_at=seen_at,
                            digest=digest, record=record)
        self._by_uid[baseline.uid] = baseline
        self._uid_by_name[baseline.named] = baseline.uid

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
        if baseline is not None and self._uid_by_name.get(baseline.named) == uid:
            del self._uid_by_name[baseline.named]

    def of_kind(self, api_version: str, kind: str) -> Iterator[Baseline]:
        for baseline in list(self._by_uid.values()):
            if baseline.is_a(api_version, kind):
                yield baseline


def encode(snapshot: Mapping[str, Any]) -> bytes:
    """The stored form of a projection: compact JSON with sorted keys.

    Deterministic, which is all an equality test needs, and done by the C encoder: this
    runs on every watch event. (The hash chain's canonical form also normalises floats,
    at several times the cost.)
    """
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def whole_snapshot_digest(spec: Mapping[str, Any]) -> str | None:
    """The hash ``core.bounds`` gives of a record's whole snapshot, when it cut it."""
    for cut in spec.get("truncated") or ():
        if cut.get("path") == "snapshot":
            digest: str = cut["sha256"]
            return digest
    return None


def _order(spec: Mapping[str, Any]) -> tuple[int, str]:
    return (spec.get("chain", {}).get("sequence", 0), spec.get("observedAt", ""))
