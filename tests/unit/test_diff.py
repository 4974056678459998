"""Field-level diffs: paths a reader can follow, bounded in count and size."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kubeledger.core import diff, model, projection
from unit import objects


def projected_deployment(**kwargs: Any) -> dict[str, Any]:
    return projection.project(objects.deployment(**kwargs))


def changed(
    old: dict[str, Any] | None, new: dict[str, Any] | None, **limits: int
) -> list[tuple[str, Any, Any]]:
    changes, truncated = diff.diff(old, new, **limits)
    assert not truncated
    return [(change.path, change.old, change.new) for change in changes]


def with_containers(*containers: dict[str, Any]) -> dict[str, Any]:
    return projected_deployment(template=objects.pod_template(containers))


def test_equal_projections_have_no_changes() -> None:
    assert diff.diff(projected_deployment(), projected_deployment()) == ([], False)


def test_container_image_change_is_addressed_by_container_name() -> None:
    old = with_containers(objects.container("sidecar", "envoy:1.30"), objects.container("web"))
    new = with_containers(
        objects.container("sidecar", "envoy:1.30"), objects.container("web", "web:2.0.0")
    )

    assert changed(old, new) == [
        ("spec.template.spec.containers[name=web].image", objects.IMAGE, "web:2.0.0")
    ]


def test_added_and_removed_env_vars_are_whole_items_matched_by_name() -> None:
    old = with_containers(objects.container(env=[objects.env_var("LOG_LEVEL", "info")]))
    new = with_containers(objects.container(env=[objects.env_var("DB_HOST", "db")]))

    assert changed(old, new) == [
        (
            "spec.template.spec.containers[name=web].env[name=LOG_LEVEL]",
            {"name": "LOG_LEVEL", "value": "info"},
            None,
        ),
        (
            "spec.template.spec.containers[name=web].env[name=DB_HOST]",
            None,
            {"name": "DB_HOST", "value": "db"},
        ),
    ]


def test_keys_with_dots_and_slashes_are_quoted() -> None:
    old = projected_deployment()
    new = projected_deployment(annotations={"example.com/team": "payments"})

    assert changed(old, new) == [
        ('metadata.annotations["example.com/team"]', None, "payments"),
    ]


def test_removed_field_has_no_new_value() -> None:
    old = projected_deployment(annotations={"example.com/team": "payments"})
    new = projected_deployment()

    assert changed(old, new) == [
        ('metadata.annotations["example.com/team"]', "payments", None),
    ]


def test_lists_of_unnamed_mappings_are_matched_by_index_and_scalar_lists_whole() -> None:
    old = projection.project(objects.role([objects.rule(["get"], ["pods"])]))
    new = projection.project(
        objects.role([objects.rule(["get", "list"], ["pods"]), objects.rule(["get"], ["secrets"])])
    )

    assert changed(old, new) == [
        ("rules[0].verbs", ["get"], ["get", "list"]),
        ("rules[1]", None, objects.rule(["get"], ["secrets"])),
    ]


def test_lists_with_repeated_names_fall_back_to_index() -> None:
    # Two mounts of one volume share a name: matching by name would be ambiguous.
    def mounts(*sub_paths: str) -> dict[str, Any]:
        return {"volumeMounts": [{"name": "config", "subPath": path} for path in sub_paths]}

    assert changed(mounts("a", "b"), mounts("a", "c")) == [
        ("volumeMounts[1].subPath", "b", "c"),
    ]


def test_args_change_is_reported_as_the_whole_list() -> None:
    old = with_containers(objects.container(args=["--port", "8080"]))
    new = with_containers(objects.container(args=["--port", "9090"]))

    assert changed(old, new) == [
        ("spec.template.spec.containers[name=web].args", ["--port", "8080"], ["--port", "9090"])
    ]


def test_names_outside_the_plain_alphabet_are_quoted() -> None:
    assert changed({"items": []}, {"items": [{"name": "a b]"}]}) == [
        ('items[name="a b]"]', None, {"name": "a b]"})
    ]


def test_a_created_object_shows_its_fields_as_added() -> None:
    new = projection.project(objects.role([objects.rule(["get"], ["pods"])], labels={"a": "b"}))

    assert changed(None, new) == [
        ("metadata.labels.a", None, "b"),
        ("rules", None, new["rules"]),
    ]


def test_a_deleted_object_shows_its_fields_as_removed() -> None:
    old = projection.project(objects.cluster_role_binding([objects.user("alice")]))

    assert changed(old, None) == [
        ("roleRef.apiGroup", "rbac.authorization.k8s.io", None),
        ("roleRef.kind", "ClusterRole", None),
        ("roleRef.name", "ops", None),
        ("subjects", [objects.user("alice")], None),
    ]


def test_a_missing_mapping_and_an_empty_one_are_the_same() -> None:
    assert changed({"spec": {"securityContext": {}}}, {"spec": {}}) == []


def test_key_order_does_not_matter() -> None:
    old = projected_deployment()
    new = copy.deepcopy(old)
    new["spec"] = dict(reversed(list(new["spec"].items())))

    assert changed(old, new) == []


def test_changes_come_in_path_order() -> None:
    old = projected_deployment(replicas=3, annotations={"b": "1", "a": "1"})
    new = projected_deployment(replicas=5, annotations={"b": "2", "a": "2"})
    new["spec"]["minReadySeconds"] = 10

    assert [path for path, _, _ in changed(old, new)] == [
        "metadata.annotations.a",
        "metadata.annotations.b",
        "spec.minReadySeconds",
        "spec.replicas",
    ]


def test_too_many_changes_are_cut_and_reported_truncated() -> None:
    old = {"metadata": {"labels": {f"k{index:02}": "old" for index in range(10)}}}
    new = {"metadata": {"labels": {f"k{index:02}": "new" for index in range(10)}}}

    changes, truncated = diff.diff(old, new, max_changes=3)

    assert truncated
    assert [change.path for change in changes] == [
        "metadata.labels.k00",
        "metadata.labels.k01",
        "metadata.labels.k02",
    ]


def test_exactly_max_changes_is_not_truncated() -> None:
    changes, truncated = diff.diff({"a": 1, "b": 1}, {"a": 2, "b": 2}, max_changes=2)

    assert len(changes) == 2
    assert not truncated


def test_a_large_value_is_replaced_by_a_truncation_marker() -> None:
    script = "echo start; " * 400
    old = with_containers(objects.container(command=["sh", "-c", "true"]))
    new = with_containers(objects.container(command=["sh", "-c", script]))

    (change,), _ = diff.diff(old, new, max_value_chars=2048)

    text = json.dumps(["sh", "-c", script], sort_keys=True, separators=(",", ":"))
    assert change.old == ["sh", "-c", "true"]
    assert change.new == {
        "truncated": True,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "chars": len(text),
    }


def test_changes_are_field_change_records() -> None:
    changes, _ = diff.diff({"spec": {"replicas": 1}}, {"spec": {"replicas": 2}})

    assert changes == [model.FieldChange(path="spec.replicas", old=1, new=2)]
