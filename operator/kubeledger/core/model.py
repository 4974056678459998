"""The audit record: the contract that users, the CRD schema and Elasticsearch rely on.

Pure data, no I/O. Field names are camelCase because they are the wire names of the
``AuditRecord`` custom resource (``spec.*``); they are stable and documented in the
README. ``crds/auditrecords.yaml`` describes the same shape as an OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GROUP = "kubeledger.io"
VERSION = "v1alpha1"
KIND = "AuditRecord"
PLURAL = "auditrecords"
API_VERSION = f"{GROUP}/{VERSION}"

LABEL_SUBJECT_KIND = "kubeledger.io/subject-kind"
LABEL_SUBJECT_NAMESPACE = "kubeledger.io/subject-namespace"
LABEL_SUBJECT_NAME = "kubeledger.io/subject-name"
LABEL_SUBJECT_UID = "kubeledger.io/subject-uid"
LABEL_ACTION = "kubeledger.io/action"

JsonValue = Any  # any JSON value: the old and new values of a changed field


class Action(StrEnum):
    """What happened, in the stable kebab-case vocabulary the README documents ("Actions")."""

    CREATED = "created"
    DELETED = "deleted"
    IMAGE_CHANGED = "image-changed"
    SCALED = "scaled"
    CONFIG_CHANGED = "config-changed"
    ROLLOUT_RESTARTED = "rollout-restarted"
    ROLLED_BACK = "rolled-back"
    PAUSED = "paused"
    RESUMED = "resumed"
    ROLLOUT_COMPLETED = "rollout-completed"
    ROLLOUT_FAILED = "rollout-failed"
    RULES_CHANGED = "rules-changed"
    SUBJECTS_CHANGED = "subjects-changed"
    CHANGED_WHILE_UNOBSERVED = "changed-while-unobserved"
    DELETED_WHILE_UNOBSERVED = "deleted-while-unobserved"
    # Found by the first listing after kubeledger was installed: it existed before.
    INVENTORIED = "inventoried"


class Severity(StrEnum):
    INFO = "info"
    NOTICE = "notice"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Observation(StrEnum):
    """How the change was seen: as it happened, from the apiserver's audit event of the
    write once a writer was back (``recording.replay``), or only later by comparing states."""

    LIVE = "live"
    AUDIT_LOG = "audit-log"
    AFTER_THE_FACT = "after-the-fact"


class InitiatorSource(StrEnum):
    ADMISSION = "admission"
    AUDIT = "audit"
    ARGOCD = "argocd"
    FLUX = "flux"
    ANNOTATION = "annotation"
    MANAGED_FIELDS = "managedFields"
    UNRESOLVED = "unresolved"


class CommitSource(StrEnum):
    ANNOTATION = "annotation"
    ARGOCD = "argocd"
    FLUX = "flux"
    IMAGE_TAG = "image-tag"
    UNRESOLVED = "unresolved"


class AnomalyKind(StrEnum):
    """Why a change looks wrong: the README's "Anomalies" section says what triggers each."""

    OUT_OF_BAND_CHANGE = "out-of-band-change"
    UNVERIFIED_INITIATOR = "unverified-initiator"
    DECLARED_MISMATCH = "declared-mismatch"
    OUTSIDE_CHANGE_WINDOW = "outside-change-window"
    BURST = "burst"
    CRITICAL_RBAC = "critical-rbac"
    ROLLBACK_SPIKE = "rollback-spike"
    FAILURE_SPIKE = "failure-spike"
    UNAPPROVED_REGISTRY = "unapproved-registry"


