"""Elastic Common Schema documents: one Elasticsearch document per AuditRecord.

Pure data, no I/O. ``to_document`` turns a record's spec into the document the
Elasticsearch sink writes (create-only, with the record's name as ``_id``), and
``index_name`` picks the index from the record's own time. ``template``
maps every field emitted here; a unit test holds the two together, and another holds
the Kibana assets in ``kibana/`` to the same mapping.

ECS fields (``event.*``, ``user.*``, ``orchestrator.*``, ``related.*``) are what Kibana
users already know; everything kubeledger-specific lives under ``kubeledger.*`` with
snake_case names, as ECS asks of custom fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubeledger.core import chain, kinds, model

# ECS 8.17.0 is the newest schema release of the 8.x line, matching the 8.x stack we target.
# Every ECS field used below exists there with the type ``template`` gives it.
ECS_VERSION = "8.17.0"
EVENT_DATASET = "kubeledger.audit"
EVENT_MODULE = "kubeledger"

# Kubernetes kinds in this API group grant permissions: their changes are IAM events too.
RBAC_API_GROUP = kinds.RBAC_GROUP

# event.severity is numeric and its scale is up to the source. We reuse the default risk
# scores Elastic Security gives its rule severities (low 21, medium 47, high 73,
# critical 99), so kubeledger events sort and filter on the same 0-100 scale as the
# alerts security teams already triage, and "event.severity >= 73" reads as
# "warning or worse".
SEVERITY_SCORES: Mapping[model.Severity, int] = {
    model.Severity.INFO: 21,
    model.Severity.NOTICE: 47,
    model.Severity.WARNING: 73,
    model.Severity.CRITICAL: 99,
}

# ECS event.type per action; every other action changes an existing object.
_EVENT_TYPES: Mapping[model.Action, str] = {
    model.Action.CREATED: "creation",
    model.Action.DELETED: "deletion",
    model.Action.DELETED_WHILE_UNOBSERVED: "deletion",
    # Not a change: what was there when kubeledger was installed.
    model.Action.INVENTORIED: "info",
}

# Monthly indices: see index_name. ILM retention adds this span (see ``template``).
INDEX_SPAN_DAYS = 31

# Lower-case, no characters Elasticsearch refuses in index names, not hidden (leading dot)
# and not starting with "-", "_" or "+".
_INDEX_PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]*")


def to_document(
    name: str, spec: model.RecordSpec, *, ecs_version: str = ECS_VERSION
) -> dict[str, Any]:
    """The ECS document for the AuditRecord called ``name``.

    ``spec`` arrives already redacted. The in-cluster baseline (``spec.snapshot``) is no
    searchable field: it is bookkeeping for the next diff, not audit content. It travels
    only inside ``kubeledger.chain.content``, the canonical JSON of the whole spec that
    the record's hash covers, stored unindexed, so that Elasticsearch's copy of the trail
    can be verified without the cluster (``trail``). Unset values (None, empty strings
    and lists) are omitted, so "field exists" queries mean "we know this".
    """
    document = {
        "@timestamp": _timestamp(spec.observedAt),
        "ecs": {"version": ecs_version},
        "event": _event(name, spec),
        "user": _user(spec.initiator),
        "orchestrator": _orchestrator(spec),
        "related": _related(spec),
        "kubeledger": _kubeledger(name, spec),
    }
    return _pruned(document)


def index_name(prefix: str, observed_at: datetime) -> str:
    """The index for a record observed at ``observed_at``: ``<prefix>-YYYY.MM`` (UTC).

    The index comes from the record's own time, never from the clock at write time, so
    a write retried after an outage of any length lands in the same index, where the
    create-only ``_id`` turns it into a harmless conflict instead of a duplicate.

    Monthly rather than daily: audit changes number in the hundreds or thousands a day,
    far below what one shard holds comfortably, and daily indices would multiply tiny
    shards that each cost heap and cluster state. Retention deletes whole months.
    """
    return f"{check_index_prefix(prefix)}-{_utc(observed_at):%Y.%m}"


def check_index_prefix(prefix: str) -> str:
    """Returns ``prefix`` if Elasticsearch accepts it in index names, else raises ValueError.

    A bad prefix would otherwise fail every single write; callers check it at start-up.
    """
    if not _INDEX_PREFIX.fullmatch(prefix):
        raise ValueError(
            f"index prefix {prefix!r} must be lower-case letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return prefix


def _event(name: str, spec: model.RecordSpec) -> dict[str, Any]:
    rbac = _is_rbac(spec.subject)
    return {
        "id": name,
        "kind": "event",
        "category": ["configuration", "iam"] if rbac else ["configuration"],
        # ECS: "admin" is the iam type for changes to the permission framework itself
        # (roles and bindings) rather than to one user account or group.
        "type": [_EVENT_TYPES.get(spec.action, "change"), *(["admin"] if rbac else [])],
        "action": spec.action.value,
        # A record exists only for a change the apiserver persisted.
        "outcome": "success",
        "severity": SEVERITY_SCORES[spec.severity],
        "dataset": EVENT_DATASET,
        "module": EVENT_MODULE,
    }


def _user(initiator: model.Initiator) -> dict[str, Any]:
    """ECS ``user``: who acted. Under impersonation, whom they acted as goes to ``user.effective``.

    Kubernetes describes an impersonated request by the assumed identity (``username``,
    ``uid``, ``groups``) plus the real user who asked for it (``impersonatedBy``); ECS
    wants the real actor in ``user`` and the assumed identity in ``user.effective``.
    """
    assumed = {
        "name": initiator.username,
        "id": initiator.uid,
        "group": {"name": initiator.groups},
    }
    if initiator.impersonatedBy is None:
        return assumed
    return {"name": initiator.impersonatedBy, "effective": assumed}


def _orchestrator(spec: model.RecordSpec) -> dict[str, Any]:
    subject = spec.subject
    return {
        "type": "kubernetes",
        "cluster": {"name": spec.cluster},
        "namespace": subject.namespace,
        "api_version": subject.apiVersion,
        "resource": {"type": subject.kind.lower(), "name": subject.name, "id": subject.uid},
    }


def _related(spec: model.RecordSpec) -> dict[str, Any]:
    """ECS ``related``: every user, hash and IP in the record, for one-field pivots."""
    initiator = spec.initiator
    link = spec.chain
    return {
        "user": _unique([initiator.impersonatedBy, initiator.username, initiator.declared]),
        "hash": _unique(
            [
                link.hash if link else None,
                link.previousHash if link else None,
                spec.commit.sha,
            ]
        ),
        "ip": _unique(initiator.sourceIPs),
    }


def _kubeledger(name: str, spec: model.RecordSpec) -> dict[str, Any]:
    subject = spec.subject
    return {
        "record": {"name": name},
        "action": spec.action.value,
        "severity": spec.severity.value,
        "observation": spec.observation.value,
        "subject": {
            "kind": subject.kind,
            "namespace": subject.namespace,
            "name": subject.name,
            "uid": subject.uid,
            "resource_version": subject.resourceVersion,
        },
        "changes": [_change(change) for change in spec.changes],
        "changes_truncated": spec.changesTruncated,
        # What was cut to keep the record within etcd's limit (``core.bounds``).
        "truncated": [{"path": cut.path, "bytes": cut.bytes, "sha256": cut.sha256}
                      for cut in spec.truncated or ()],
        "changed_paths": [change.path for change in spec.changes],
        "reasons": list(spec.reasons),
        "anomalies": [{"kind": anomaly.kind.value, "reason": anomaly.reason}
                      for anomaly in spec.anomalies],
        "initiator": _initiator(spec.initiator),
        "commit": {
            "sha": spec.commit.sha,
            "repository": spec.commit.repository,
            "source": spec.commit.source.value,
        },
        "chain": _chain(spec),
    }


def _change(change: model.FieldChange) -> dict[str, Any]:
    """One changed field, its values as JSON text.

    A field's values can be strings in one record and objects in the next; as JSON text
    they always fit one mapping, and the text still says exactly what the value was.
    An absent value (an added or removed field) stays absent.
    """
    return {
        "path": change.path,
        "old": None if change.old is None else _json(change.old),
        "new": None if change.new is None else _json(change.new),
    }


def _initiator(initiator: model.Initiator) -> dict[str, Any]:
    return {
        "username": initiator.username,
        "uid": initiator.uid,
        "groups": initiator.groups,
        "source": initiator.source.value,
        "verified": initiator.verified,
        "tool": initiator.tool,
        "impersonated_by": initiator.impersonatedBy,
        "declared": initiator.declared,
        "declared_mismatch": initiator.declaredMismatch,
        "source_ips": initiator.sourceIPs,
    }


def _chain(spec: model.RecordSpec) -> dict[str, Any] | None:
    link = spec.chain
    if link is None:
        return None
    return {"sequence": link.sequence, "previous_hash": link.previousHash, "hash": link.hash,
            "content": chain.canonical_json(spec.wire()).decode()}


def _is_rbac(subject: model.Subject) -> bool:
    # By API group, not kind: another group may well define a kind called "Role".
    group, _, _ = subject.apiVersion.rpartition("/")
    return group == RBAC_API_GROUP


def _timestamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken to be UTC already, as record times are."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _json(value: model.JsonValue) -> str:
    # The chain's canonical form: the same value always gives the same text, so keyword
    # matches work, and a document rebuilt from its content (``trail``) says the same.
    return chain.canonical_json(value).decode()


def _unique(values: Iterable[str | None]) -> list[str]:
    """The set values, first occurrence first."""
    return list(dict.fromkeys(value for value in values if value))


def _pruned(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without unset values, recursively; ``False`` and ``0`` are values."""
    kept = {key: _pruned_value(value) for key, value in fields.items()}
    return {key: value for key, value in kept.items() if not _unset(value)}


def _pruned_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _pruned(value)
    if isinstance(value, list):
        return [_pruned_value(item) for item in value]
    return value


def _unset(value: Any) -> bool:
    # An empty string is how the record says "none": the namespace of a cluster-scoped
    # object, a chain hash not computed yet.
    return value is None or (isinstance(value, str | list | dict) and not value)
