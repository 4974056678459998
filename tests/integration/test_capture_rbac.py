"""RBAC changes become records; dangerous grants are critical."""

from __future__ import annotations

from typing import Any

from integration.kubectl import Kubectl
from integration.manifests import binding, role, unique, user
from integration.operator import actions_of, uid_of, wait_for_action

READ_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


def _uid(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    kubectl.apply(manifest)
    return uid_of(kubectl, manifest)


def test_role_lifecycle_and_secret_access_is_critical(kubectl: Kubectl, operator: object) -> None:
    demo = kubectl  # alice holds `edit`, which grants no RBAC writes
    name = unique("reader")
    uid = _uid(demo, role(name, READ_PODS))
    created = wait_for_action(demo, uid, "created")
    assert created["spec"]["severity"] == "notice"

    demo.apply(role(name, [*READ_PODS, {"apiGroups": [""], "resources": ["secrets"],
                                         "verbs": ["get"]}]))
    widened = wait_for_action(demo, uid, "rules-changed")
    assert widened["spec"]["severity"] == "critical"
    assert any("secrets" in reason for reason in widened["spec"]["reasons"])

    demo("-n", "demo", "delete", "role", name)
    wait_for_action(demo, uid, "deleted")
    assert actions_of(demo, uid) == ["created", "rules-changed", "deleted"]


def test_binding_subjects_change(kubectl: Kubectl, operator: object) -> None:
    demo = kubectl
    name = unique("viewers")
    uid = _uid(demo, binding(name, "ClusterRole", "view", [user("alice")]))
    wait_for_action(demo, uid, "created")
    demo.apply(binding(name, "ClusterRole", "view", [user("alice"), user("bob")]))
    changed = wait_for_action(demo, uid, "subjects-changed")
    paths = [change["path"] for change in changed["spec"]["changes"]]
    assert any(path.startswith("subjects") for path in paths)


def test_cluster_admin_grant_is_critical(kubectl: Kubectl, operator: object) -> None:
    name = unique("ci-admin")
    subject = {"kind": "ServiceAccount", "name": "deployer", "namespace": "demo"}
    uid = _uid(kubectl, binding(name, "ClusterRole", "cluster-admin", [subject],
                                namespace=None))
    record = wait_for_action(kubectl, uid, "created")
    assert record["spec"]["severity"] == "critical"
    assert record["metadata"]["labels"]["kubeledger.io/subject-namespace"] == ""
    assert any("cluster-admin" in reason for reason in record["spec"]["reasons"])
    kubectl("delete", "clusterrolebinding", name)
