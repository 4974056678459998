"""GitOps controllers: recognised by their service accounts, read through their objects."""

from __future__ import annotations

import pytest

from kubeledger.core.model import Commit, CommitSource, InitiatorSource
from kubeledger.identity import gitops
from unit import identity_objects as io
from unit import objects


@pytest.mark.parametrize(
    ("username", "argocd", "flux"),
    [
        (io.ARGOCD_CONTROLLER, True, False),
        ("system:serviceaccount:gitops:argocd-application-controller", True, False),
        (io.FLUX_KUSTOMIZE_CONTROLLER, False, True),
        ("system:serviceaccount:flux:helm-controller", False, True),
        ("system:serviceaccount:argocd:argocd-server", False, False),
        ("system:serviceaccount:flux-system:source-controller", False, False),
        # A person is not a controller, whatever the name.
        ("argocd-application-controller", False, False),
        ("kustomize-controller", False, False),
    ],
)
def test_controllers_are_recognised_by_service_account_name(
    username: str, argocd: bool, flux: bool
) -> None:
    assert (gitops.is_argocd(username), gitops.is_flux(username)) == (argocd, flux)


def test_controller_source_names_the_gitops_system() -> None:
    assert gitops.controller_source(io.ARGOCD_CONTROLLER) is InitiatorSource.ARGOCD
    assert gitops.controller_source(io.FLUX_KUSTOMIZE_CONTROLLER) is InitiatorSource.FLUX
    assert gitops.controller_source(io.ALICE) is None


@pytest.mark.parametrize(
    ("tracking_id", "expected"),
    [
        ("shop:apps/Deployment:shop/web", ("argocd", "shop")),
        ("team-a_shop:apps/Deployment:shop/web", ("team-a", "shop")),
        ("shop:/ConfigMap:shop/settings", ("argocd", "shop")),
    ],
)
def test_tracking_id_names_the_application(
    tracking_id: str, expected: tuple[str, str]
) -> None:
    body = objects.deployment(annotations={gitops.TRACKING_ID_ANNOTATION: tracking_id})

    assert gitops.argocd_application_ref(body) == expected


def test_tracking_id_is_preferred_to_the_instance_label() -> None:
    body = objects.deployment(
        labels={gitops.INSTANCE_LABEL: "helm-release"},
        annotations={gitops.TRACKING_ID_ANNOTATION: "shop:apps/Deployment:shop/web"})

    assert gitops.argocd_application_ref(body) == ("argocd", "shop")


@pytest.mark.parametrize(
    ("instance", "expected"), [("shop", ("gitops", "shop")), ("team-a_shop", ("team-a", "shop"))]
)
def test_instance_label_names_the_application(
    instance: str, expected: tuple[str, str]
) -> None:
    body = objects.deployment(labels={gitops.INSTANCE_LABEL: instance})

    assert gitops.argocd_application_ref(body, default_namespace="gitops") == expected


def test_untracked_object_names_no_application() -> None:
    assert gitops.argocd_application_ref(objects.deployment()) is None


def test_flux_owners_are_read_from_their_labels() -> None:
    kustomized = objects.deployment(labels={
        "kustomize.toolkit.fluxcd.io/name": "shop",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
    released = objects.deployment(labels={
        "helm.toolkit.fluxcd.io/name": "shop", "helm.toolkit.fluxcd.io/namespace": "shop"})
    half_labelled = objects.deployment(labels={"kustomize.toolkit.fluxcd.io/name": "shop"})

    assert gitops.flux_owner_ref(kustomized) == ("Kustomization", "flux-system", "shop")
    assert gitops.flux_owner_ref(released) == ("HelmRelease", "shop", "shop")
    assert gitops.flux_owner_ref(half_labelled) is None


def test_argocd_commit_is_the_revision_the_last_sync_applied() -> None:
    # Out of sync: the comparison already saw a newer commit than the one applied.
    application = io.argocd_application(synced=io.SHA, compared=io.OTHER_SHA)

    assert gitops.argocd_commit(application) == Commit(
        sha=io.SHA, repository="https://github.com/example/shop-deploy.git",
        source=CommitSource.ARGOCD)


def test_argocd_commit_falls_back_to_the_compared_revision() -> None:
    application = io.argocd_application(synced=None, compared=io.OTHER_SHA)

    assert gitops.argocd_commit(application).sha == io.OTHER_SHA


def test_helm_chart_version_is_no_commit() -> None:
    application = io.argocd_application(synced="15.3.2", compared="15.3.2")

    assert gitops.argocd_commit(application) == Commit()


def test_multi_source_commit_comes_with_its_own_repository() -> None:
    application = io.argocd_application(
        sources=["https://charts.example.com", "https://github.com/example/values.git"],
        revisions=["15.3.2", io.SHA])

    assert gitops.argocd_commit(application) == Commit(
        sha=io.SHA, repository="https://github.com/example/values.git",
        source=CommitSource.ARGOCD)


@pytest.mark.parametrize(
    ("initiated_by", "expected"),
    [
        ({"username": "alice"}, "alice"),
        ({"automated": True}, gitops.AUTOMATED),
        ({}, None),
    ],
)
def test_argocd_trigger(initiated_by: dict[str, object], expected: str | None) -> None:
    application = io.argocd_application(initiated_by=initiated_by)

    assert gitops.argocd_trigger(application) == expected


def test_application_that_never_synced_has_no_trigger() -> None:
    application = io.argocd_application()
    del application["status"]["operationState"]

    assert gitops.argocd_trigger(application) is None


@pytest.mark.parametrize(
    "revision",
    [f"main@sha1:{io.SHA}", f"refs/tags/v1.2@sha1:{io.SHA}", f"sha1:{io.SHA}",
     f"main/{io.SHA}", f"feature/login/{io.SHA}", io.SHA],
)
def test_flux_revision_formats(revision: str) -> None:
    kustomization = io.flux_kustomization(revision)

    assert gitops.flux_commit(kustomization) == Commit(sha=io.SHA, source=CommitSource.FLUX)


@pytest.mark.parametrize(
    "revision",
    [
        # The digest of an OCI artifact or a bucket is not a commit.
        "latest@sha256:" + "ab" * 32,
        "sha256:" + "cd" * 32,
        "main",
        None,
    ],
)
def test_flux_revisions_without_a_commit(revision: str | None) -> None:
    assert gitops.flux_commit(io.flux_kustomization(revision)) == Commit()


def test_helm_release_chart_version_is_no_commit() -> None:
    assert gitops.flux_commit(io.helm_release("1.4.2")) == Commit()
