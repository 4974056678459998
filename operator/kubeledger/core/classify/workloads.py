"""Naming a change to a workload: Deployment, Argo Rollout, StatefulSet, DaemonSet.

Works on projections (see :mod:`kubeledger.core.projection`). One change can do several things
at once (``kubectl rollout undo`` changes the image too; a ``kubectl apply`` may scale and
change configuration): every detector below reports what it sees, and the most
significant action by :data:`PRECEDENCE` names the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubeledger.core import model, projection, revisions
from kubeledger.core.classify import common

Action = model.Action
Severity = model.Severity

#: Most significant first: when one change does several things, the first one names it.
PRECEDENCE: tuple[Action, ...] = (
    Action.ROLLED_BACK,
    Action.IMAGE_CHANGED,
    Action.ROLLOUT_RESTARTED,
    Action.CONFIG_CHANGED,
    Action.PAUSED,
    Action.RESUMED,
    Action.SCALED,
    Action.ROLLOUT_FAILED,
    Action.ROLLOUT_COMPLETED,
)

SEVERITY: Mapping[Action, Severity] = {
    Action.CREATED: Severity.NOTICE,
    Action.DELETED: Severity.WARNING,
    Action.ROLLED_BACK: Severity.WARNING,
    Action.IMAGE_CHANGED: Severity.NOTICE,
    Action.ROLLOUT_RESTARTED: Severity.NOTICE,
    Action.CONFIG_CHANGED: Severity.NOTICE,
    Action.PAUSED: Severity.NOTICE,
    Action.RESUMED: Severity.NOTICE,
    Action.SCALED: Severity.INFO,
    Action.ROLLOUT_FAILED: Severity.WARNING,
    Action.ROLLOUT_COMPLETED: Severity.INFO,
}

#: The pod-template annotation ``kubectl rollout restart`` sets on Deployments & co.
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"

# Spec fields with an action of their own; any other spec change is a configuration change.
_OWN_ACTION_SPEC_FIELDS = ("replicas", "paused", "restartAt")
_CONTAINER_LISTS = (("initContainers", "initContainer"), ("containers", "container"))

Projection = Mapping[str, Any]
Findings = Iterator[common.Finding]
Detector = Callable[[Projection, Projection, common.Context], Findings]


def classify(
    old: Projection | None, new: Projection | None, context: common.Context
) -> common.Classification | None:
    """The classification of a workload change; None when nothing meaningful changed."""
    if new is None:
        return None if old is None else _classification(Action.DELETED, ())
    if old is None:
        reasons = tuple(f"{who}: {image}" for who, image in _images(new).items())
        return _classification(Action.CREATED, reasons)
    findings = [finding for detect in _DETECTORS for finding in detect(old, new, context)]
    return common.conclude(findings, PRECEDENCE)


def _rolled_back(old: Projection, new: Projection, context: common.Context) -> Findings:
    template = _template(new)
    if (
        template
        and template != _template(old)
        and revisions.fingerprint(template) in context.older_revision_fingerprints
    ):
        yield _finding(Action.ROLLED_BACK, "pod template is that of an earlier revision")


def _image_changes(old: Projection, new: Projection, _: common.Context) -> Findings:
    before, after = _images(old), _images(new)
    for who in {**before, **after}:
        if who not in after:
            yield _finding(Action.IMAGE_CHANGED, f"{who} removed (was {before[who]})")
        elif who not in before:
            yield _finding(Action.IMAGE_CHANGED, f"{who} added: {after[who]}")
        elif before[who] != after[who]:
            yield _finding(Action.IMAGE_CHANGED, f"{who}: {before[who]} -> {after[who]}")


def _restarted(old: Projection, new: Projection, _: common.Context) -> Findings:
    # Deployments & co. restart through a pod-template annotation, Argo Rollouts through
    # spec.restartAt; neither exists on the other, so both are checked for every kind.
    for read in (_restarted_at_annotation, _restart_at):
        restarted_at = read(new)
        if restarted_at is not None and restarted_at != read(old):
            yield _finding(Action.ROLLOUT_RESTARTED, f"restart requested at {restarted_at}")


def _reconfigured(old: Projection, new: Projection, _: common.Context) -> Findings:
    before, after = _configuration(old), _configuration(new)
    changed = [
        f"{part}.{key}"
        for part in ("metadata", "spec")
        for key in sorted(before[part].keys() | after[part].keys())
        if before[part].get(key) != after[part].get(key)
    ]
    if changed:
        yield _finding(Action.CONFIG_CHANGED, "changed " + ", ".join(changed))


def _paused_or_resumed(old: Projection, new: Projection, _: common.Context) -> Findings:
    was_paused, is_paused = bool(_spec(old).get("paused")), bool(_spec(new).get("paused"))
    if is_paused and not was_paused:
        yield _finding(Action.PAUSED, "rollout paused")
    elif was_paused and not is_paused:
        yield _finding(Action.RESUMED, "rollout resumed")


def _scaled(old: Projection, new: Projection, _: common.Context) -> Findings:
    before, after = _spec(old).get("replicas"), _spec(new).get("replicas")
    if before != after:
        yield _finding(Action.SCALED, f"replicas {before} -> {after}")


def _rollout_ended(old: Projection, new: Projection, _: common.Context) -> Findings:
    before, after = _phase(old), _phase(new)
    if before == after:
        return
    if after == projection.RolloutPhase.COMPLETE:
        yield _finding(Action.ROLLOUT_COMPLETED, "rollout complete")
    elif after == projection.RolloutPhase.FAILED:
        yield _finding(Action.ROLLOUT_FAILED, "rollout failed")


_DETECTORS: tuple[Detector, ...] = (
    _rolled_back,
    _image_changes,
    _restarted,
    _reconfigured,
    _paused_or_resumed,
    _scaled,
    _rollout_ended,
)


def _classification(action: Action, reasons: tuple[str, ...]) -> common.Classification:
    return common.Classification(action, SEVERITY[action], reasons)


def _finding(action: Action, reason: str) -> common.Finding:
    return common.Finding(action, SEVERITY[action], reason)


def _spec(workload: Projection) -> Mapping[str, Any]:
    return workload.get("spec") or {}


def _template(workload: Projection) -> Mapping[str, Any]:
    return _spec(workload).get("template") or {}


def _phase(workload: Projection) -> str | None:
    return (workload.get("rollout") or {}).get("phase")


def _restarted_at_annotation(workload: Projection) -> Any:
    return ((_template(workload).get("metadata") or {}).get("annotations") or {}).get(
        RESTARTED_AT_ANNOTATION
    )


def _restart_at(workload: Projection) -> Any:
    return _spec(workload).get("restartAt")


def _images(workload: Projection) -> dict[str, Any]:
    """Each container's image, keyed by a label such as ``container web``."""
    pod = _template(workload).get("spec") or {}
    return {
        f"{label} {container.get('name')}": container.get("image")
        for field, label in _CONTAINER_LISTS
        for container in pod.get(field) or ()
    }


def _configuration(workload: Projection) -> dict[str, Mapping[str, Any]]:
    """The workload without what other detectors report: images, restarts, replicas, pause.

    Copies only the mappings on the way to what it leaves out.
    """
    spec = {
        key: value for key, value in _spec(workload).items() if key not in _OWN_ACTION_SPEC_FIELDS
    }
    if "template" in spec:
        spec["template"] = _template_configuration(spec["template"])
    return {"metadata": workload.get("metadata") or {}, "spec": spec}


def _template_configuration(template: Mapping[str, Any]) -> dict[str, Any]:
    metadata = dict(template.get("metadata") or {})
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key != RESTARTED_AT_ANNOTATION
    }
    metadata["annotations"] = annotations
    pod = dict(template.get("spec") or {})
    for field, _ in _CONTAINER_LISTS:
        if field in pod:
            pod[field] = [
                {key: value for key, value in container.items() if key != "image"}
                for container in pod[field]
            ]
    return {**template, "metadata": metadata, "spec": pod}
