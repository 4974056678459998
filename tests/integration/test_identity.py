"""Who and which commit: records name the authenticated user, the impersonator, the GitOps
trigger and the commit, each with how it is known."""

from __future__ import annotations

import base64
import time

from integration.kubectl import Kubectl, eventually
from integration.manifests import deployment, open_crd, unique
from integration.operator import (
    Operator,
    actions_of,
    apply_recorded,
    uid_of,
    wait_for_action,
)

SHA = "3f2a9c1d4e5b6a7980f1e2d3c4b5a69788796a5b"
ARGOCD_CONTROLLER = "system:serviceaccount:argocd:argocd-application-controller"


def test_alice_creates_bob_updates_both_verified(kubectl: Kubectl, operator: Operator) -> None:
    alice, bob = kubectl.as_user("alice"), kubectl.as_user("bob")
    name = unique("team")
    uid, created = apply_recorded(alice, deployment(name))
    assert created["spec"]["initiator"]["username"] == "alice"
    assert created["spec"]["initiator"]["verified"] is True
    assert created["spec"]["initiator"]["source"] in ("audit", "admission")
    assert created["spec"]["initiator"]["groups"] == ["developers", "system:authenticated"]
    bob("-n", "demo", "set", "image", f"deployment/{name}", "app=nginx:1.26")
    changed = wait_for_action(kubectl, uid, "image-changed")
    assert changed["spec"]["initiator"]["username"] == "bob"
    assert changed["spec"]["initiator"]["verified"] is True
    # The field manager of bob's very request, not whoever wrote managedFields last.
    assert changed["spec"]["initiator"]["tool"] == "kubectl-set"
    # The printer column shows who did it.
    assert "bob" in kubectl("get", "auditrecord", changed["metadata"]["name"])


def test_server_dry_run_leaves_no_record_and_no_trace(kubectl: Kubectl,
                                                      operator: Operator) -> None:
    alice, bob = kubectl.as_user("alice"), kubectl.as_user("bob")
    name = unique("dry")
    uid, _ = apply_recorded(alice, deployment(name))
    bob("-n", "demo", "set", "image", f"deployment/{name}", "app=nginx:1.30",
        "--dry-run=server")
    time.sleep(3)
    assert actions_of(kubectl, uid) == ["created"]
    # The same change made for real is alice's, not bob's dry run's.
    alice("-n", "demo", "set", "image", f"deployment/{name}", "app=nginx:1.30")
    changed = wait_for_action(kubectl, uid, "image-changed")
    assert changed["spec"]["initiator"]["username"] == "alice"


def test_impersonation_names_both_identities(kubectl: Kubectl, operator: Operator) -> None:
    manifest = deployment(unique("imp"))
    kubectl.apply(manifest, "--as=bob")
    uid = uid_of(kubectl, manifest)
    initiator = wait_for_action(kubectl, uid, "created")["spec"]["initiator"]
    assert initiator["source"] == "audit"
    assert initiator["username"] == "bob"
    assert initiator["impersonatedBy"] == "admin"
    assert initiator["verified"] is True
    assert "127.0.0.1" in initiator["sourceIPs"]


def test_declared_initiator_is_kept_beside_the_authenticated_one(
    kubectl: Kubectl, operator: Operator,
) -> None:
    manifest = deployment(unique("declared"))
    manifest["metadata"]["annotations"] = {"kubeledger.io/initiator": "carol",
                                           "kubeledger.io/commit": SHA}
    _, record = apply_recorded(kubectl.as_user("alice"), manifest)
    initiator, commit = record["spec"]["initiator"], record["spec"]["commit"]
    assert initiator["username"] == "alice"
    assert initiator["verified"] is True
    assert initiator["declared"] == "carol"
    assert initiator["declaredMismatch"] is True
    assert commit == {"sha": SHA, "source": "annotation"}


def test_commit_from_image_tag(kubectl: Kubectl, operator: Operator) -> None:
    _, record = apply_recorded(kubectl.as_user("alice"),
                         deployment(unique("tagged"), image="registry:5000/shop/api:3f2a9c1"))
    assert record["spec"]["commit"] == {"sha": "3f2a9c1", "source": "image-tag"}


def _argocd_controller(kubectl: Kubectl) -> Kubectl:
    """kubectl as Argo CD's application controller, with its own service-account token."""
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
    kubectl.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "argocd-application-controller",
                                "namespace": "argocd"}})
    kubectl.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "argocd-edit", "namespace": "demo"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "edit"},
                   "subjects": [{"kind": "ServiceAccount", "name": "argocd-application-controller",
                                 "namespace": "argocd"}]})

    def token() -> str | None:
        secrets = kubectl.json("-n", "argocd", "get", "secrets")["items"]
        for secret in secrets:
            if secret["metadata"]["name"].startswith("argocd-application-controller-token"):
                return base64.b64decode(secret["data"]["token"]).decode()
        return None

    return kubectl.with_token(eventually(token, what="the controller's token"), "argocd")


def test_argocd_sync_names_trigger_and_commit(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.install_crd(open_crd("argoproj.io", "Application", "applications"))
    controller = _argocd_controller(kubectl)
    kubectl.apply({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example.com/shop.git"}},
        "status": {"sync": {"revision": SHA},
                   "operationState": {"operation": {"initiatedBy": {"username": "dave"}},
                                      "syncResult": {"revision": SHA}}},
    })
    name = unique("synced")
    manifest = deployment(name)
    manifest["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:demo/{name}"}
    _, record = apply_recorded(controller, manifest)
    initiator, commit = record["spec"]["initiator"], record["spec"]["commit"]
    assert initiator["username"] == "dave"
    assert initiator["source"] == "argocd"
    assert initiator["verified"] is False
    assert initiator["tool"] == ARGOCD_CONTROLLER
    assert commit == {"sha": SHA, "repository": "https://git.example.com/shop.git",
                      "source": "argocd"}


def test_writes_succeed_and_are_recorded_with_identity_sources_down(
    kubectl: Kubectl, operator: Operator,
) -> None:
    operator.stop()
    # Neither the webhook nor the audit receiver listens now; the apiserver still calls
    # them (failurePolicy Ignore) and the write must go through regardless.
    operator.start(KUBELEDGER_WEBHOOK_PORT="", KUBELEDGER_AUDIT_PORT="")
    try:
        name = unique("blind")
        uid, record = apply_recorded(kubectl.as_user("alice"), deployment(name))
        initiator = record["spec"]["initiator"]
        assert initiator["source"] == "managedFields"
        assert initiator["tool"] == "kubectl-client-side-apply"
        assert initiator["verified"] is False
        assert "username" not in initiator
    finally:
        operator.stop()
        operator.start()
    assert actions_of(kubectl, uid) == ["created"]
