"""The projection keeps what people change and drops what the cluster writes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubeledger.core import projection
from unit import objects


def test_deployment_projection_keeps_spec_labels_annotations_and_phase_only() -> None:
    body = objects.deployment(annotations={"example.com/team": "payments"})

    projected = projection.project(body)

    assert projected == {
        "metadata": {
            "labels": {"app": "web"},
            "annotations": {"example.com/team": "payments"},
        },
        "spec": body["spec"],
        "rollout": {"phase": "complete"},
    }


def test_last_applied_configuration_is_dropped_with_the_secrets_it_copies() -> None:
    container = objects.container(env=[objects.env_var("DB_PASSWORD", "hunter2-in-apply")])
    body = objects.deployment(template=objects.pod_template([container]))
    assert "hunter2-in-apply" in body["metadata"]["annotations"][objects.LAST_APPLIED]

    annotations = projection.project(body)["metadata"].get("annotations", {})

    assert objects.LAST_APPLIED not in annotations
    assert "hunter2-in-apply" not in json.dumps(annotations)


@pytest.mark.parametrize(
    "annotation",
    [
        "deployment.kubernetes.io/revision",
        "rollout.argoproj.io/revision",
        "rollout.argoproj.io/workload-generation",
        "deprecated.daemonset.template.generation",
    ],
)
def test_controller_bookkeeping_annotations_are_dropped(annotation: str) -> None:
    body = objects.deployment(annotations={annotation: "7"})

    assert "annotations" not in projection.project(body)["metadata"]


def test_empty_labels_and_annotations_are_omitted() -> None:
    body = objects.stateful_set()

    assert projection.project(body)["metadata"] == {}


def test_projection_leaves_the_body_unchanged() -> None:
    body = objects.deployment()
    before = copy.deepcopy(body)

    projection.project(body)

    assert body == before


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (objects.deployment_status(generation=2), "complete"),
        # The controller has not seen the latest spec yet.
        (objects.deployment_status(generation=2, observed_generation=1), "progressing"),
        # Fewer updated pods than desired.
        (objects.deployment_status(generation=2, replicas=3, updated=1), "progressing"),
        # Old pods still terminating.
        (objects.deployment_status(generation=2, replicas=4, updated=3), "progressing"),
        # Updated pods not yet available.
        (objects.deployment_status(generation=2, updated=3, available=2), "progressing"),
        (objects.deployment_status(generation=2, updated=1, deadline_exceeded=True), "failed"),
    ],
)
def test_deployment_rollout_phase_follows_kubectl_rollout_status(
    status: dict[str, Any], phase: str
) -> None:
    body = objects.deployment(replicas=3, generation=2, status=status)

    assert projection.project(body)["rollout"] == {"phase": phase}


def test_deployment_without_status_counts_is_progressing() -> None:
    body = objects.deployment(status={})

    assert projection.project(body)["rollout"] == {"phase": "progressing"}


def test_missing_spec_replicas_means_one() -> None:
    body = objects.deployment(status=objects.deployment_status(replicas=1, updated=1))
    del body["spec"]["replicas"]

    assert projection.project(body)["rollout"] == {"phase": "complete"}


@pytest.mark.parametrize(
    ("status_phase", "phase"),
    [
        ("Healthy", "complete"),
        ("Degraded", "failed"),
        ("Progressing", "progressing"),
        ("Paused", "progressing"),
    ],
)
def test_argo_rollout_phase_follows_its_status_phase(status_phase: str, phase: str) -> None:
    projected = projection.project(objects.argo_rollout(phase=status_phase))

    assert projected["rollout"] == {"phase": phase}
    assert "annotations" not in projected["metadata"]


def test_other_workloads_have_no_rollout_phase() -> None:
    projected = projection.project(objects.stateful_set())

    assert set(projected) == {"metadata", "spec"}


def test_role_projection_holds_rules_and_omits_an_absent_aggregation_rule() -> None:
    rules = [objects.rule(["get"], ["pods"])]
    body = objects.role(rules, labels={"team": "shop"})

    assert projection.project(body) == {"metadata": {"labels": {"team": "shop"}}, "rules": rules}


def test_cluster_role_projection_holds_its_aggregation_rule() -> None:
    body = objects.cluster_role([], aggregation_labels={"example.com/aggregate-to-ops": "true"})

    projected = projection.project(body)

    assert projected["aggregationRule"] == body["aggregationRule"]
    assert projected["rules"] == []


def test_binding_projection_holds_subjects_and_role_ref() -> None:
    body = objects.cluster_role_binding([objects.user("alice")])

    assert projection.project(body) == {
        "metadata": {},
        "subjects": [objects.user("alice")],
        "roleRef": body["roleRef"],
    }
