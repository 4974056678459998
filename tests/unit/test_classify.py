"""Each change gets the action, severity and reasons a reader of the record expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kubeledger.core import classify, model, projection, revisions
from kubeledger.core.classify import workloads
from unit import objects

Action = model.Action
Severity = model.Severity
Body = dict[str, Any]

OLD_IMAGE = "registry.example.com/shop/web:1.4.1"
NEW_IMAGE = "registry.example.com/shop/web:1.4.2"


def classified(
    old: Body | None, new: Body | None, context: classify.Context | None = None
) -> classify.Classification | None:
    """Classifies the change between two bodies the way the operator would: projected."""
    kind = (new or old or {})["kind"]
    return classify.classify(
        kind,
        projection.project(old) if old is not None else None,
        projection.project(new) if new is not None else None,
        context or classify.Context(),
    )


def expect(
    result: classify.Classification | None, action: Action, severity: Severity
) -> classify.Classification:
    assert result is not None
    assert (result.action, result.severity) == (action, severity)
    return result


def web(image: str = NEW_IMAGE, **kwargs: Any) -> Body:
    """A Deployment whose single container runs ``image``."""
    template = kwargs.pop("template", None) or objects.pod_template(
        [objects.container(image=image)], annotations=kwargs.pop("template_annotations", None)
    )
    return objects.deployment(template=template, **kwargs)


# Workloads


def test_created_workload_is_a_notice_naming_its_images() -> None:
    result = expect(classified(None, web()), Action.CREATED, Severity.NOTICE)

    assert result.reasons == (f"container web: {NEW_IMAGE}",)


def test_deleted_workload_is_a_warning() -> None:
    expect(classified(web(), None), Action.DELETED, Severity.WARNING)


def test_status_only_churn_is_not_recorded() -> None:
    old = web(status=objects.deployment_status())
    new = web(status=objects.deployment_status())
    new["status"]["conditions"][0]["lastUpdateTime"] = "2025-11-20T10:00:00Z"
    new["metadata"]["resourceVersion"] = "48999"

    assert classified(old, new) is None


def test_revision_annotation_change_is_not_recorded() -> None:
    assert classified(web(revision="4"), web(revision="5")) is None


def test_rollout_back_to_progressing_is_not_recorded() -> None:
    progressing = objects.deployment_status(updated=3, available=2)

    assert classified(web(), web(status=progressing)) is None


def test_image_change_is_a_notice_naming_old_and_new_image() -> None:
    result = expect(
        classified(web(OLD_IMAGE), web(NEW_IMAGE)), Action.IMAGE_CHANGED, Severity.NOTICE
    )

    assert result.reasons == (f"container web: {OLD_IMAGE} -> {NEW_IMAGE}",)


def test_init_container_image_change_is_an_image_change() -> None:
    def with_migration(image: str) -> Body:
        init = objects.container("migrate", image)
        return web(template=objects.pod_template([objects.container()], init_containers=[init]))

    result = classified(with_migration("migrate:1"), with_migration("migrate:2"))

    assert expect(result, Action.IMAGE_CHANGED, Severity.NOTICE).reasons == (
        "initContainer migrate: migrate:1 -> migrate:2",
    )


def test_added_sidecar_is_an_image_change() -> None:
    sidecar = objects.container("proxy", "envoyproxy/envoy:v1.30.1")
    old = web(template=objects.pod_template([objects.container()]))
    new = web(template=objects.pod_template([objects.container(), sidecar]))

    result = expect(classified(old, new), Action.IMAGE_CHANGED, Severity.NOTICE)

    assert "container proxy added: envoyproxy/envoy:v1.30.1" in result.reasons


def test_rollout_restart_annotation_is_a_restart() -> None:
    restarted_at = {workloads.RESTARTED_AT_ANNOTATION: "2025-11-20T10:15:00Z"}

    result = classified(web(), web(template_annotations=restarted_at))

    assert expect(result, Action.ROLLOUT_RESTARTED, Severity.NOTICE).reasons == (
        "restart requested at 2025-11-20T10:15:00Z",
    )


def test_argo_rollout_restart_at_is_a_restart() -> None:
    old = objects.argo_rollout()
    new = objects.argo_rollout(restart_at="2025-11-20T10:15:00Z")

    expect(classified(old, new), Action.ROLLOUT_RESTARTED, Severity.NOTICE)


def test_other_template_change_is_a_config_change_naming_the_changed_part() -> None:
    def with_log_level(level: str) -> Body:
        container = objects.container(env=[objects.env_var("LOG_LEVEL", level)])
        return web(template=objects.pod_template([container]))

    result = classified(with_log_level("info"), with_log_level("debug"))

    assert expect(result, Action.CONFIG_CHANGED, Severity.NOTICE).reasons == (
        "changed spec.template",
    )


def test_label_change_is_a_config_change() -> None:
    result = classified(web(), web(labels={"tier": "frontend"}))

    assert expect(result, Action.CONFIG_CHANGED, Severity.NOTICE).reasons == (
        "changed metadata.labels",
    )


@pytest.mark.parametrize(
    ("was_paused", "is_paused", "action"),
    [(None, True, Action.PAUSED), (False, True, Action.PAUSED), (True, False, Action.RESUMED)],
)
def test_pause_and_resume(was_paused: bool | None, is_paused: bool, action: Action) -> None:
    expect(classified(web(paused=was_paused), web(paused=is_paused)), action, Severity.NOTICE)


def test_scale_is_info() -> None:
    old = web(replicas=3)
    new = web(replicas=5, status=objects.deployment_status(replicas=5, updated=5))

    result = expect(classified(old, new), Action.SCALED, Severity.INFO)

    assert result.reasons == ("replicas 3 -> 5",)


def test_rollout_completion_is_info() -> None:
    old = web(status=objects.deployment_status(updated=3, available=1))

    expect(classified(old, web()), Action.ROLLOUT_COMPLETED, Severity.INFO)


def test_rollout_failure_is_a_warning() -> None:
    old = web(status=objects.deployment_status(updated=1))
    new = web(status=objects.deployment_status(updated=1, deadline_exceeded=True))

    expect(classified(old, new), Action.ROLLOUT_FAILED, Severity.WARNING)


def test_argo_rollout_degraded_is_a_failure() -> None:
    old = objects.argo_rollout(phase="Progressing")
    new = objects.argo_rollout(phase="Degraded")

    expect(classified(old, new), Action.ROLLOUT_FAILED, Severity.WARNING)


def test_rollout_undo_is_recognised_by_an_earlier_template_fingerprint() -> None:
    previous = web(OLD_IMAGE)
    current = web(NEW_IMAGE)
    context = classify.Context(
        older_revision_fingerprints=frozenset({revisions.fingerprint(previous["spec"]["template"])})
    )

    result = expect(classified(current, previous, context), Action.ROLLED_BACK, Severity.WARNING)

    assert result.reasons == (
        "pod template is that of an earlier revision",
        f"container web: {NEW_IMAGE} -> {OLD_IMAGE}",
    )


def test_a_template_never_seen_before_is_not_a_rollback() -> None:
    unrelated = web("registry.example.com/shop/web:0.9.0")["spec"]["template"]
    context = classify.Context(
        older_revision_fingerprints=frozenset({revisions.fingerprint(unrelated)}))

    expect(
        classified(web(OLD_IMAGE), web(NEW_IMAGE), context), Action.IMAGE_CHANGED, Severity.NOTICE
    )


def test_the_most_significant_action_wins_and_all_reasons_are_kept() -> None:
    old = web(OLD_IMAGE, replicas=3)
    new = web(NEW_IMAGE, replicas=5, labels={"tier": "frontend"})

    result = expect(classified(old, new), Action.IMAGE_CHANGED, Severity.NOTICE)

    assert result.reasons == (
        f"container web: {OLD_IMAGE} -> {NEW_IMAGE}",
        "changed metadata.labels",
        "replicas 3 -> 5",
    )


def test_severity_is_the_highest_of_everything_the_change_did() -> None:
    # Seen after downtime: scaled, and the rollout has failed since.
    old = web(replicas=3)
    new = web(replicas=5, status=objects.deployment_status(updated=1, deadline_exceeded=True))

    expect(classified(old, new), Action.SCALED, Severity.WARNING)


def test_precedence_is_the_documented_order() -> None:
    assert workloads.PRECEDENCE == (
        Action.ROLLED_BACK,
        Action.IMAGE_CHANGED,
        Action.ROLLOUT_RESTARTED,
        Action.CONFIG_CHANGED,
        Action.PAUSED,
        Action.RESUMED,
        Action.SCALED,
        Action.ROLLOUT_FAILED,
        Action.ROLLOUT_COMPLETED,
    )


def test_nothing_to_classify_without_either_side() -> None:
    assert classify.classify("Deployment", None, None) is None


# Roles and ClusterRoles


def test_created_harmless_role_is_a_notice() -> None:
    new = objects.role([objects.rule(["get", "list", "watch"], ["pods", "services"])])

    assert expect(classified(None, new), Action.CREATED, Severity.NOTICE).reasons == ()


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (objects.rule(["*"], ["pods"]), "grants wildcard verbs (* pods)"),
        (
            objects.rule(["get"], ["*"], api_groups=["apps"]),
            "grants wildcard resources (get *.apps)",
        ),
        (
            objects.rule(["get"], ["deployments"], api_groups=["*"]),
            "grants wildcard apiGroups (get deployments.*)",
        ),
        (objects.url_rule(["get"], ["*"]), "grants wildcard nonResourceURLs (get *)"),
        (objects.rule(["get"], ["secrets"]), "grants access to secrets (get secrets)"),
        (
            objects.rule(["get"], ["secrets"], resource_names=["db"]),
            "grants access to secrets (get secrets/db)",
        ),
        (
            objects.rule(["escalate"], ["roles"], api_groups=["rbac.authorization.k8s.io"]),
            "grants the escalate verb (escalate roles.rbac.authorization.k8s.io)",
        ),
        (
            objects.rule(["bind"], ["clusterroles"], api_groups=["rbac.authorization.k8s.io"]),
            "grants the bind verb (bind clusterroles.rbac.authorization.k8s.io)",
        ),
        (
            objects.rule(["impersonate"], ["users"]),
            "grants the impersonate verb (impersonate users)",
        ),
    ],
)
def test_created_dangerous_role_is_critical(rule: Body, reason: str) -> None:
    result = classified(None, objects.role([objects.rule(["get"], ["pods"]), rule]))

    assert expect(result, Action.CREATED, Severity.CRITICAL).reasons == (reason,)


def test_full_wildcard_rule_names_every_danger() -> None:
    result = classified(None, objects.cluster_role([objects.rule(["*"], ["*"], api_groups=["*"])]))

    assert expect(result, Action.CREATED, Severity.CRITICAL).reasons == (
        "grants wildcard apiGroups (* *.*)",
        "grants wildcard resources (* *.*)",
        "grants wildcard verbs (* *.*)",
    )


def test_a_reason_names_five_permissions_and_counts_the_rest() -> None:
    resources = ["configmaps", "endpoints", "events", "pods", "secrets", "services", "volumes"]

    result = classified(None, objects.role([objects.rule(["*"], resources)]))

    assert expect(result, Action.CREATED, Severity.CRITICAL).reasons == (
        "grants access to secrets (* secrets)",
        "grants wildcard verbs (* configmaps, * endpoints, * events, * pods, * secrets and 2 more)",
    )


def test_secrets_in_another_api_group_are_not_secrets() -> None:
    new = objects.role([objects.rule(["get"], ["secrets"], api_groups=["example.com"])])

    expect(classified(None, new), Action.CREATED, Severity.NOTICE)


def test_widening_a_rule_flags_only_the_new_dangerous_grant() -> None:
    old = objects.role([objects.rule(["get"], ["secrets"], resource_names=["tls"])])
    new = objects.role([objects.rule(["get", "list"], ["secrets"], resource_names=["tls"])])

    result = expect(classified(old, new), Action.RULES_CHANGED, Severity.CRITICAL)

    assert result.reasons == ("grants access to secrets (list secrets/tls)",)


def test_a_grant_already_covered_by_a_wildcard_is_not_new() -> None:
    everything = objects.rule(["*"], ["*"], api_groups=["*"])
    old = objects.cluster_role([everything])
    new = objects.cluster_role([everything, objects.rule(["get"], ["secrets"])])

    result = expect(classified(old, new), Action.RULES_CHANGED, Severity.NOTICE)

    assert result.reasons == ("rules changed",)


def test_removing_rules_is_a_notice() -> None:
    old = objects.role([objects.rule(["*"], ["*"]), objects.rule(["get"], ["pods"])])
    new = objects.role([objects.rule(["get"], ["pods"])])

    expect(classified(old, new), Action.RULES_CHANGED, Severity.NOTICE)


def test_aggregation_rule_change_is_a_rules_change() -> None:
    old = objects.cluster_role([], aggregation_labels={"example.com/aggregate-to-ops": "true"})
    new = objects.cluster_role([], aggregation_labels={"example.com/aggregate-to-sre": "true"})

    result = expect(classified(old, new), Action.RULES_CHANGED, Severity.NOTICE)

    assert result.reasons == ("aggregationRule changed",)


def test_role_label_change_alone_is_a_config_change() -> None:
    rules = [objects.rule(["get"], ["pods"])]
    old = objects.role(rules)
    new = objects.role(rules, labels={"rbac.example.com/aggregate-to-view": "true"})

    result = expect(classified(old, new), Action.CONFIG_CHANGED, Severity.NOTICE)

    assert result.reasons == ("labels changed",)


def test_deleted_role_is_a_warning() -> None:
    expect(
        classified(objects.role([objects.rule(["*"], ["*"])]), None),
        Action.DELETED,
        Severity.WARNING,
    )


# RoleBindings and ClusterRoleBindings


class Roles:
    """A resolver over a fixed set of roles, recording what was asked."""

    def __init__(self, roles: Mapping[tuple[str, str, str], list[Body]]) -> None:
        self.roles = roles
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, namespace: str, name: str) -> list[Mapping[str, Any]] | None:
        self.asked.append((kind, namespace, name))
        rules = self.roles.get((kind, namespace, name))
        return list(rules) if rules is not None else None


def test_binding_cluster_admin_is_critical_and_names_the_subject() -> None:
    new = objects.cluster_role_binding(
        [objects.service_account("ci", "deployer")], role_name="cluster-admin"
    )

    result = expect(classified(None, new), Action.CREATED, Severity.CRITICAL)

    assert result.reasons == ("grants cluster-admin to ServiceAccount ci/deployer",)


def test_namespaced_binding_of_cluster_admin_is_critical() -> None:
    new = objects.role_binding(
        [objects.user("alice")], role_kind="ClusterRole", role_name="cluster-admin"
    )

    expect(classified(None, new), Action.CREATED, Severity.CRITICAL)


def test_binding_a_role_with_dangerous_rules_is_critical() -> None:
    roles = Roles({("Role", "shop", "reader"): [objects.rule(["get"], ["secrets"])]})
    context = classify.Context(namespace="shop", resolve_role_rules=roles)

    result = classified(None, objects.role_binding([objects.user("alice")]), context)

    assert expect(result, Action.CREATED, Severity.CRITICAL).reasons == (
        "grants Role reader to User alice: access to secrets (get secrets)",
    )
    assert roles.asked == [("Role", "shop", "reader")]


def test_a_cluster_role_is_resolved_without_a_namespace() -> None:
    roles = Roles({("ClusterRole", "", "ops"): [objects.rule(["get"], ["pods"])]})
    context = classify.Context(namespace="shop", resolve_role_rules=roles)
    new = objects.role_binding([objects.group("sre")], role_kind="ClusterRole", role_name="ops")

    result = expect(classified(None, new, context), Action.CREATED, Severity.NOTICE)

    assert result.reasons == ("grants ClusterRole ops to Group sre",)
    assert roles.asked == [("ClusterRole", "", "ops")]


def test_binding_a_role_whose_rules_are_unknown_says_so() -> None:
    result = classified(None, objects.role_binding([objects.user("alice")]))

    assert expect(result, Action.CREATED, Severity.NOTICE).reasons == (
        "grants Role reader to User alice (its rules are unknown)",
    )


def test_adding_a_subject_to_cluster_admin_is_critical_for_that_subject_only() -> None:
    alice, bot = objects.user("alice"), objects.service_account("ci", "deployer")
    old = objects.cluster_role_binding([alice], role_name="cluster-admin")
    new = objects.cluster_role_binding([alice, bot], role_name="cluster-admin")

    result = expect(classified(old, new), Action.SUBJECTS_CHANGED, Severity.CRITICAL)

    assert result.reasons == ("grants cluster-admin to ServiceAccount ci/deployer",)


def test_removing_a_subject_is_a_notice() -> None:
    alice, bob = objects.user("alice"), objects.user("bob")
    old = objects.cluster_role_binding([alice, bob], role_name="cluster-admin")
    new = objects.cluster_role_binding([alice], role_name="cluster-admin")

    result = expect(classified(old, new), Action.SUBJECTS_CHANGED, Severity.NOTICE)

    assert result.reasons == ("revokes ClusterRole cluster-admin from User bob",)


def test_a_new_role_ref_grants_the_new_role_to_every_subject() -> None:
    old = objects.cluster_role_binding([objects.user("alice")], role_name="view")
    new = objects.cluster_role_binding([objects.user("alice")], role_name="cluster-admin")

    result = expect(classified(old, new), Action.SUBJECTS_CHANGED, Severity.CRITICAL)

    assert "grants cluster-admin to User alice" in result.reasons


def test_binding_annotation_change_alone_is_a_config_change() -> None:
    old = objects.role_binding([objects.user("alice")])
    new = objects.role_binding([objects.user("alice")])
    new["metadata"]["annotations"] = {"example.com/ticket": "SEC-42"}

    expect(classified(old, new), Action.CONFIG_CHANGED, Severity.NOTICE)


def test_deleted_binding_is_a_warning() -> None:
    old = objects.cluster_role_binding([objects.user("alice")], role_name="cluster-admin")

    expect(classified(old, None), Action.DELETED, Severity.WARNING)
