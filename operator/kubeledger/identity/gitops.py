"""GitOps controllers: recognising their writes, and reading commit and trigger off their objects.

A write by Argo CD or Flux is authenticated as the controller's service account, which
says *that* GitOps applied it, not *what* or *for whom*. The controllers keep that on their
own objects: an Argo CD Application records the synced revision and who started the sync;
a Flux Kustomization or HelmRelease records the last applied revision. The objects they
manage point back to them through an annotation or labels.

Pure functions over dicts: the attribution finds the owning object with
:func:`argocd_application_ref` or :func:`flux_owner_ref`, reads it from the cluster, and
passes it to :func:`argocd_commit`, :func:`argocd_trigger` or :func:`flux_commit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubeledger.core.model import Commit, CommitSource, InitiatorSource
from kubeledger.identity import commit, user

# The controllers' service-account names, as their install manifests create them.
ARGOCD_CONTROLLER = "argocd-application-controller"
FLUX_CONTROLLERS = frozenset({"kustomize-controller", "helm-controller"})

# Argo CD's annotation tracking: ``<app>:<group>/<kind>:<namespace>/<name>``.
TRACKING_ID_ANNOTATION = "argocd.argoproj.io/tracking-id"
# Argo CD's label tracking (its historical default): the value is the app.
INSTANCE_LABEL = "app.kubernetes.io/instance"
DEFAULT_ARGOCD_NAMESPACE = "argocd"

# What :func:`argocd_trigger` says of a sync Argo CD started on its own (auto-sync).
AUTOMATED = "automated"

# Flux labels what it applies with its owner's name and namespace under these prefixes.
_FLUX_OWNERS = (
    ("Kustomization", "kustomize.toolkit.fluxcd.io"),
    ("HelmRelease", "helm.toolkit.fluxcd.io"),
)


def is_argocd(username: str) -> bool:
    """Whether ``username`` is Argo CD's application controller, in any namespace."""
    return _service_account_name(username) == ARGOCD_CONTROLLER


def is_flux(username: str) -> bool:
    """Whether ``username`` is Flux's kustomize or helm controller, in any namespace."""
    return _service_account_name(username) in FLUX_CONTROLLERS


def controller_source(username: str) -> InitiatorSource | None:
    """The GitOps system whose controller ``username`` is, if any."""
    if is_argocd(username):
        return InitiatorSource.ARGOCD
    if is_flux(username):
        return InitiatorSource.FLUX
    return None


def argocd_application_ref(
    body: Mapping[str, Any], default_namespace: str = DEFAULT_ARGOCD_NAMESPACE
) -> tuple[str, str] | None:
    """``(namespace, name)`` of the Argo CD Application that manages an object, if any.

    The tracking-id annotation is preferred: the instance label is also set by Helm charts
    to the release name, so it names an Application only on objects Argo CD is known to
    manage. Either names the app as ``<name>``, or as ``<namespace>_<name>`` when Argo CD
    manages Applications in any namespace (``_`` cannot occur in Kubernetes names);
    ``<name>`` alone lives in ``default_namespace``, Argo CD's own.
    """
    metadata = body.get("metadata") or {}
    tracking_id = (metadata.get("annotations") or {}).get(TRACKING_ID_ANNOTATION) or ""
    app = tracking_id.partition(":")[0] or (metadata.get("labels") or {}).get(INSTANCE_LABEL)
    if not app:
        return None
    namespace, separator, name = app.partition("_")
    if not separator:
        return default_namespace, app
    return (namespace, name) if namespace and name else None


def flux_owner_ref(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(kind, namespace, name)`` of the Flux Kustomization or HelmRelease that applied it."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    for kind, prefix in _FLUX_OWNERS:
        name, namespace = labels.get(f"{prefix}/name"), labels.get(f"{prefix}/namespace")
        if name and namespace:
            return kind, namespace, name
    return None


def argocd_commit(application: Mapping[str, Any]) -> Commit:
    """The commit an Argo CD Application last synced; unresolved when it names none.

    The last sync's result (what was applied) is preferred to ``status.sync`` (what the
    live state was compared with, which runs ahead of the cluster while out of sync).
    A multi-source Application lists one revision per source, in the order of
    ``spec.sources``: the first that is a commit wins, with its source's repository. Helm
    chart sources have chart versions, not commits, and never count.
    """
    status = application.get("status") or {}
    sync_result = (status.get("operationState") or {}).get("syncResult") or {}
    repositories = _argocd_repositories(application.get("spec") or {})
    for result in (sync_result, status.get("sync") or {}):
        revisions = result.get("revisions") or [result.get("revision")]
        for index, revision in enumerate(revisions):
            sha = commit.as_sha(revision)
            if sha is not None:
                repository = repositories[index] if index < len(repositories) else None
                return Commit(sha=sha, repository=repository, source=CommitSource.ARGOCD)
    return Commit()


def argocd_trigger(application: Mapping[str, Any]) -> str | None:
    """Who started the Application's last sync, as Argo CD's own account names them.

    :data:`AUTOMATED` for a sync Argo CD started itself; None when the Application does
    not say. Argo CD authenticated that user, the apiserver did not.
    """
    operation_state = (application.get("status") or {}).get("operationState") or {}
    initiated_by = (operation_state.get("operation") or {}).get("initiatedBy") or {}
    username = initiated_by.get("username")
    if username:
        return str(username)
    return AUTOMATED if initiated_by.get("automated") else None


def flux_commit(owner: Mapping[str, Any]) -> Commit:
    """The commit a Flux Kustomization or HelmRelease last applied; unresolved if none.

    The repository stays unknown: the owner names its source object (``spec.sourceRef``),
    and only that object holds the URL.
    """
    sha = flux_revision_sha((owner.get("status") or {}).get("lastAppliedRevision"))
    return Commit(sha=sha, source=CommitSource.FLUX) if sha else Commit()


def flux_revision_sha(revision: object) -> str | None:
    """The commit of a Flux revision string, or None.

    Formats: ``main@sha1:<sha>`` (Flux 2.0 and later), ``sha1:<sha>``, ``main/<sha>`` (earlier
    releases) or a bare ``<sha>``. Other digests (``sha256:``, the digest of an OCI
    artifact or a bucket) and chart versions name no commit.
    """
    if not isinstance(revision, str):
        return None
    digest = revision.rpartition("@")[2]  # git refs may hold "@", digests never
    algorithm, colon, value = digest.partition(":")
    if colon:
        return commit.as_sha(value) if algorithm == "sha1" else None
    return commit.as_sha(digest.rpartition("/")[2])


def _service_account_name(username: str) -> str | None:
    account = user.service_account(username)
    return account[1] if account else None


def _argocd_repositories(spec: Mapping[str, Any]) -> Sequence[str | None]:
    if spec.get("sources"):
        return [source.get("repoURL") for source in spec["sources"]]
    return [(spec.get("source") or {}).get("repoURL")]
