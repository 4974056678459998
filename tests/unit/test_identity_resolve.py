"""The initiator decision: which source wins, and what is presented as verified."""

from __future__ import annotations

import pytest

from kubeledger.core.model import Initiator, InitiatorSource
from kubeledger.identity import gitops
from kubeledger.identity.admission import AdmissionIdentity
from kubeledger.identity.audit import AuditIdentity
from kubeledger.identity.resolve import (
    declared_initiator,
    resolve,
    tool_from_managed_fields,
)
from kubeledger.identity.user import User
from unit import identity_objects as io
from unit import objects

ALICE = User(io.ALICE, "alice-uid", ("developers", "system:authenticated"))
BOB = User("bob@example.com", "bob-uid", ("developers",))
ADMIN = User("kubernetes-admin", None, ("system:masters", "system:authenticated"))
DEPLOYER = User("system:serviceaccount:ci:deployer", "deployer-uid",
                ("system:serviceaccounts", "system:serviceaccounts:ci"))
ARGOCD = User(io.ARGOCD_CONTROLLER, "argocd-uid", ("system:serviceaccounts",))
FLUX = User(io.FLUX_KUSTOMIZE_CONTROLLER, "flux-uid", ("system:serviceaccounts",))


def audited(user: User, impersonated: User | None = None) -> AuditIdentity:
    return AuditIdentity(user=user, impersonated=impersonated, source_ips=("10.0.12.7",),
                         user_agent="kubectl/v1.30.2 (linux/amd64) kubernetes/3968350")


def admitted(user: User, operation: str = "UPDATE") -> AdmissionIdentity:
    return AdmissionIdentity(user=user, operation=operation)


def test_audit_identity_is_verified_and_carries_source_ips() -> None:
    initiator = resolve(audit=audited(ALICE), tool="kubectl-edit")

    assert initiator == Initiator(
        username=io.ALICE, uid="alice-uid", groups=["developers", "system:authenticated"],
        source=InitiatorSource.AUDIT, verified=True, tool="kubectl-edit",
        sourceIPs=["10.0.12.7"])


def test_audit_wins_over_admission() -> None:
    initiator = resolve(audit=audited(ALICE), admission=admitted(BOB))

    assert (initiator.username, initiator.source) == (io.ALICE, InitiatorSource.AUDIT)


def test_admission_identity_is_verified_without_source_ips() -> None:
    initiator = resolve(admission=admitted(BOB), tool="kubectl-client-side-apply",
                        declared="bob")

    assert initiator == Initiator(
        username=BOB.username, uid="bob-uid", groups=["developers"],
        source=InitiatorSource.ADMISSION, verified=True, tool="kubectl-client-side-apply",
        declared="bob", declaredMismatch=True)


def test_impersonation_names_the_assumed_user_and_the_real_one() -> None:
    initiator = resolve(audit=audited(ADMIN, impersonated=DEPLOYER))

    assert initiator.username == DEPLOYER.username
    assert initiator.uid == "deployer-uid"
    assert initiator.groups == list(DEPLOYER.groups)
    assert initiator.impersonatedBy == "kubernetes-admin"
    assert initiator.verified


def test_argocd_sync_started_by_a_person_names_them_unverified() -> None:
    initiator = resolve(audit=audited(ARGOCD), tool="argocd-controller",
                        gitops_trigger="alice", gitops_source=InitiatorSource.ARGOCD)

    assert initiator == Initiator(
        username="alice", source=InitiatorSource.ARGOCD, verified=False,
        tool=io.ARGOCD_CONTROLLER, sourceIPs=["10.0.12.7"])


def test_flux_controller_seen_by_admission_takes_the_trigger_too() -> None:
    initiator = resolve(admission=admitted(FLUX), gitops_trigger="ci-bot",
                        gitops_source=InitiatorSource.FLUX)

    assert (initiator.username, initiator.source, initiator.verified, initiator.tool) == (
        "ci-bot", InitiatorSource.FLUX, False, io.FLUX_KUSTOMIZE_CONTROLLER)


def test_auto_sync_keeps_the_controller_as_verified_initiator() -> None:
    initiator = resolve(audit=audited(ARGOCD), tool="argocd-controller",
                        gitops_trigger=gitops.AUTOMATED, gitops_source=InitiatorSource.ARGOCD)

    assert (initiator.username, initiator.source, initiator.verified, initiator.tool) == (
        io.ARGOCD_CONTROLLER, InitiatorSource.AUDIT, True, "argocd-controller")


def test_trigger_is_ignored_when_someone_else_wrote() -> None:
    # Bob edits an object Argo CD manages: the last sync's trigger did not make this change.
    initiator = resolve(audit=audited(BOB), gitops_trigger="alice",
                        gitops_source=InitiatorSource.ARGOCD)

    assert (initiator.username, initiator.source, initiator.verified) == (
        BOB.username, InitiatorSource.AUDIT, True)


def test_trigger_is_ignored_for_another_systems_controller() -> None:
    initiator = resolve(audit=audited(FLUX), gitops_trigger="alice",
                        gitops_source=InitiatorSource.ARGOCD)

    assert initiator.username == FLUX.username


def test_impersonating_the_controller_does_not_hide_behind_gitops() -> None:
    initiator = resolve(audit=audited(ADMIN, impersonated=ARGOCD), gitops_trigger="alice",
                        gitops_source=InitiatorSource.ARGOCD)

    assert (initiator.username, initiator.impersonatedBy, initiator.verified) == (
        io.ARGOCD_CONTROLLER, "kubernetes-admin", True)


