"""The ECS document of an audit record, and the index it goes to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kubeledger.core import chain, model
from kubeledger.sinks.elasticsearch import ecs
from kubeledger.sinks.elasticsearch import template as elasticsearch_setup
from unit import records


def document_of(spec: model.RecordSpec) -> dict[str, Any]:
    return ecs.to_document(records.RECORD_NAME, spec)


def test_every_field_of_a_full_record_is_mapped_in_the_index_template() -> None:
    template = elasticsearch_setup.index_template("kubeledger", ilm_policy=None)
    mapped = elasticsearch_setup.template_field_paths(template)
    direct = records.full_spec_with(initiator=records.direct_initiator())

    for spec in (records.full_spec(), direct):
        assert records.leaf_paths(document_of(spec)) - mapped == set()


def test_the_record_name_identifies_the_document() -> None:
    document = document_of(records.full_spec())

    assert document["kubeledger"]["record"]["name"] == records.RECORD_NAME
    assert document["event"]["id"] == records.RECORD_NAME


def test_event_fields() -> None:
    event = document_of(records.full_spec())["event"]

    assert event == {
        "id": records.RECORD_NAME,
        "kind": "event",
        "category": ["configuration"],
        "type": ["change"],
        "action": "image-changed",
        "outcome": "success",
        "severity": 47,
        "dataset": "kubeledger.audit",
        "module": "kubeledger",
    }


def test_ecs_version_defaults_to_the_documented_one_and_can_be_chosen() -> None:
    chosen = ecs.to_document(records.RECORD_NAME, records.full_spec(), ecs_version="8.11.0")

    assert document_of(records.full_spec())["ecs"] == {"version": ecs.ECS_VERSION}
    assert chosen["ecs"] == {"version": "8.11.0"}


def test_timestamp_is_the_observation_time_in_utc() -> None:
    document = document_of(records.full_spec())

    assert document["@timestamp"] == "2025-11-26T07:18:00.123456Z"


def test_a_naive_observation_time_is_taken_as_utc() -> None:
    naive = records.OBSERVED_AT.replace(tzinfo=None)
    document = document_of(records.full_spec_with(observedAt=naive))

    assert document["@timestamp"] == "2025-11-26T07:18:00.123456Z"


def test_an_observation_time_in_another_zone_is_written_in_utc() -> None:
    observed = datetime(2025, 11, 26, 9, 18, tzinfo=timezone(timedelta(hours=2)))
    document = document_of(records.full_spec_with(observedAt=observed))

    assert document["@timestamp"] == "2025-11-26T07:18:00.000000Z"


def test_orchestrator_fields_describe_the_object() -> None:
    document = document_of(records.full_spec())
    subject = records.deployment()

    assert document["orchestrator"] == {
        "type": "kubernetes",
        "cluster": {"name": "prod-eu-1"},
        "namespace": "shop",
        "api_version": "apps/v1",
        "resource": {"type": "deployment", "name": "web", "id": subject.uid},
    }
    assert document["kubeledger"]["subject"] == {
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "uid": subject.uid,
        "resource_version": "48213",
    }


def test_a_cluster_scoped_object_has_no_namespace_field() -> None:
    document = document_of(records.full_spec_with(subject=records.cluster_role_binding()))

    assert "namespace" not in document["orchestrator"]
    assert "namespace" not in document["kubeledger"]["subject"]
    assert document["orchestrator"]["resource"]["type"] == "clusterrolebinding"


def test_rbac_changes_are_also_iam_admin_events() -> None:
    spec = records.full_spec_with(
        subject=records.cluster_role_binding(), action=model.Action.SUBJECTS_CHANGED
    )
    event = document_of(spec)["event"]

    assert event["category"] == ["configuration", "iam"]
    assert event["type"] == ["change", "admin"]


def test_a_kind_called_role_outside_the_rbac_group_is_no_iam_event() -> None:
    look_alike = records.deployment().model_copy(
        update={"apiVersion": "example.com/v1", "kind": "Role"}
    )
    event = document_of(records.full_spec_with(subject=look_alike))["event"]

    assert event["category"] == ["configuration"]
    assert event["type"] == ["change"]


@pytest.mark.parametrize(
    ("action", "event_type"),
    [
        (model.Action.CREATED, "creation"),
        (model.Action.DELETED, "deletion"),
        (model.Action.DELETED_WHILE_UNOBSERVED, "deletion"),
        (model.Action.CHANGED_WHILE_UNOBSERVED, "change"),
        (model.Action.SCALED, "change"),
        (model.Action.ROLLED_BACK, "change"),
    ],
)
def test_event_type_follows_the_action(action: model.Action, event_type: str) -> None:
    document = document_of(records.full_spec_with(action=action))

    assert document["event"]["type"] == [event_type]
    assert document["event"]["action"] == action.value
    assert document["kubeledger"]["action"] == action.value


@pytest.mark.parametrize(
    ("severity", "score"),
    [
        (model.Severity.INFO, 21),
        (model.Severity.NOTICE, 47),
        (model.Severity.WARNING, 73),
        (model.Severity.CRITICAL, 99),
    ],
)
def test_severity_is_a_number_and_a_keyword(severity: model.Severity, score: int) -> None:
    document = document_of(records.full_spec_with(severity=severity))

    assert document["event"]["severity"] == score
    assert document["kubeledger"]["severity"] == severity.value


def test_every_severity_has_a_number() -> None:
    assert set(ecs.SEVERITY_SCORES) == set(model.Severity)


def test_severity_numbers_rise_with_severity() -> None:
    ranked = sorted(model.Severity, key=lambda severity: severity.rank)
    scores = [ecs.SEVERITY_SCORES[severity] for severity in ranked]

    assert scores == sorted(set(scores))


def test_impersonation_names_the_real_user_and_the_assumed_one() -> None:
    document = document_of(records.full_spec())
    assumed = records.impersonated_initiator()

    assert document["user"] == {
        "name": records.REAL_USER,
        "effective": {
            "name": records.ASSUMED_USER,
            "id": assumed.uid,
            "group": {"name": assumed.groups},
        },
    }
    assert document["kubeledger"]["initiator"]["impersonated_by"] == records.REAL_USER
    assert document["kubeledger"]["initiator"]["username"] == records.ASSUMED_USER


def test_a_direct_change_names_the_user_with_id_and_groups() -> None:
    initiator = records.direct_initiator()
    document = document_of(records.full_spec_with(initiator=initiator))

    assert document["user"] == {
        "name": records.REAL_USER,
        "id": initiator.uid,
        "group": {"name": initiator.groups},
    }


def test_related_users_name_everyone_involved_once() -> None:
    document = document_of(records.full_spec())

    assert document["related"]["user"] == [
        records.REAL_USER,
        records.ASSUMED_USER,
        records.DECLARED_USER,
    ]


def test_a_declared_user_equal_to_the_authenticated_one_is_related_once() -> None:
    initiator = records.direct_initiator().model_copy(update={"declared": records.REAL_USER})
    document = document_of(records.full_spec_with(initiator=initiator))

    assert document["related"]["user"] == [records.REAL_USER]


def test_related_hashes_and_ips() -> None:
    related = document_of(records.full_spec())["related"]

    assert related["hash"] == ["b" * 64, "a" * 64, "3f786850e387550fdab836ed7e6dc881de23001b"]
    assert related["ip"] == ["10.0.0.17", "2001:db8::17"]


def test_an_unresolved_initiator_names_nobody_and_says_so() -> None:
    document = document_of(records.full_spec_with(initiator=model.Initiator()))

    assert "user" not in document
    assert "user" not in document["related"]
    assert document["kubeledger"]["initiator"] == {
        "source": "unresolved",
        "verified": False,
        "declared_mismatch": False,
    }


def test_initiator_detail_is_kept_under_kubeledger() -> None:
    initiator = document_of(records.full_spec())["kubeledger"]["initiator"]

    assert initiator == {
        "username": records.ASSUMED_USER,
        "uid": records.impersonated_initiator().uid,
        "groups": ["system:serviceaccounts", "system:serviceaccounts:shop"],
        "source": "admission",
        "verified": True,
        "tool": "kubectl-client-side-apply",
        "impersonated_by": records.REAL_USER,
        "declared": records.DECLARED_USER,
        "declared_mismatch": True,
        "source_ips": ["10.0.0.17", "2001:db8::17"],
    }


def test_commit_chain_and_observation() -> None:
    detail = document_of(records.full_spec())["kubeledger"]

    assert detail["observation"] == "live"
    assert detail["commit"] == {
        "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": "https://git.example.com/shop/deploy.git",
        "source": "argocd",
    }
    content = detail["chain"].pop("content")
    assert detail["chain"] == {"sequence": 4711, "previous_hash": "a" * 64, "hash": "b" * 64}
    # The whole spec as the hash covers it: Elasticsearch's copy verifies on its own.
    assert content == chain.canonical_json(records.full_spec().wire()).decode()


def test_changes_carry_values_as_json_text() -> None:
    detail = document_of(records.full_spec())["kubeledger"]

    assert detail["changes"] == [
        {
            "path": "spec.template.spec.containers[web].image",
            "old": '"shop/web:1.4.2"',
            "new": '"shop/web:1.5.0"',
        },
        {"path": "spec.replicas", "old": "3", "new": "5"},
        {
            "path": "spec.template.metadata.labels",
            "old": '{"app":"web"}',
            "new": '{"app":"web","tier":"front"}',
        },
        {"path": "spec.paused", "new": "true"},
    ]
    assert detail["changes_truncated"] is True


def test_changed_paths_list_every_path_for_keyword_search() -> None:
    detail = document_of(records.full_spec())["kubeledger"]

    assert detail["changed_paths"] == [change["path"] for change in detail["changes"]]


def test_the_json_text_of_a_value_does_not_depend_on_key_order() -> None:
    change = model.FieldChange(path="metadata.labels", old={"b": 1, "a": 2}, new={"a": 2, "b": 1})
    detail = document_of(records.full_spec_with(changes=[change]))["kubeledger"]

    assert detail["changes"][0]["old"] == detail["changes"][0]["new"] == '{"a":2,"b":1}'


def test_the_snapshot_is_no_field_of_the_document_only_part_of_its_content() -> None:
    document = document_of(records.full_spec())
    content = document["kubeledger"]["chain"].pop("content")

    assert records.SNAPSHOT_MARKER in content
    assert records.SNAPSHOT_MARKER not in json.dumps(document)
    assert not any("snapshot" in path for path in records.leaf_paths(document))


def test_false_and_zero_are_kept_but_unset_values_are_omitted() -> None:
    spec = records.full_spec_with(
        initiator=model.Initiator(),
        commit=model.Commit(),
        chain=model.Chain(sequence=0, previousHash=""),
        changes=[],
        changesTruncated=False,
    )
    detail = document_of(spec)["kubeledger"]
    detail["chain"].pop("content")

    assert detail["chain"] == {"sequence": 0}
    assert detail["changes_truncated"] is False
    assert "changes" not in detail
    assert "changed_paths" not in detail
    assert detail["commit"] == {"source": "unresolved"}


def test_no_field_is_null_or_empty() -> None:
    spec = records.full_spec_with(
        subject=records.cluster_role_binding(), initiator=model.Initiator()
    )
    unset = [value for value in _leaf_values(document_of(spec)) if value in (None, "", [], {})]

    assert unset == []


def test_index_name_comes_from_the_records_own_time() -> None:
    assert ecs.index_name("kubeledger", records.OBSERVED_AT) == "kubeledger-2025.11"


def test_index_name_is_stable_across_calls() -> None:
    names = {ecs.index_name("audit", records.OBSERVED_AT) for _ in range(3)}

    assert names == {"audit-2025.11"}


def test_index_name_uses_the_utc_month() -> None:
    late_evening_west = datetime(2025, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    naive_midnight = datetime(2026, 1, 1, 0, 0)

    assert ecs.index_name("kubeledger", late_evening_west) == "kubeledger-2025.12"
    assert ecs.index_name("kubeledger", naive_midnight) == "kubeledger-2026.01"


def test_a_month_old_record_retried_today_goes_to_its_own_month() -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=40)

    assert ecs.index_name("kubeledger", old) != ecs.index_name("kubeledger", now)
    assert ecs.index_name("kubeledger", old) == f"kubeledger-{old:%Y.%m}"


@pytest.mark.parametrize("prefix", ["", "Kubeledger", ".kubeledger", "-audit", "audit*", "a b"])
def test_index_name_refuses_a_prefix_elasticsearch_would_refuse(prefix: str) -> None:
    with pytest.raises(ValueError, match="index prefix"):
        ecs.index_name(prefix, records.OBSERVED_AT)


def _leaf_values(value: Any) -> Iterator[Any]:
    """Every scalar in a document, and every empty list or object as a value of its own."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list) and value:
        for item in value:
            yield from _leaf_values(item)
    else:
        yield value