class _Wire(BaseModel):
    """Base of every record part: wire names as written, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Subject(_Wire):
    """The audited object, at the resourceVersion of the change."""

    apiVersion: str
    kind: str
    # Absent for cluster-scoped objects, as in Kubernetes' own metadata.
    namespace: str | None = None
    name: str
    uid: str
    resourceVersion: str


class FieldChange(_Wire):
    """One changed field: a dotted path (list items by index or by name) with both values.

    ``old`` is absent for an added field, ``new`` for a removed one. Secret-looking values
    appear only as ``redacted:sha256:<salted hash>``.
    """

    path: str
    old: JsonValue = None
    new: JsonValue = None


class Initiator(_Wire):
    """Who made the change, and how we know."""

    username: str | None = None
    uid: str | None = None
    groups: list[str] = Field(default_factory=list)
    source: InitiatorSource = InitiatorSource.UNRESOLVED
    verified: bool = False
    tool: str | None = None
    impersonatedBy: str | None = None
    declared: str | None = None
    declaredMismatch: bool = False
    sourceIPs: list[str] = Field(default_factory=list)


class Commit(_Wire):
    """Which commit the change came from, and how we know."""

    sha: str | None = None
    repository: str | None = None
    source: CommitSource = CommitSource.UNRESOLVED


class Anomaly(_Wire):
    """One reason to look twice at a change, flagged before the record is sealed."""

    kind: AnomalyKind
    reason: str


class Truncation(_Wire):
    """One part of a record cut to keep the record within what the apiserver accepts.

    ``path`` is where it was (``snapshot.metadata.annotations["example.com/notes"]``,
    ``changes[3].new``, ``initiator.declared``; the diff's path syntax); ``bytes`` and
    ``sha256`` are the size and hash of what was cut (see ``core.bounds``). An entry with
    path ``snapshot`` describes the whole snapshot before its parts were cut.
    """

    path: str
    bytes: int
    sha256: str


class Chain(_Wire):
    """The record's place in the tamper-evident hash chain.

    ``hash`` is SHA-256 over the canonical JSON of the spec without ``chain.hash``;
    ``previousHash`` is the hash of the record with ``sequence - 1``.
    """

    sequence: int
    previousHash: str
    hash: str = ""
    # Earlier sequence numbers that will never hold a record, declared by the writer: a
    # write that failed for good, or, after a writer stopped with writes in flight, the
    # ones its successor found missing among the last it could have sent (see ledger).
    lost: list[int] | None = None


class RecordSpec(_Wire):
    """``spec`` of an AuditRecord: immutable once written."""

    action: Action
    severity: Severity
    observedAt: datetime
    observation: Observation = Observation.LIVE
    cluster: str
    subject: Subject
    changes: list[FieldChange] = Field(default_factory=list)
    changesTruncated: bool = False
    # Why the action and severity were chosen ("grants cluster-admin to User mallory").
    reasons: list[str] = Field(default_factory=list)
    initiator: Initiator = Field(default_factory=Initiator)
    commit: Commit = Field(default_factory=Commit)
    # The redacted projection of the object after the change: the baseline the next
    # change (or a catch-up after downtime) is diffed against. Absent after a deletion.
    snapshot: dict[str, JsonValue] | None = None
    # What looks wrong about the change (``core.anomalies``); part of the sealed content.
    anomalies: list[Anomaly] = Field(default_factory=list)
    # What ``core.bounds`` cut to keep the record within etcd's size limit; absent when
    # nothing was (so a small record's content is what it was before bounds existed).
    truncated: list[Truncation] | None = None
    chain: Chain | None = None

    def wire(self) -> dict[str, JsonValue]:
        """The spec as JSON-ready data, the way it is written to the cluster."""
        return self.model_dump(mode="json", exclude_none=True)


def record_name(subject: Subject, *, deleted: bool = False) -> str:
    """The deterministic record name: one persisted change, one name.

    Keyed by the object's uid and the resourceVersion of the change, so re-lists,
    retries and restarts collide on create instead of duplicating. An object is deleted
    only once, so both ways of seeing a deletion (the live event, the catch-up after
    downtime) share one name.
    """
    suffix = "deleted" if deleted else subject.resourceVersion
    kind = re.sub(r"[^a-z0-9]", "", subject.kind.lower())
    return f"{kind}-{subject.uid}-{suffix}"


def record_labels(spec: RecordSpec) -> dict[str, str]:
    """Labels for ``kubectl get auditrecords -l ...``: label values must be label-safe."""
    subject = spec.subject
    return {
        LABEL_SUBJECT_KIND: subject.kind,
        LABEL_SUBJECT_NAMESPACE: subject.namespace or "",
        LABEL_SUBJECT_NAME: label_value(subject.name),
        LABEL_SUBJECT_UID: subject.uid,
        LABEL_ACTION: spec.action.value,
    }


def label_value(text: str) -> str:
    """Fits a name into a label value (63 characters, alphanumeric at both ends).

    RBAC names may hold ``:`` (``system:controller:...``), which labels refuse.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63]
    return cleaned.strip("._-")
