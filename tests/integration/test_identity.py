"""Who and which commit: records name the authenticated user, the impersonator, the GitOps
trigger and the commit, each with how it is known."""

from __future__ import annotations

import time

from integration.kubectl import Kubectl
from integration.manifests import TEST_IMAGE_2, deployment, open_crd, unique
from integration.operator import (
    Operator,
    apply_recorded,
    change_actions_of,
    settled,
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
    bob("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
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
    bob("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}",
        "--dry-run=server")
    time.sleep(3)
    assert change_actions_of(kubectl, uid) == ["created"]
    # The same change made for real is alice's, not bob's dry run's.
    alice("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
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
    # kubectl on this machine reaches the apiserver at its node-network address.
    assert kubectl.endpoints.plan.host_address in initiator["sourceIPs"]


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
    alice = kubectl.as_user("alice")
    manifest = deployment(unique("tagged"), image="registry:5000/shop/api:3f2a9c1")
    _, record = apply_recorded(alice, manifest)
    assert record["spec"]["commit"] == {"sha": "3f2a9c1", "source": "image-tag"}
    # Its image is never pulled: gone before its rollout can fail in a later test.
    alice("-n", "demo", "delete", "deployment", manifest["metadata"]["name"])


def _controller(kubectl: Kubectl, namespace: str, name: str) -> Kubectl:
    """kubectl as a GitOps controller's service account (its own token), editor of demo."""
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kubectl.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": namespace}})
    kubectl.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"{name}-edit", "namespace": "demo"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "edit"},
                   "subjects": [{"kind": "ServiceAccount", "name": name,
                                 "namespace": namespace}]})

    # A short-lived token from the TokenRequest API, as a controller's pod is given one.
    token = kubectl("-n", namespace, "create", "token", name, "--duration=1h").strip()
    return kubectl.with_token(token, name)


def test_argocd_sync_names_trigger_and_commit(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.install_crd(open_crd("argoproj.io", "Application", "applications"))
    controller = _controller(kubectl, "argocd", "argocd-application-controller")
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


def test_flux_apply_names_the_controller_and_the_applied_commit(
    kubectl: Kubectl, operator: Operator,
) -> None:
    kubectl.install_crd(open_crd("kustomize.toolkit.fluxcd.io", "Kustomization",
                                 "kustomizations", version="v1"))
    controller = _controller(kubectl, "flux-system", "kustomize-controller")
    kubectl.apply({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "shop", "namespace": "flux-system"},
        "status": {"lastAppliedRevision": f"main@sha1:{SHA}"},
    })
    manifest = deployment(unique("fluxed"))
    manifest["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "shop",
                                      "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
    _, record = apply_recorded(controller, manifest)
    initiator, commit = record["spec"]["initiator"], record["spec"]["commit"]
    # Flux does not say who triggered a reconciliation: the controller stays the verified
    # initiator, and the Kustomization gives the commit.
    assert initiator["username"] == "system:serviceaccount:flux-system:kustomize-controller"
    assert initiator["verified"] is True
    assert commit == {"sha": SHA, "source": "flux"}


def test_writes_succeed_and_are_recorded_with_identity_sources_down(
    kubectl: Kubectl, operator: Operator,
) -> None:
    operator.stop()
    # Neither the webhook nor the audit receiver listens now; the apiserver still calls
    # them (failurePolicy Ignore) and the write must go through regardless.
    operator.start(KUBELEDGER_WEBHOOK_PORT="", KUBELEDGER_AUDIT_PORT="")
    try:
        manifest = deployment(unique("blind"))
        uid, record = apply_recorded(kubectl.as_user("alice"), manifest)
        settled(kubectl, manifest)
        initiator = record["spec"]["initiator"]
        assert initiator["source"] == "managedFields"
        assert initiator["tool"] == "kubectl-client-side-apply"
        assert initiator["verified"] is False
        assert "username" not in initiator
    finally:
        operator.stop()
        operator.start()
    assert change_actions_of(kubectl, uid) == ["created"]
