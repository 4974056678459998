"""Builders of what the identity sources deliver, for unit tests.

AdmissionReview requests as the apiserver sends them to a validating webhook, audit
EventLists as its webhook backend posts them (level RequestResponse), and the GitOps
objects (Argo CD Application, Flux Kustomization and HelmRelease) the attribution reads.
Object bodies come from :mod:`unit.objects`. Every builder returns a fresh structure.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

Body = dict[str, Any]

ALICE = "alice@example.com"
ARGOCD_CONTROLLER = "system:serviceaccount:argocd:argocd-application-controller"
FLUX_KUSTOMIZE_CONTROLLER = "system:serviceaccount:flux-system:kustomize-controller"
SHA = "3f2a9c1d0b8e7f6a5c4d3e2f1a0b9c8d7e6f5a4b"
OTHER_SHA = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"

_GROUP_VERSIONS = {
    "Deployment": ("apps", "v1", "deployments"),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
    "Scale": ("autoscaling", "v1", "deployments"),
}


def user_info(
    username: str = ALICE,
    *,
    uid: str | None = "6d3c1f0e-2b7a-4c59-9e8d-1a2b3c4d5e6f",
    groups: Iterable[str] = ("developers", "system:authenticated"),
) -> Body:
    info: Body = {"username": username, "groups": list(groups)}
    if uid is not None:
        info["uid"] = uid
    return info


def with_image(body: Body, image: str) -> Body:
    """``body`` (a workload) with its first container running ``image``."""
    changed = copy.deepcopy(body)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return changed


def persisted(admitted: Body, resource_version: str) -> Body:
    """The object the watch delivers after an admitted write.

    It has a new resourceVersion and a managedFields entry for the write; what people
    change is as admitted.
    """
    body = copy.deepcopy(admitted)
    metadata = body["metadata"]
    metadata["resourceVersion"] = resource_version
    metadata["managedFields"].append({
        "manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
        "time": "2025-11-20T09:05:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {}}},
    })
    return body


def admission_request(
    operation: str,
    *,
    obj: Body | None = None,
    old_obj: Body | None = None,
    user: Body | None = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
) -> Body:
    """The ``request`` of an ``admission.k8s.io/v1`` AdmissionReview."""
    subject = obj if obj is not None else old_obj
    assert subject is not None
    group, version, resource = _GROUP_VERSIONS[subject["kind"]]
    target = {"group": group, "version": version, "resource": resource}
    request: Body = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": subject["kind"]},
        "resource": target,
        "requestKind": {"group": group, "version": version, "kind": subject["kind"]},
        "requestResource": target,
        "name": subject["metadata"]["name"],
        "namespace": subject["metadata"].get("namespace", ""),
        "operation": operation,
        "userInfo": user if user is not None else user_info(),
        "object": obj,
        "oldObject": old_obj,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return request


def scale(workload: Body, replicas: int) -> Body:
    """The ``autoscaling/v1`` Scale of a workload, as ``kubectl scale`` writes it.

    Go's encoder leaves ``spec.replicas`` out when it is 0.
    """
    metadata = workload["metadata"]
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        },
        "spec": {"replicas": replicas} if replicas else {},
        "status": {"replicas": workload["spec"]["replicas"], "selector": "app=web"},
    }


def deletion_status(workload: Body) -> Body:
    """What a DELETE of an object without finalizers answers."""
    metadata = workload["metadata"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": metadata["name"], "group": "apps", "kind": "deployments",
                    "uid": metadata["uid"]},
    }


def audit_event(
    verb: str,
    response_object: Body | None,
    *,
    user: Body | None = None,
    impersonated_user: Body | None = None,
    resource: str = "deployments",
    subresource: str | None = None,
    code: int = 200,
    stage: str = "ResponseComplete",
    request_object: Body | None = None,
    query: str = "fieldManager=kubectl-edit",
) -> Body:
    """An ``audit.k8s.io/v1`` Event at level RequestResponse."""
    path = f"/apis/apps/v1/namespaces/shop/{resource}/web"
    object_ref: Body = {"resource": resource, "namespace": "shop", "name": "web",
                        "apiGroup": "apps", "apiVersion": "v1"}
    if subresource is not None:
        path += f"/{subresource}"
        object_ref["subresource"] = subresource
    event: Body = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "8a7e4f44-5d5b-4b8e-9a6d-0f3f4e2d1c0b",
        "stage": stage,
        "requestURI": f"{path}?{query}" if query else path,
        "verb": verb,
        "user": user if user is not None else user_info(),
        "sourceIPs": ["10.0.12.7"],
        "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2025-11-20T09:05:00.101817Z",
        "stageTimestamp": "2025-11-20T09:05:00.122315Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    if impersonated_user is not None:
        event["impersonatedUser"] = impersonated_user
    if request_object is not None:
        event["requestObject"] = request_object
    if response_object is not None:
        event["responseObject"] = response_object
    return event


def event_list(*events: Body) -> Body:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
            "items": list(events)}


def argocd_application(
    *,
    name: str = "shop",
    namespace: str = "argocd",
    repo_url: str = "https://github.com/example/shop-deploy.git",
    synced: str | None = SHA,
    compared: str | None = SHA,
    initiated_by: Mapping[str, Any] | None = None,
    sources: Iterable[str] | None = None,
    revisions: Iterable[str] | None = None,
) -> Body:
    """An Argo CD Application after a sync.

    ``synced`` is the revision the last sync applied, ``compared`` the one the live state
    was last compared with. ``sources`` and ``revisions`` make a multi-source app.
    """
    spec: Body = {
        "project": "default",
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
    }
    sync_result: Body = {"resources": [{"group": "apps", "kind": "Deployment",
                                        "namespace": "shop", "name": "web",
                                        "status": "Synced", "message": "configured"}]}
    sync: Body = {"status": "Synced", "comparedTo": {"destination": spec["destination"]}}
    if sources is not None:
        spec["sources"] = [{"repoURL": url, "path": "."} for url in sources]
        sync_result["revisions"] = list(revisions or ())
        sync["revisions"] = list(revisions or ())
    else:
        spec["source"] = {"repoURL": repo_url, "path": "overlays/prod", "targetRevision": "main"}
        if synced is not None:
            sync_result["revision"] = synced
        if compared is not None:
            sync["revision"] = compared
    if initiated_by is None:
        initiated_by = {"automated": True}
    operation: Body = {"sync": {"revision": "main"}, "initiatedBy": dict(initiated_by)}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "uid": "0c9e1b7a-argo",
                     "resourceVersion": "90210"},
        "spec": spec,
        "status": {
            "sync": sync,
            "health": {"status": "Healthy"},
            "operationState": {
                "operation": operation,
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "syncResult": sync_result,
                "startedAt": "2025-11-20T09:04:58Z",
                "finishedAt": "2025-11-20T09:05:01Z",
            },
        },
    }


def flux_kustomization(last_applied_revision: str | None) -> Body:
    status: Body = {
        "observedGeneration": 4,
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "lastTransitionTime": "2025-11-20T09:05:01Z"}],
    }
    if last_applied_revision is not None:
        status["lastAppliedRevision"] = last_applied_revision
        status["lastAttemptedRevision"] = last_applied_revision
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "shop", "namespace": "flux-system"},
        "spec": {"interval": "10m", "path": "./clusters/prod/shop", "prune": True,
                 "sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
        "status": status,
    }


def helm_release(last_applied_revision: str) -> Body:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2beta1",
        "kind": "HelmRelease",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"interval": "5m", "chart": {"spec": {"chart": "shop", "version": "1.x",
                 "sourceRef": {"kind": "HelmRepository", "name": "example"}}}},
        "status": {"lastAppliedRevision": last_applied_revision,
                   "lastAttemptedRevision": last_applied_revision},
    }


def managed_field(
    manager: str,
    time: str,
    *,
    operation: str = "Update",
    subresource: str | None = None,
    fields: Body | None = None,
) -> Body:
    entry: Body = {
        "manager": manager, "operation": operation, "apiVersion": "apps/v1", "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields if fields is not None else {"f:spec": {"f:replicas": {}}},
    }
    if subresource is not None:
        entry["subresource"] = subresource
    return entry


def with_managed_fields(body: Body, *entries: Body) -> Body:
    changed = copy.deepcopy(body)
    changed["metadata"]["managedFields"] = list(entries)
    return changed

