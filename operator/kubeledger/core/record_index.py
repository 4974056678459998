"""The index every record carries in an annotation: what a starting writer needs of it.

A writer that starts continues the trail from the records (``recording.history``): the
chain's head and the sequence numbers present, and of each object its last record's
subject, the hash of its snapshot (by which an object listed unchanged is recognised)
and the pod templates its records show (a change back to one is a rollback). None of
that needs the snapshots themselves, which are most of a record's bytes: at 60,000
records, decoding them whole was most of a restart. So the ledger writes this index in
the record's ``kubeledger.io/index`` annotation, and start-up lists the records' metadata
only (``PartialObjectMetadata``); a snapshot is read from its record when a change of the
object must be diffed against it (``recording.recorder``).

The index is derived from the record's sealed spec by :func:`of`, nothing else, so it
can always be checked against the spec it stands for (``kubeledger verify`` does), and
the chart's admission policy refuses changing it. A record without a readable index (one
written before the index existed) is read whole, and its index derived the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeledger.core import revisions
from kubeledger.core.baselines import (
    DELETING_ACTIONS,
    NEVER_SEEN,
    Baselines,
    encode,
    whole_snapshot_digest,
)
from kubeledger.core.model import Subject

ANNOTATION = "kubeledger.io/index"
VERSION = 1


@dataclass(frozen=True)
class RecordIndex:
    """What one record says of its place in the chain and of its object."""

    sequence: int
    hash: str
    lost: tuple[int, ...]
    observed_at: str
    subject: Mapping[str, Any]
    action: str
    # SHA-256 hex of the whole redacted snapshot, as ``baselines.encode`` writes it (the
    # one ``core.bounds`` gives when it cut it); None when the record keeps no baseline
    # (a deletion).
    snapshot: str | None
    # ``revisions.template_fingerprint`` of the stored snapshot, hex; None: no template.
    template: str | None

    @property
    def order(self) -> tuple[int, str]:
        """Records of one object sort by this: chain order, then time."""
        return (self.sequence, self.observed_at)

    def annotation(self) -> str:
        """The annotation's value: compact JSON."""
        return json.dumps({
            "v": VERSION, "sequence": self.sequence, "hash": self.hash,
            "lost": list(self.lost), "observedAt": self.observed_at,
            "subject": dict(self.subject), "action": self.action,
            "snapshot": self.snapshot, "template": self.template,
        }, separators=(",", ":"), sort_keys=True)


def of(spec: Mapping[str, Any]) -> RecordIndex:
    """The index of a record's spec, as written to the cluster (``RecordSpec.wire``)."""
    link = spec.get("chain") or {}
    snapshot = spec.get("snapshot")
    kept = None if snapshot is None or spec["action"] in DELETING_ACTIONS else snapshot
    template = None if snapshot is None else revisions.template_fingerprint(snapshot)
    return RecordIndex(
        sequence=int(link.get("sequence", 0)), hash=str(link.get("hash", "")),
        lost=tuple(link.get("lost") or ()), observed_at=str(spec.get("observedAt", "")),
        subject=spec["subject"], action=spec["action"],
        snapshot=None if kept is None else (
            whole_snapshot_digest(spec) or hashlib.sha256(encode(kept)).hexdigest()),
        template=None if template is None else template.hex(),
    )


def read(annotations: Mapping[str, str] | None) -> RecordIndex | None:
    """The index in a record's annotations; None when it has none, or none readable."""
    text = (annotations or {}).get(ANNOTATION)
    if text is None:
        return None
    try:
        fields = json.loads(text)
        if fields.get("v") != VERSION:
            return None
        return RecordIndex(
            sequence=int(fields["sequence"]), hash=str(fields["hash"]),
            lost=tuple(int(sequence) for sequence in fields["lost"]),
            observed_at=str(fields["observedAt"]), subject=dict(fields["subject"]),
            action=str(fields["action"]), snapshot=_optional(fields["snapshot"]),
            template=_optional(fields["template"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def mismatch(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> str | None:
    """What is wrong with a record's index, held against its spec; None: nothing (or it
    has none, as records written before the index existed)."""
    annotations = metadata.get("annotations") or {}
    if ANNOTATION not in annotations:
        return None
    index = read(annotations)
    if index is None:
        return f"its index ({ANNOTATION}) cannot be read"
    if index != of(spec):
        return f"its index ({ANNOTATION}) does not match its spec"
    return None


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


class LatestRecords:
    """The latest record of each object, folded from the records' indexes in any order.

    Start-up reads the indexes a page at a time; of each object only its latest record so
    far is kept (name and index), and of every record its pod template's fingerprint:
    the baselines come out with their snapshots still in their records.
    """

    def __init__(self) -> None:
        self._latest: dict[str, tuple[str, RecordIndex]] = {}
        # uid -> {template fingerprint: the order of the latest record showing it}
        self._templates: dict[str, dict[bytes, tuple[int, str]]] = {}

    def add(self, name: str, index: RecordIndex) -> None:
        uid = index.subject["uid"]
        if index.template is not None:
            seen = self._templates.setdefault(uid, {})
            template = bytes.fromhex(index.template)
            seen[template] = max(index.order, seen.get(template, index.order))
        current = self._latest.get(uid)
        if current is None or current[1].order < index.order:
            self._latest[uid] = (name, index)

    def baselines(self) -> Baselines:
        """Objects last recorded as deleted drop out; none counts as seen (``NEVER_SEEN``)."""
        baselines = Baselines()
        for uid, (name, index) in self._latest.items():
            if index.snapshot is not None:
                baselines.remember_encoded(
                    Subject.model_validate(index.subject), None,
                    templates=revisions.ordered(self._templates.get(uid, {})),
                    seen_at=NEVER_SEEN, digest=index.snapshot, record=name)
        return baselines
