"""The index template and the ILM policy kubeledger installs in Elasticsearch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kubeledger.core.checkpoints import Checkpoint
from kubeledger.sinks.elasticsearch import anchors, ecs
from kubeledger.sinks.elasticsearch import template as elasticsearch_setup
from unit import records


def template(**options: Any) -> dict[str, Any]:
    return elasticsearch_setup.index_template("kubeledger", **{"ilm_policy": None, **options})


def field_types() -> dict[str, str]:
    return elasticsearch_setup.template_field_types(template())


def field_mapping(path: str) -> dict[str, Any]:
    level: dict[str, Any] = {"properties": template()["template"]["mappings"]["properties"]}
    for name in path.split("."):
        level = level["properties"][name]
    return level


def test_the_template_matches_the_prefixed_indices() -> None:
    body = elasticsearch_setup.index_template("audit", ilm_policy=None)

    assert body["index_patterns"] == ["audit-*"]
    assert body["priority"] > 100


def test_the_template_is_json() -> None:
    body = template(ilm_policy="kubeledger")

    assert json.loads(json.dumps(body)) == body


def test_unknown_fields_are_kept_but_not_indexed() -> None:
    assert template()["template"]["mappings"]["dynamic"] is False


def test_every_mapped_field_is_one_a_record_or_a_checkpoint_can_produce() -> None:
    mapped = elasticsearch_setup.template_field_paths(template())
    multi_fields = {path for path in mapped if path.rpartition(".")[0] in mapped}
    documents = [
        ecs.to_document(records.RECORD_NAME, spec)
        for spec in (
            records.full_spec(),
            records.full_spec_with(initiator=records.direct_initiator()),
        )
    ]
    checkpoint = Checkpoint("local", 7, "ab" * 32, records.RECORD_NAME, records.OBSERVED_AT)
    documents.append(anchors.to_document(checkpoint.signed(b"k" * 32)))
    emitted = set().union(*(records.leaf_paths(document) for document in documents))

    assert mapped - multi_fields == emitted


@pytest.mark.parametrize(
    ("path", "field_type"),
    [
        ("@timestamp", "date"),
        ("event.severity", "long"),
        ("kubeledger.chain.sequence", "long"),
        ("kubeledger.checkpoint.sequence", "long"),
        ("kubeledger.checkpoint.signature", "keyword"),
        ("kubeledger.initiator.verified", "boolean"),
        ("kubeledger.initiator.declared_mismatch", "boolean"),
        ("kubeledger.changes_truncated", "boolean"),
        ("kubeledger.initiator.source_ips", "ip"),
        ("related.ip", "ip"),
        ("kubeledger.changes.path", "keyword"),
        ("kubeledger.changed_paths", "keyword"),
        ("kubeledger.changes.old", "text"),
        ("kubeledger.changes.old.keyword", "keyword"),
        ("kubeledger.changes.new", "text"),
        ("kubeledger.changes.new.keyword", "keyword"),
        ("user.name", "keyword"),
        ("user.name.text", "text"),
        ("user.effective.name", "keyword"),
        ("event.action", "keyword"),
        ("orchestrator.resource.id", "keyword"),
    ],
)
def test_field_types(path: str, field_type: str) -> None:
    assert field_types()[path] == field_type


def test_every_keyword_ignores_values_too_long_to_index() -> None:
    mappings = list(_all_mappings(template()["template"]["mappings"]))
    keywords = [mapping for mapping in mappings
                if mapping.get("type") == "keyword" and mapping.get("index", True)]

    assert len(keywords) > 40
    assert {mapping["ignore_above"] for mapping in keywords} == {elasticsearch_setup.IGNORE_ABOVE}


def test_a_malformed_address_does_not_reject_the_record() -> None:
    assert field_mapping("kubeledger.initiator.source_ips")["ignore_malformed"] is True
    assert field_mapping("related.ip")["ignore_malformed"] is True


def test_changes_are_plain_objects_so_kibana_can_search_their_paths() -> None:
    changes = field_mapping("kubeledger.changes")

    assert "type" not in changes  # an object, not "nested": KQL and Lens work on it directly
    assert set(changes["properties"]) == {"path", "old", "new"}


def test_template_field_paths_include_multi_fields() -> None:
    paths = elasticsearch_setup.template_field_paths(template())

    assert {"user.name", "user.name.text", "kubeledger.changes.old.keyword"} <= paths
    assert "kubeledger.changes" not in paths  # an object holds no value of its own


def test_the_ilm_policy_is_attached_when_there_is_one() -> None:
    settings = template(ilm_policy="kubeledger-audit")["template"]["settings"]

    assert settings["index.lifecycle.name"] == "kubeledger-audit"


def test_no_lifecycle_setting_without_ilm() -> None:
    # A cluster without ILM refuses the setting, and with it the whole template.
    settings = template()["template"]["settings"]

    assert not any("lifecycle" in name for name in settings)


def test_shards_and_replicas() -> None:
    settings = template(shards=3, replicas=2)["template"]["settings"]

    assert settings["index.number_of_shards"] == 3
    assert settings["index.number_of_replicas"] == 2
    assert "index.auto_expand_replicas" not in settings


def test_by_default_one_replica_when_the_cluster_has_room_for_it() -> None:
    settings = template()["template"]["settings"]

    assert settings["index.number_of_shards"] == 1
    assert settings["index.auto_expand_replicas"] == "0-1"
    assert "index.number_of_replicas" not in settings


@pytest.mark.parametrize("options", [{"shards": 0}, {"replicas": -1}])
def test_impossible_sizes_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        template(**options)


def test_a_bad_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="index prefix"):
        elasticsearch_setup.index_template("Audit", ilm_policy=None)


def test_each_call_builds_a_fresh_template() -> None:
    first = template()
    first["template"]["mappings"]["properties"]["event"]["properties"].clear()

    assert "action" in field_mapping("event")["properties"]


def test_ilm_keeps_every_record_at_least_the_retention() -> None:
    phases = elasticsearch_setup.ilm_policy_body(90)["policy"]["phases"]

    assert phases["hot"]["min_age"] == "0ms"
    # An index is aged from its first record; its last can be a month younger.
    assert phases["delete"] == {"min_age": "121d", "actions": {"delete": {}}}


def test_ilm_refuses_a_retention_under_a_day() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        elasticsearch_setup.ilm_policy_body(0)


def _all_mappings(mapping: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A mapping and every mapping inside it: object properties and multi-fields."""
    yield mapping
    for child in (*mapping.get("properties", {}).values(), *mapping.get("fields", {}).values()):
        yield from _all_mappings(child)


def test_the_chain_content_is_kept_but_never_indexed() -> None:
    assert field_mapping("kubeledger.chain.content") == {
        "type": "keyword", "index": False, "doc_values": False}
