"""Attribution's edge cases: GitOps lookups through the fake cluster, and what is not read."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from kubeledger.core import decision, kinds
from kubeledger.core.model import CommitSource, InitiatorSource, Subject
from kubeledger.identity import gitops
from kubeledger.identity.attribution import Attributor
from kubeledger.identity.audit import AuditLog
from kubeledger.kube import errors
from unit import identity_objects as io
from unit import objects
from unit.fake_kube import FakeKube

Body = dict[str, Any]


def synced_by(controller: str, body: Body) -> tuple[Subject, AuditLog]:
    """``body`` as the watch delivers it, and an audit log saying ``controller`` wrote it."""
    log = AuditLog()
    log.ingest(io.event_list(io.audit_event("update", body, user=io.user_info(controller))))
    return decision.subject_of(kinds.DEPLOYMENTS, body), log


def argo_managed() -> Body:
    body = objects.deployment()
    body["metadata"]["annotations"][gitops.TRACKING_ID_ANNOTATION] = (
        "shop:apps/Deployment:shop/web")
    return body


def attributor(kube: FakeKube, audit: AuditLog | None) -> Attributor:
    return Attributor(kube, admission=None, audit=audit, audit_wait_seconds=0.01,
                      commit_annotations=())


async def test_an_argocd_sync_names_who_triggered_it_and_the_commit_it_applied() -> None:
    kube = FakeKube()
    kube.add(kinds.ARGOCD_APPLICATIONS,
             io.argocd_application(initiated_by={"username": io.ALICE}))
    body = argo_managed()
    subject, log = synced_by(io.ARGOCD_CONTROLLER, body)

    initiator, commit = await attributor(kube, log)(subject, body, deleted=False,
                                                    wait_for_audit=True)

    assert (initiator.source, initiator.username) == (InitiatorSource.ARGOCD, io.ALICE)
    assert (commit.source, commit.sha) == (CommitSource.ARGOCD, io.SHA)
    assert kube.calls["get"] == 1


async def test_an_absent_application_leaves_the_commit_unresolved_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    body = argo_managed()
    subject, log = synced_by(io.ARGOCD_CONTROLLER, body)

    _, commit = await attributor(kube, log)(subject, body, deleted=False, wait_for_audit=True)

    assert commit.source is CommitSource.UNRESOLVED
    assert "cannot read" not in caplog.text


async def test_a_failed_lookup_is_logged_and_never_stops_the_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    kube.add(kinds.ARGOCD_APPLICATIONS, io.argocd_application())
    kube.fail("get", errors.TimedOut("no answer"))
    body = argo_managed()
    subject, log = synced_by(io.ARGOCD_CONTROLLER, body)

    with caplog.at_level(logging.WARNING):
        initiator, commit = await attributor(kube, log)(subject, body, deleted=False,
                                                        wait_for_audit=True)

    assert commit.source is CommitSource.UNRESOLVED
    # The writer is still known: the controller, as the audit event names it.
    assert (initiator.source, initiator.username) == (InitiatorSource.AUDIT,
                                                      io.ARGOCD_CONTROLLER)
    assert "cannot read applications argocd/shop: no answer" in caplog.text


async def test_a_flux_apply_takes_the_commit_of_its_kustomization() -> None:
    kube = FakeKube()
    kube.add(kinds.FLUX_OWNERS["Kustomization"],
             io.flux_kustomization(f"main@sha1:{io.SHA}"))
    body = objects.deployment(labels={"kustomize.toolkit.fluxcd.io/name": "shop",
                                      "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
    subject, log = synced_by(io.FLUX_KUSTOMIZE_CONTROLLER, body)

    initiator, commit = await attributor(kube, log)(subject, body, deleted=False,
                                                    wait_for_audit=True)

    # Flux records no trigger: the controller, authenticated, is the initiator.
    assert (initiator.source, initiator.username) == (InitiatorSource.AUDIT,
                                                      io.FLUX_KUSTOMIZE_CONTROLLER)
    assert (commit.source, commit.sha) == (CommitSource.FLUX, io.SHA)


async def test_a_deletion_reads_no_gitops_object() -> None:
    kube = FakeKube()
    body = argo_managed()
    subject, _ = synced_by(io.ARGOCD_CONTROLLER, body)
    log = AuditLog()
    log.ingest(io.event_list(io.audit_event("delete", io.deletion_status(body),
                                            user=io.user_info(io.ARGOCD_CONTROLLER))))

    initiator, _ = await attributor(kube, log)(subject, body, deleted=True, wait_for_audit=True)

    assert (initiator.source, initiator.username) == (InitiatorSource.AUDIT,
                                                      io.ARGOCD_CONTROLLER)
    assert kube.calls["get"] == 0


async def test_after_the_fact_what_the_caches_already_hold_is_used() -> None:
    """A new leader's first listing: its caches hold what was learned during the failover."""
    kube = FakeKube()
    body = objects.deployment()
    subject, log = synced_by(io.ALICE, body)

    initiator, _ = await attributor(kube, log)(subject, body, deleted=False, wait_for_audit=False)

    assert (initiator.source, initiator.username, initiator.verified) == (
        InitiatorSource.AUDIT, io.ALICE, True)


async def test_after_the_fact_nothing_is_waited_for() -> None:
    body = objects.deployment()
    subject = decision.subject_of(kinds.DEPLOYMENTS, body)
    log = AuditLog()
    slow = Attributor(FakeKube(), admission=None, audit=log, audit_wait_seconds=5.0,
                      commit_annotations=())
    late = asyncio.get_running_loop().call_later(0.2, log.ingest, io.event_list(
        io.audit_event("update", body, user=io.user_info(io.ALICE))))

    initiator, _ = await slow(subject, body, deleted=False, wait_for_audit=False)

    late.cancel()
    assert initiator.source is not InitiatorSource.AUDIT
    assert not initiator.verified