def test_gitops_trigger_without_authentication_is_unverified() -> None:
    initiator = resolve(tool="argocd-controller", gitops_trigger="alice",
                        gitops_source=InitiatorSource.ARGOCD, declared="mallory")

    assert initiator == Initiator(
        username="alice", source=InitiatorSource.ARGOCD, verified=False,
        tool="argocd-controller", declared="mallory", declaredMismatch=True)


def test_auto_sync_without_authentication_names_nobody() -> None:
    initiator = resolve(tool="argocd-controller", gitops_trigger=gitops.AUTOMATED,
                        gitops_source=InitiatorSource.ARGOCD)

    assert (initiator.username, initiator.source, initiator.verified) == (
        None, InitiatorSource.ARGOCD, False)


def test_declared_only_initiator_is_shown_but_never_verified() -> None:
    initiator = resolve(declared="alice", tool="kubectl-client-side-apply")

    assert initiator == Initiator(
        username="alice", source=InitiatorSource.ANNOTATION, verified=False,
        tool="kubectl-client-side-apply", declared="alice", declaredMismatch=False)


def test_tool_alone_names_no_user() -> None:
    assert resolve(tool="helm") == Initiator(source=InitiatorSource.MANAGED_FIELDS, tool="helm")


def test_nothing_known_is_unresolved() -> None:
    assert resolve() == Initiator(source=InitiatorSource.UNRESOLVED, verified=False)


def test_gitops_source_must_be_a_gitops_system() -> None:
    with pytest.raises(ValueError, match="not a GitOps source"):
        resolve(gitops_trigger="alice", gitops_source=InitiatorSource.AUDIT)


@pytest.mark.parametrize(
    ("declared", "audit", "trigger", "mismatch"),
    [
        ("mallory@example.com", audited(ALICE), None, True),
        ("ALICE@example.com", audited(ALICE), None, False),
        # A service account may be declared by its name alone.
        ("deployer", audited(DEPLOYER), None, False),
        ("ci:deployer", audited(DEPLOYER), None, True),
        # The impersonating user is behind the write too.
        ("kubernetes-admin", audited(ADMIN, impersonated=DEPLOYER), None, False),
        # So are the person who started a sync and the controller that ran it.
        ("alice", audited(ARGOCD), "alice", False),
        ("argocd-application-controller", audited(ARGOCD), "alice", False),
        ("mallory", audited(ARGOCD), "alice", True),
    ],
)
def test_declared_mismatch(
    declared: str, audit: AuditIdentity, trigger: str | None, mismatch: bool
) -> None:
    initiator = resolve(audit=audit, declared=declared, gitops_trigger=trigger,
                        gitops_source=InitiatorSource.ARGOCD if trigger else None)

    assert initiator.declared == declared
    assert initiator.declaredMismatch is mismatch
    assert initiator.verified is (trigger is None)


def test_declared_initiator_is_read_from_the_annotation() -> None:
    declaring = objects.deployment(annotations={"kubeledger.io/initiator": "  alice  "})
    blank = objects.deployment(annotations={"kubeledger.io/initiator": " "})
    other_key = objects.deployment(annotations={"example.com/actor": "bob"})

    assert declared_initiator(declaring) == "alice"
    assert declared_initiator(blank) is None
    assert declared_initiator(objects.deployment()) is None
    assert declared_initiator(other_key, "example.com/actor") == "bob"


def test_tool_is_the_latest_writer() -> None:
    body = io.with_managed_fields(
        objects.deployment(),
        io.managed_field("kubectl-client-side-apply", "2025-11-20T09:00:00Z"),
        io.managed_field("kubectl-rollout", "2025-11-20T09:05:00Z"),
        io.managed_field("helm", "2025-11-20T08:00:00Z", operation="Apply"),
    )

    assert tool_from_managed_fields(body) == "kubectl-rollout"


def test_status_writes_do_not_name_the_tool() -> None:
    body = io.with_managed_fields(
        objects.deployment(),
        io.managed_field("helm", "2025-11-20T09:00:00Z"),
        io.managed_field("kube-controller-manager", "2025-11-20T09:05:00Z",
                         subresource="status", fields={"f:status": {"f:replicas": {}}}),
    )

    assert tool_from_managed_fields(body) == "helm"


def test_controller_bookkeeping_before_subresource_tracking_does_not_name_the_tool() -> None:
    # Apiservers before 1.22: the Deployment controller's revision annotation and status
    # updates are recorded as plain Updates.
    bookkeeping = {
        "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
        "f:status": {"f:availableReplicas": {}, "f:conditions": {}},
    }
    body = io.with_managed_fields(
        objects.deployment(),
        io.managed_field("kubectl-edit", "2025-11-20T09:00:00Z"),
        io.managed_field("kube-controller-manager", "2025-11-20T09:00:03Z", fields=bookkeeping),
    )

    assert tool_from_managed_fields(body) == "kubectl-edit"


def test_tool_is_unknown_when_two_tools_wrote_in_the_same_second() -> None:
    body = io.with_managed_fields(
        objects.deployment(),
        io.managed_field("kubectl-create", "2025-11-20T09:00:00Z"),
        io.managed_field("kubectl", "2025-11-20T09:00:00Z", subresource="scale"),
    )

    assert tool_from_managed_fields(body) is None


def test_no_managed_fields_no_tool() -> None:
    body = objects.deployment()
    del body["metadata"]["managedFields"]

    assert tool_from_managed_fields(body) is None
