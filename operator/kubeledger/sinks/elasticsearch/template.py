"""What kubeledger installs in Elasticsearch: the index template and the ILM policy.

Pure builders, no I/O: the Elasticsearch sink's ``prepare`` sends these bodies with
``PUT _index_template/<TEMPLATE_NAME>`` and, where the cluster offers ILM,
``PUT _ilm/policy/<ILM_POLICY_NAME>``. The mapping covers every field ``ecs.to_document``
and ``anchors.to_document`` emit (a unit test checks both directions), and the Kibana
assets in ``kibana/`` refer only to fields mapped here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubeledger.sinks.elasticsearch import ecs

TEMPLATE_NAME = "kubeledger"
ILM_POLICY_NAME = "kubeledger"
# The Kibana data view in kibana/kubeledger.ndjson matches this prefix ("kubeledger-*").
DEFAULT_INDEX_PREFIX = "kubeledger"

# Above the stack's built-in templates (priority 100 for logs-*-*, metrics-*-*, ...), so
# a prefix such as "logs-kubeledger" still gets this template and not a data stream's.
TEMPLATE_PRIORITY = 200
# The template's "version", for people reading the installed template (GET
# _index_template/kubeledger): raise it with every mapping change. The sink puts the
# template at every start whatever is installed, so nothing compares it.
TEMPLATE_VERSION = 5

# Longest value kept as an exact keyword; longer values are still stored and, for the
# text fields, searchable as words. Elasticsearch refuses terms over 32 KiB outright.
IGNORE_ABOVE = 1024

_KEYWORD_FIELDS = (
    "ecs.version",
    "event.id",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.dataset",
    "event.module",
    "user.id",
    "user.group.name",
    "user.effective.id",
    "user.effective.group.name",
    "orchestrator.type",
    "orchestrator.cluster.name",
    "orchestrator.namespace",
    "orchestrator.api_version",
    "orchestrator.resource.type",
    "orchestrator.resource.name",
    "orchestrator.resource.id",
    "related.user",
    "related.hash",
    "kubeledger.record.name",
    "kubeledger.action",
    "kubeledger.severity",
    "kubeledger.observation",
    "kubeledger.subject.kind",
    "kubeledger.subject.namespace",
    "kubeledger.subject.name",
    "kubeledger.subject.uid",
    "kubeledger.subject.resource_version",
    "kubeledger.changes.path",
    "kubeledger.changed_paths",
    "kubeledger.truncated.path",
    "kubeledger.truncated.sha256",
    "kubeledger.initiator.username",
    "kubeledger.initiator.uid",
    "kubeledger.initiator.groups",
    "kubeledger.initiator.source",
    "kubeledger.initiator.tool",
    "kubeledger.initiator.impersonated_by",
    "kubeledger.initiator.declared",
    "kubeledger.anomalies.kind",
    "kubeledger.commit.sha",
    "kubeledger.commit.repository",
    "kubeledger.commit.source",
    "kubeledger.chain.previous_hash",
    "kubeledger.chain.hash",
    # Checkpoints of the chain (``anchors``): documents of their own in the same indices.
    "kubeledger.checkpoint.hash",
    "kubeledger.checkpoint.record",
    "kubeledger.checkpoint.signature",
)
# ECS gives user names a full-text sub-field; so do we.
_NAME_FIELDS = ("user.name", "user.effective.name")
# Old and new values and the reasons: searchable by word ("nginx", "cluster-admin") and,
# when short, by exact text.
_VALUE_FIELDS = ("kubeledger.changes.old", "kubeledger.changes.new", "kubeledger.reasons",
                 "kubeledger.anomalies.reason")
_LONG_FIELDS = ("event.severity", "kubeledger.chain.sequence", "kubeledger.checkpoint.sequence",
                "kubeledger.truncated.bytes")
_BOOLEAN_FIELDS = (
    "kubeledger.changes_truncated",
    "kubeledger.initiator.verified",
    "kubeledger.initiator.declared_mismatch",
)
_IP_FIELDS = ("related.ip", "kubeledger.initiator.source_ips")


def index_template(
    prefix: str,
    *,
    ilm_policy: str | None,
    shards: int = 1,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The composable index template body for every ``<prefix>-*`` index.

    ``ilm_policy`` names the lifecycle policy to attach, or None where the cluster has
    no ILM (the setting would be refused there). ``replicas`` None means one replica
    when a second node exists and none on a single node (``auto_expand_replicas``), so
    a one-node cluster stays green and a larger one keeps a copy of the audit trail.

    The mapping is ``dynamic: false``: a field this version does not know (a newer
    operator writing to an index created by an older template) is kept in ``_source``
    but not indexed. ``strict`` would reject the whole document instead, and a rejected
    record would block delivery for good; unit tests keep the mapping complete.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if replicas is not None and replicas < 0:
        raise ValueError(f"replicas must not be negative, not {replicas}")
    return {
        "index_patterns": [f"{ecs.check_index_prefix(prefix)}-*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {
            "description": "kubeledger audit records in Elastic Common Schema form",
            "managed_by": "kubeledger",
            "ecs_version": ecs.ECS_VERSION,
        },
        "template": {
            "settings": _settings(ilm_policy=ilm_policy, shards=shards, replicas=replicas),
            "mappings": {"dynamic": False, "properties": _nested(_field_mappings())},
        },
    }


def ilm_policy_body(retention_days: int) -> dict[str, Any]:
    """The ILM policy body: keep every record at least ``retention_days``, then delete.

    There is no rollover: indices are monthly by record time (``ecs.index_name``), and
    ILM counts an index's age from its creation, that is from its first record. The
    newest record in an index can be a month younger than that, so the delete phase
    waits ``retention_days`` plus one month; records are kept up to a month longer than
    asked, never shorter, which is the side an audit trail must err on.
    """
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, not {retention_days}")
    return {
        "policy": {
            "_meta": {"managed_by": "kubeledger", "retention_days": retention_days},
            "phases": {
                "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
                "delete": {
                    "min_age": f"{retention_days + ecs.INDEX_SPAN_DAYS}d",
                    "actions": {"delete": {}},
                },
            },
        }
    }


def template_field_types(template: Mapping[str, Any]) -> dict[str, str]:
    """Every mapped field of an index template body, by dotted path, with its type.

    Multi-fields appear under their own path (``user.name.text``); object fields, which
    hold no values themselves, do not appear.
    """
    return dict(_leaves(template["template"]["mappings"]["properties"], prefix=""))


def template_field_paths(template: Mapping[str, Any]) -> set[str]:
    """Every mapped field path of an index template body, multi-fields included."""
    return set(template_field_types(template))


def _settings(*, ilm_policy: str | None, shards: int, replicas: int | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "index.number_of_shards": shards,
        # Audit history is written once and read rarely: trade a little CPU for disk.
        "index.codec": "best_compression",
    }
    if replicas is None:
        settings["index.auto_expand_replicas"] = "0-1"
    else:
        settings["index.number_of_replicas"] = replicas
    if ilm_policy is not None:
        settings["index.lifecycle.name"] = ilm_policy
    return settings


def _field_mappings() -> dict[str, dict[str, Any]]:
    """Each mapped field by dotted path; built fresh on each call, as callers may edit it."""
    fields: dict[str, dict[str, Any]] = {"@timestamp": {"type": "date"}}
    fields.update((path, _keyword()) for path in _KEYWORD_FIELDS)
    fields.update(
        # "text" rather than ECS's match_only_text, which lives in a module that minimal
        # Elasticsearch distributions (like the one our tests run) leave out.
        (path, _keyword(fields={"text": {"type": "text"}}))
        for path in _NAME_FIELDS
    )
    fields.update(
        (path, {"type": "text", "fields": {"keyword": _keyword()}}) for path in _VALUE_FIELDS
    )
    fields.update((path, {"type": "long"}) for path in _LONG_FIELDS)
    fields.update((path, {"type": "boolean"}) for path in _BOOLEAN_FIELDS)
    # A malformed address (the apiserver reports what the client claimed) must not cost
    # the whole record: it stays in _source, unindexed.
    fields.update((path, {"type": "ip", "ignore_malformed": True}) for path in _IP_FIELDS)
    # What the chain's hash covers, for verifying this copy: kept, never searched.
    fields["kubeledger.chain.content"] = {"type": "keyword", "index": False,
                                          "doc_values": False}
    return fields


def _keyword(**extra: Any) -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": IGNORE_ABOVE, **extra}


def _nested(fields: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Dotted paths to Elasticsearch's nested ``properties`` form (object fields)."""
    properties: dict[str, Any] = {}
    for path, mapping in fields.items():
        *parents, leaf = path.split(".")
        level = properties
        for parent in parents:
            level = level.setdefault(parent, {"properties": {}})["properties"]
        level[leaf] = mapping
    return properties


def _leaves(properties: Mapping[str, Any], *, prefix: str) -> Iterator[tuple[str, str]]:
    for name, field in properties.items():
        path = f"{prefix}{name}"
        if "properties" in field:
            yield from _leaves(field["properties"], prefix=f"{path}.")
            continue
        yield path, field["type"]
        for sub_name, sub_field in field.get("fields", {}).items():
            yield f"{path}.{sub_name}", sub_field["type"]
