"""The decision at the heart of the operator: which watch event becomes which record.

Pure. Every event of an audited object is projected (``projection``) and redacted
(``redaction``), then compared with the object's baseline (its last recorded state).
Equal means nothing meaningful changed (status churn, bookkeeping): ``Unchanged``.
Otherwise the change is classified (``classify``); a change no record describes moves
the baseline only (``Rebaseline``); any other is diffed (``diff``) into a ``Draft``:
everything the record will say except who made the change and which commit. Those take
I/O, so ``recording.recorder`` adds them and hands the record to the ledger.

Events from kopf's initial listing (type None) are changes seen after the fact: the
operator was not watching when they happened. A write replayed from its audit event
(``AUDITED``, ``recording.replay``) is known exactly, as if seen live, but later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeledger.core import classify, diff, projection, revisions
from kubeledger.core.baselines import Baseline, encode
from kubeledger.core.classify import RoleRulesResolver
from kubeledger.core.classify.common import rules_unknown
from kubeledger.core.kinds import Resource
from kubeledger.core.model import (
    Action,
    Commit,
    FieldChange,
    Initiator,
    Observation,
    RecordSpec,
    Severity,
    Subject,
    record_name,
)
from kubeledger.core.redaction import Redactor

LIVE_EVENTS = frozenset({"ADDED", "MODIFIED"})
# The event type of a write replayed from the audit stream, the object as written.
AUDITED = "AUDITED"
REPLAYED_REASON = "recorded from the apiserver's audit event: no writer was watching"
DELETING_ACTIONS = frozenset({Action.DELETED, Action.DELETED_WHILE_UNOBSERVED})
# Changes under this path are of the rollout's state (``projection``), read from status.
ROLLOUT_STATE_PREFIX = "rollout."


@dataclass(frozen=True)
class Unchanged:
    """Nothing worth a record changed: the baseline is confirmed as seen now."""

    fingerprint: bytes  # of the projection seen (``Baseline.fingerprint``)


@dataclass(frozen=True)
class Unloaded:
    """The event must be compared with a baseline whose snapshot is still in its record
    (start-up reads the records' index only): read it (``Baseline.load``), then decide
    again."""

    baseline: Baseline


@dataclass(frozen=True)
class Rebaseline:
    """A change no record describes (a rollout going back to progressing).

    Nothing is written; the next change is diffed from here.
    """

    subject: Subject
    encoded: bytes
    fingerprint: bytes
    templates: tuple[bytes, ...] = ()  # ``Baseline.templates``, this one's included


@dataclass(frozen=True)
class Draft:
    """A record to write, but for who made the change and which commit it came from."""

    name: str
    subject: Subject
    action: Action
    severity: Severity
    observation: Observation
    reasons: tuple[str, ...] = ()
    changes: tuple[FieldChange, ...] = ()
    changes_truncated: bool = False
    snapshot: dict[str, Any] | None = None
    # The object's baseline once the record is written (``snapshot`` encoded); None
    # after a deletion, when the object is forgotten.
    encoded: bytes | None = None
    fingerprint: bytes | None = None  # of the projection before redaction
    templates: tuple[bytes, ...] = ()  # ``Baseline.templates``, this one's included

    @property
    def live(self) -> bool:
        return self.observation is Observation.LIVE

    @property
    def status_only(self) -> bool:
        """Whether only the rollout's state changed, which no audit event will show.

        The controller writes that state through the status subresource, which the audit
        policy kubeledger documents does not log.
        """
        return bool(self.changes) and all(
            change.path.startswith(ROLLOUT_STATE_PREFIX) for change in self.changes)

    @property
    def awaits_audit_event(self) -> bool:
        """Whether the write behind this change will show in the apiserver's audit log.

        Not for a change of the rollout's state only: waiting would only delay the record.
        """
        return self.live and not self.status_only

    @property
    def deleted(self) -> bool:
        return self.action in DELETING_ACTIONS

    def record(self, *, cluster: str, observed_at: datetime, initiator: Initiator,
               commit: Commit) -> RecordSpec:
        """The record's spec, with what attribution found."""
        return RecordSpec(
            action=self.action, severity=self.severity, observedAt=observed_at,
            observation=self.observation, cluster=cluster, subject=self.subject,
            changes=list(self.changes), changesTruncated=self.changes_truncated,
            reasons=list(self.reasons), initiator=initiator, commit=commit,
            snapshot=self.snapshot,
        )


# What an event means; ``decide`` may first ask for a baseline's snapshot (``Unloaded``).
Decided = Unchanged | Rebaseline | Draft
Decision = Decided | Unloaded


def decide(
    resource: Resource,
    event_type: str | None,
    body: Mapping[str, Any],
    *,
    baseline: Baseline | None,
    redactor: Redactor,
    role_rules: RoleRulesResolver = rules_unknown,
    max_changes: int = 64,
    installed_at: datetime | None = None,
) -> Decision:
    """What one watch event of a ``resource`` object means for the trail.

    ``baseline`` is the object's last recorded state (None when it was never recorded),
    with the templates it ran before (a rollback goes back to one); ``role_rules`` finds
    the rules of
    the role a binding names, for its severity. ``installed_at``: when this is the first
    run of kubeledger in the cluster (its ledger was empty), the time it started; an
    object created before then, found by a listing, is ``inventoried``.
    """
    subject = subject_of(resource, body)
    if event_type == "DELETED":
        return _deleted(subject, body, baseline=baseline, redactor=redactor,
                        role_rules=role_rules)
    projected = projection.project(body)
    fingerprint = redactor.fingerprint(encode(projected))
    if baseline is not None and baseline.fingerprint == fingerprint:
        return Unchanged(fingerprint)  # the common case (status churn), without redacting
    compared = _compared(body, redactor.redact(projected), baseline, fingerprint)
    if not isinstance(compared, tuple):
        return compared
    old, new, encoded = compared
    earlier = baseline.templates if baseline else ()
    templates = revisions.advanced(earlier, revisions.template_fingerprint(new))
    # Seen live only when the watch delivered the change itself; a listing shows the
    # result of changes made while nobody watched.
    live = event_type in LIVE_EVENTS and (baseline is not None or event_type == "ADDED")
    audited = event_type == AUDITED
    verdict = classify.classify(subject.kind, old, new,
                                _context(subject, role_rules, earlier=earlier))
    if verdict is None:
        return Rebaseline(subject, encoded, fingerprint, templates)
    action, severity, reasons = verdict.action, verdict.severity, list(verdict.reasons)
    exact = live or audited
    created = _created_before(body, installed_at) if old is None and not exact else None
    if created is not None:
        action, severity = Action.INVENTORIED, Severity.INFO
        reasons = [f"there before kubeledger was installed; created {created}"]
    if not exact and old is not None:
        reasons.insert(0, f"seen after the fact; the change looks like {action.value}")
        action, severity = Action.CHANGED_WHILE_UNOBSERVED, max(
            severity, Severity.NOTICE, key=lambda level: level.rank)
    if audited:
        reasons.insert(0, REPLAYED_REASON)
    changes, truncated = diff.diff(old, new, max_changes=max_changes)
    return Draft(
        name=record_name(subject), subject=subject, action=action, severity=severity,
        observation=(Observation.LIVE if live else Observation.AUDIT_LOG if audited
                     else Observation.AFTER_THE_FACT),
        reasons=tuple(reasons), changes=tuple(changes), changes_truncated=truncated,
        snapshot=new, encoded=encoded, fingerprint=fingerprint, templates=templates,
    )


def _deleted(subject: Subject, body: Mapping[str, Any], *, baseline: Baseline | None,
             redactor: Redactor, role_rules: RoleRulesResolver) -> Unloaded | Draft:
    if baseline is not None and not baseline.loaded:
        return Unloaded(baseline)
    last_known = baseline.snapshot if baseline else redactor.redact(projection.project(body))
    return _deletion(subject, last_known, Observation.LIVE, _context(subject, role_rules))


def _compared(body: Mapping[str, Any], new: dict[str, Any], baseline: Baseline | None,
              fingerprint: bytes,
              ) -> Unchanged | Unloaded | tuple[dict[str, Any] | None, dict[str, Any], bytes]:
    """The redacted projection ``new`` against the baseline: unchanged, or the snapshot
    the baseline holds (None: there is none), ``new`` and its encoded form."""
    encoded = encode(new)
    if baseline is None:
        return None, new, encoded
    if baseline.holds(encoded):
        return Unchanged(fingerprint)
    if not baseline.loaded:
        return Unloaded(baseline)
    old = baseline.snapshot
    if _phase_kept(body, old, new):
        new = {**new, "rollout": old["rollout"]}
        encoded = encode(new)
        if baseline.holds(encoded):
            return Unchanged(fingerprint)
    return old, new, encoded


def _phase_kept(body: Mapping[str, Any], old: Mapping[str, Any],
                new: Mapping[str, Any]) -> bool:
    """Whether ``new`` keeps the recorded rollout phase: the controller has not yet seen a
    generation that changed only the object's annotations (it has nothing to roll out),
    so the phase is not progressing, as its lag alone would say."""
    return ("rollout" in old and projection.awaiting_controller(body)
            and old.get("spec") == new.get("spec"))


def unobserved_deletion(baseline: Baseline, *,
                        role_rules: RoleRulesResolver = rules_unknown) -> Draft:
    """The record of an object that vanished while the operator was not watching."""
    subject = baseline.subject  # made from the baseline's fields on each read
    return _deletion(subject, baseline.snapshot, Observation.AFTER_THE_FACT,
                     _context(subject, role_rules))


def _created_before(body: Mapping[str, Any], installed_at: datetime | None) -> str | None:
    """The object's creationTimestamp, when it is older than ``installed_at``."""
    stamp = body["metadata"].get("creationTimestamp")
    if installed_at is None or not stamp:
        return None
    created = datetime.fromisoformat(str(stamp))
    return str(stamp) if created < installed_at else None


def subject_of(resource: Resource, body: Mapping[str, Any]) -> Subject:
    metadata = body["metadata"]
    return Subject(
        apiVersion=resource.api_version, kind=resource.kind,
        namespace=metadata.get("namespace") or None, name=metadata["name"], uid=metadata["uid"],
        resourceVersion=metadata["resourceVersion"],
    )


def _deletion(subject: Subject, old: dict[str, Any], observation: Observation,
              context: classify.Context) -> Draft:
    verdict = classify.classify(subject.kind, old, None, context)
    return Draft(
        # Both ways of seeing a deletion share one name: it is recorded once.
        name=record_name(subject, deleted=True), subject=subject,
        action=Action.DELETED if observation is Observation.LIVE
        else Action.DELETED_WHILE_UNOBSERVED,
        severity=verdict.severity if verdict else Severity.WARNING,
        observation=observation, reasons=verdict.reasons if verdict else (),
    )


def _context(subject: Subject, role_rules: RoleRulesResolver, *,
             earlier: tuple[bytes, ...] = ()) -> classify.Context:
    return classify.Context(namespace=subject.namespace or "", name=subject.name,
                            older_revision_fingerprints=frozenset(earlier),
                            resolve_role_rules=role_rules)
