"""Who made a change and which commit it came from: gathering the facts for one record.

For a change seen live (``wait_for_audit``, which the recorder does not ask for a
rollout's state changing: no audit event comes for it), the audit event of the write
(when the apiserver sends them) is awaited briefly, since it arrives a second or so
after the watch event; the admission
request that explains the change is taken from the cache; the object itself names its
tool (managedFields), a declared initiator and a commit (annotation or image tag). When
the writer is a GitOps controller, its Application or Kustomization is read for who
triggered the sync and which commit it applied. ``identity.resolve`` then decides.

A change seen only after the fact (by a leader's first listing) waits for nothing, but
is still joined to what the caches already hold: the join keys are exact (uid and
resourceVersion, or the fingerprint of the very state), and a standby that takes over
holds what its receivers and its peers were told while the old leader was going. When
several changes were made in that gap, the record's initiator is the last writer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from kubeledger import metrics
from kubeledger.core import kinds
from kubeledger.core.kinds import Resource
from kubeledger.core.model import Commit, CommitSource, Initiator, InitiatorSource, Subject
from kubeledger.identity import commit as commits
from kubeledger.identity import gitops, resolve
from kubeledger.identity.admission import AdmissionCache, AdmissionIdentity
from kubeledger.identity.audit import AuditIdentity, AuditLog
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)
_Identity = TypeVar("_Identity", AuditIdentity, AdmissionIdentity)


class Attributor:
    """The recorder's attribution, built from the identity sources that are switched on."""

    def __init__(self, api: Kubernetes, *, admission: AdmissionCache | None,
                 audit: AuditLog | None, audit_wait_seconds: float,
                 commit_annotations: Sequence[str]) -> None:
        self._api = api
        self._admission = admission
        self._audit = audit
        self._audit_wait = audit_wait_seconds
        self._commit_annotations = commit_annotations

    async def __call__(self, subject: Subject, body: Mapping[str, Any] | None, *,
                       deleted: bool, wait_for_audit: bool) -> tuple[Initiator, Commit]:
        audit = await self._audit_identity(subject, deleted,
                                           wait=self._audit_wait if wait_for_audit else 0.0)
        admission = self._admission_identity(subject, body, deleted)
        facts = body or {}
        tool = ((admission.field_manager if admission else None)
                or resolve.tool_from_managed_fields(facts))
        writer = _authenticated_username(audit, admission)
        gitops_source = gitops.controller_source(writer) if writer else None
        trigger, gitops_commit = (await self._gitops(gitops_source, facts)
                                  if gitops_source and not deleted else (None, None))
        initiator = resolve.resolve(
            audit=audit, admission=admission, tool=tool,
            declared=resolve.declared_initiator(facts),
            gitops_trigger=trigger, gitops_source=gitops_source)
        return initiator, self._commit(facts, gitops_commit)

    async def _audit_identity(self, subject: Subject, deleted: bool, *,
                              wait: float) -> AuditIdentity | None:
        if self._audit is None:
            return None
        if deleted:
            found = await self._audit.wait_for_deletion(subject.uid, wait)
        else:
            found = await self._audit.wait_for(subject.uid, subject.resourceVersion, wait)
        return _joined(InitiatorSource.AUDIT, found)

    def _admission_identity(self, subject: Subject, body: Mapping[str, Any] | None,
                            deleted: bool) -> AdmissionIdentity | None:
        if self._admission is None:
            return None
        return _joined(InitiatorSource.ADMISSION, self._admission.match(
            subject.uid, None if deleted else body, "DELETE" if deleted else None))

    def _commit(self, body: Mapping[str, Any], gitops_commit: Commit | None) -> Commit:
        """Annotation first (the pipeline said so), then the GitOps revision, then image tags."""
        found = commits.commit_from_object(body, self._commit_annotations)
        if found is not None and found.source is CommitSource.ANNOTATION:
            return found
        if gitops_commit is not None and gitops_commit.sha:
            return gitops_commit
        return found or Commit()

    async def _gitops(self, source: InitiatorSource,
                      body: Mapping[str, Any]) -> tuple[str | None, Commit | None]:
        """Who triggered the sync and which commit it applied, from the controller's object."""
        if source is InitiatorSource.ARGOCD:
            ref = gitops.argocd_application_ref(body)
            if ref is None:
                return None, None
            application = await self._read(kinds.ARGOCD_APPLICATIONS, *ref)
            if application is None:
                return None, None
            return gitops.argocd_trigger(application), gitops.argocd_commit(application)
        owner_ref = gitops.flux_owner_ref(body)
        if owner_ref is None:
            return None, None
        kind, namespace, name = owner_ref
        owner = await self._read(kinds.FLUX_OWNERS[kind], namespace, name)
        return None, gitops.flux_commit(owner) if owner else None

    async def _read(self, resource: Resource, namespace: str,
                    name: str) -> dict[str, Any] | None:
        try:
            return await self._api.get(resource, name, namespace=namespace)
        except errors.NotFound:
            return None  # no such object (or no such CRD here): the commit stays unresolved
        except Exception as error:  # a failed lookup leaves the commit unresolved, no more
            logger.warning("cannot read %s %s/%s: %s", resource.plural, namespace, name, error)
            return None


def _joined(source: InitiatorSource, identity: _Identity | None) -> _Identity | None:
    """Counts whether an identity source that was asked knew the write; passes its answer on."""
    metrics.IDENTITY_JOINS.labels(source.value, "miss" if identity is None else "hit").inc()
    return identity


def _authenticated_username(audit: AuditIdentity | None,
                            admission: AdmissionIdentity | None) -> str | None:
    if audit is not None:
        return audit.effective.username
    return admission.user.username if admission is not None else None
