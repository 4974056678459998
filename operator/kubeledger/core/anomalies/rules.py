"""The detectors that look at one record alone: each says why its change looks wrong.

Each takes the record (before it is sealed) and the policy, and yields reasons. None of
them keeps state; the windowed ones (bursts, spikes) are in ``windows``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubeledger.core import projection
from kubeledger.core.anomalies import cron, images
from kubeledger.core.anomalies.policy import Policy, exempt
from kubeledger.core.model import Action, InitiatorSource, Observation, RecordSpec, Severity

# What the cluster reports by itself (a rollout's state), or found already there: no
# one wrote these at the time, so no initiator rule applies to them.
NOT_WRITES = frozenset({Action.ROLLOUT_COMPLETED, Action.ROLLOUT_FAILED, Action.INVENTORIED})
# Changes that may set a pod template's images.
TEMPLATE_ACTIONS = frozenset({Action.CREATED, Action.IMAGE_CHANGED, Action.CONFIG_CHANGED,
                              Action.ROLLED_BACK, Action.CHANGED_WHILE_UNOBSERVED,
                              Action.INVENTORIED})
RBAC_KINDS = projection.ROLE_KINDS | projection.BINDING_KINDS
GITOPS_SOURCES = frozenset({InitiatorSource.ARGOCD, InitiatorSource.FLUX})

# How Argo CD (annotation or label tracking) and Flux (labels) mark what they manage.
ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGOCD_INSTANCE_LABEL = "argocd.argoproj.io/instance"
FLUX_LABELS = ("kustomize.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/name")
_ARGOCD_CONTROLLER = "argocd-application-controller"
_FLUX_CONTROLLERS = frozenset({"kustomize-controller", "helm-controller"})


def out_of_band(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """A GitOps-managed object written by a verified identity that is not its controller."""
    manager = gitops_manager(spec.snapshot)
    initiator = spec.initiator
    if (manager is None or spec.action in NOT_WRITES or not initiator.verified
            or initiator.source in GITOPS_SOURCES or not initiator.username
            or _is_controller(initiator.username, manager)
            or exempt(initiator, policy.gitops_exempt)):
        return
    yield (f"{spec.subject.kind} {spec.subject.name} is managed by {manager} but was "
           f"changed ({spec.action.value}) by {initiator.username}")


def unverified_initiator(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """A write in a protected namespace whose initiator the apiserver did not vouch for."""
    if (policy.protects(spec.subject.namespace) and spec.action not in NOT_WRITES
            and not spec.initiator.verified):
        who = spec.initiator.username or "nobody known"
        yield (f"change in protected namespace {spec.subject.namespace} by {who}, not "
               f"verified (source {spec.initiator.source.value})")


def declared_mismatch(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """A protected namespace's object declaring an initiator other than the real one."""
    initiator = spec.initiator
    if policy.protects(spec.subject.namespace) and initiator.declaredMismatch:
        yield (f"declares {initiator.declared} but was changed by "
               f"{initiator.username or 'someone else'}")


def outside_change_window(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """A live write in a protected namespace at a time no change window covers."""
    if (not policy.change_windows or not policy.protects(spec.subject.namespace)
            or spec.action in NOT_WRITES or spec.observation is not Observation.LIVE
            or exempt(spec.initiator, policy.change_window_exempt)):
        return
    local = spec.observedAt.astimezone(policy.change_window_zone)
    if not any(window.open_at(local) for window in policy.change_windows):
        yield (f"changed at {local:%a %Y-%m-%d %H:%M} {policy.change_window_zone.key}, "
               f"outside the change windows ({_windows(policy.change_windows)})")


def critical_rbac(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """Every critical RBAC record (cluster-admin, wildcards, secrets, escalation verbs)."""
    if spec.subject.kind in RBAC_KINDS and spec.severity is Severity.CRITICAL:
        yield "; ".join(spec.reasons) or f"critical change to {spec.subject.kind}"


def unapproved_registry(spec: RecordSpec, policy: Policy) -> Iterator[str]:
    """Images set by this change that come from no approved registry."""
    if not policy.approved_registries or spec.action not in TEMPLATE_ACTIONS:
        return
    foreign = sorted({image for image in images.images_of(spec.snapshot)
                      if not images.approved(image, policy.approved_registries)})
    if foreign:
        yield (f"image {', '.join(foreign)} from outside the approved registries "
               f"({', '.join(policy.approved_registries)})")


def gitops_manager(snapshot: Mapping[str, Any] | None) -> str | None:
    """``Argo CD`` or ``Flux`` when the snapshot carries their tracking marks."""
    metadata = (snapshot or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    if ARGOCD_TRACKING_ANNOTATION in annotations or ARGOCD_INSTANCE_LABEL in labels:
        return "Argo CD"
    if any(label in labels for label in FLUX_LABELS):
        return "Flux"
    return None


def _is_controller(username: str, manager: str) -> bool:
    account = username.rpartition(":")[2] if username.startswith(
        "system:serviceaccount:") else ""
    controllers = {_ARGOCD_CONTROLLER} if manager == "Argo CD" else _FLUX_CONTROLLERS
    return account in controllers


def _windows(windows: tuple[cron.Window, ...]) -> str:
    return "; ".join(window.text for window in windows)
