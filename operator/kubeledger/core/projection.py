"""The projection of a watched object: the part worth diffing, remembering and recording.

Every watch event passes through here first, so the projection decides both what a diff
can show and how much memory a remembered object costs. It keeps what people change
(the spec, RBAC rules and subjects, labels, annotations) and drops what the cluster
writes by itself (status, managedFields, the other metadata, bookkeeping annotations).
The one piece of status kept is a workload's rollout phase, because its transitions are
audited (``rollout-completed``, ``rollout-failed``).

Shapes, by kind:

- workloads (Deployment, StatefulSet, DaemonSet, Argo Rollout, anything with a spec):
  ``{"metadata": {...}, "spec": {...}, "rollout": {"phase": ...}}``; ``rollout`` only for
  Deployments and Argo Rollouts, whose phase is well defined;
- Role, ClusterRole: ``{"metadata": {...}, "rules": [...], "aggregationRule": {...}}``;
- RoleBinding, ClusterRoleBinding: ``{"metadata": {...}, "subjects": [...], "roleRef": {...}}``;

where ``metadata`` holds only non-empty ``labels`` and ``annotations``, and absent fields
stay absent.

Nested values are shared with the body, not copied: a watch event's body is not changed
after delivery, and :mod:`kubeledger.core.redaction` copies only what it rewrites.
Neighbours: :mod:`kubeledger.core.redaction` hides secrets in a projection,
:mod:`kubeledger.core.diff` compares two projections, :mod:`kubeledger.core.classify` names
the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

#: Written by ``kubectl apply``: a full copy of the applied object, secret values included.
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

#: Annotations that controllers (not people) write on the watched objects themselves.
#: They change on every rollout, so keeping them would turn each rollout into a
#: configuration change of its own.
CONTROLLER_ANNOTATIONS = frozenset(
    {
        # The Deployment controller's revision counter.
        "deployment.kubernetes.io/revision",
        # The Argo Rollouts controller's revision counter.
        "rollout.argoproj.io/revision",
        # Argo Rollouts: the generation of a workload referenced through spec.workloadRef.
        "rollout.argoproj.io/workload-generation",
        # The apiserver's DaemonSet template counter, bumped on every template change.
        "deprecated.daemonset.template.generation",
    }
)

DROPPED_ANNOTATIONS = CONTROLLER_ANNOTATIONS | {LAST_APPLIED_ANNOTATION}

ROLE_KINDS = frozenset({"Role", "ClusterRole"})
BINDING_KINDS = frozenset({"RoleBinding", "ClusterRoleBinding"})

# The top-level fields that carry an RBAC object's meaning (RBAC objects have no spec).
_RBAC_FIELDS: Mapping[str, tuple[str, ...]] = {
    **dict.fromkeys(ROLE_KINDS, ("rules", "aggregationRule")),
    **dict.fromkeys(BINDING_KINDS, ("subjects", "roleRef")),
}


class RolloutPhase(StrEnum):
    """Where a workload's rollout stands, as ``kubectl rollout status`` would say."""

    PROGRESSING = "progressing"
    COMPLETE = "complete"
    FAILED = "failed"


# Argo Rollouts' own status.phase; Progressing and Paused are both still on the way.
_ARGO_ROLLOUT_PHASES: Mapping[str, RolloutPhase] = {
    "Healthy": RolloutPhase.COMPLETE,
    "Degraded": RolloutPhase.FAILED,
}


def project(body: Mapping[str, Any]) -> dict[str, Any]:
    """The projection of a watched object's body (see the module docstring for shapes)."""
    projected: dict[str, Any] = {"metadata": _metadata(body.get("metadata") or {})}
    rbac_fields = _RBAC_FIELDS.get(body.get("kind", ""))
    if rbac_fields is not None:
        projected.update((field, body[field]) for field in rbac_fields if field in body)
        return projected
    projected["spec"] = body.get("spec") or {}
    phase = rollout_phase(body)
    if phase is not None:
        projected["rollout"] = {"phase": phase.value}
    return projected


def rollout_phase(body: Mapping[str, Any]) -> RolloutPhase | None:
    """The rollout phase of a Deployment or Argo Rollout; None for other kinds."""
    kind = body.get("kind")
    if kind == "Deployment":
        return _deployment_phase(body)
    if kind == "Rollout" and str(body.get("apiVersion", "")).startswith("argoproj.io/"):
        status_phase = (body.get("status") or {}).get("phase", "")
        return _ARGO_ROLLOUT_PHASES.get(status_phase, RolloutPhase.PROGRESSING)
    return None


def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    labels = metadata.get("labels")
    if labels:
        kept["labels"] = labels
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key not in DROPPED_ANNOTATIONS
    }
    if annotations:
        kept["annotations"] = annotations
    return kept


def awaiting_controller(body: Mapping[str, Any]) -> bool:
    """Whether a Deployment's controller has not yet seen its latest generation.

    The apiserver moves a Deployment's generation on a change of its annotations as well
    as of its spec, so a lag alone does not say that a rollout is coming.
    """
    if body.get("kind") != "Deployment":
        return False
    generation: int = (body.get("metadata") or {}).get("generation", 0)
    observed: int = (body.get("status") or {}).get("observedGeneration", 0)
    return observed < generation


def _deployment_phase(body: Mapping[str, Any]) -> RolloutPhase:
    """The phase by the rules of ``kubectl rollout status`` for Deployments."""
    status = body.get("status") or {}
    # Until the controller has seen the latest spec, the counts below describe an older one.
    if awaiting_controller(body):
        return RolloutPhase.PROGRESSING
    if _progress_deadline_exceeded(status):
        return RolloutPhase.FAILED
    desired = (body.get("spec") or {}).get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if (
        updated >= desired
        # Old pods still terminating or new ones not yet available: not done.
        and status.get("replicas", 0) <= updated
        and status.get("availableReplicas", 0) >= updated
    ):
        return RolloutPhase.COMPLETE
    return RolloutPhase.PROGRESSING


def _progress_deadline_exceeded(status: Mapping[str, Any]) -> bool:
    return any(
        condition.get("type") == "Progressing"
        and condition.get("reason") == "ProgressDeadlineExceeded"
        for condition in status.get("conditions") or ()
    )
