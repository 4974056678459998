"""Builders of Kubernetes object bodies as the watch API delivers them, for unit tests.

Bodies carry what the apiserver and controllers add (uid, resourceVersion,
managedFields, status, bookkeeping annotations), so tests see what production sees.
Every builder returns a fresh structure; tests may change it freely.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

Body = dict[str, Any]

IMAGE = "registry.example.com/shop/web:1.4.2"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def container(
    name: str = "web",
    image: str = IMAGE,
    *,
    env: Iterable[Body] = (),
    args: list[str] | None = None,
    command: list[str] | None = None,
) -> Body:
    built: Body = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if env:
        built["env"] = list(env)
    if args is not None:
        built["args"] = args
    if command is not None:
        built["command"] = command
    return built


def env_var(name: str, value: str) -> Body:
    return {"name": name, "value": value}


def env_from_secret(name: str, secret: str, key: str) -> Body:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def pod_template(
    containers: Iterable[Body] | None = None,
    *,
    app: str = "web",
    annotations: Mapping[str, str] | None = None,
    init_containers: Iterable[Body] = (),
) -> Body:
    metadata: Body = {"creationTimestamp": None, "labels": {"app": app}}
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: Body = {
        "containers": list(containers) if containers is not None else [container()],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    }
    if init_containers:
        spec["initContainers"] = list(init_containers)
    return {"metadata": metadata, "spec": spec}


def deployment(
    *,
    name: str = "web",
    namespace: str = "shop",
    template: Body | None = None,
    replicas: int = 3,
    paused: bool | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    generation: int = 1,
    revision: str = "1",
    status: Body | None = None,
) -> Body:
    """A Deployment; by default its rollout is complete (see :func:`deployment_status`)."""
    spec: Body = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template if template is not None else pod_template(),
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if paused is not None:
        spec["paused"] = paused
    body: Body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _object_metadata(
            name,
            namespace,
            generation,
            labels={"app": "web", **(labels or {})},
            annotations={"deployment.kubernetes.io/revision": revision, **(annotations or {})},
        ),
        "spec": spec,
    }
    body["metadata"]["annotations"][LAST_APPLIED] = _last_applied(body)
    body["status"] = (
        status
        if status is not None
        else deployment_status(generation=generation, replicas=replicas, updated=replicas)
    )
    return body


def deployment_status(
    *,
    generation: int = 1,
    observed_generation: int | None = None,
    replicas: int = 3,
    updated: int = 3,
    available: int | None = None,
    deadline_exceeded: bool = False,
) -> Body:
    """Deployment status; the counts default to a complete rollout of ``updated`` pods."""
    available = updated if available is None else available
    progressing: Body = {
        "type": "Progressing",
        "status": "False" if deadline_exceeded else "True",
        "reason": "ProgressDeadlineExceeded" if deadline_exceeded else "NewReplicaSetAvailable",
        "lastUpdateTime": "2025-11-20T09:00:00Z",
        "lastTransitionTime": "2025-11-20T09:00:00Z",
    }
    return {
        "observedGeneration": generation if observed_generation is None else observed_generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            progressing,
        ],
    }


def argo_rollout(
    *,
    name: str = "web",
    namespace: str = "shop",
    template: Body | None = None,
    replicas: int = 3,
    phase: str = "Healthy",
    restart_at: str | None = None,
) -> Body:
    spec: Body = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template if template is not None else pod_template(),
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    if restart_at is not None:
        spec["restartAt"] = restart_at
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": _object_metadata(
            name, namespace, 1, annotations={"rollout.argoproj.io/revision": "4"}
        ),
        "spec": spec,
        "status": {"phase": phase, "observedGeneration": "7d9c6b5f8", "stableRS": "7d9c6b5f8"},
    }


def stateful_set(*, name: str = "db", namespace: str = "shop", replicas: int = 1) -> Body:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _object_metadata(name, namespace, 1),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template([container(name, "postgres:16.4")], app=name),
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "observedGeneration": 1},
    }


def rule(
    verbs: Iterable[str],
    resources: Iterable[str],
    *,
    api_groups: Iterable[str] = ("",),
    resource_names: Iterable[str] = (),
) -> Body:
    built: Body = {
        "apiGroups": list(api_groups),
        "resources": list(resources),
        "verbs": list(verbs),
    }
    if resource_names:
        built["resourceNames"] = list(resource_names)
    return built


def url_rule(verbs: Iterable[str], urls: Iterable[str]) -> Body:
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


def role(
    rules: Iterable[Body],
    *,
    name: str = "reader",
    namespace: str = "shop",
    labels: Mapping[str, str] | None = None,
) -> Body:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _object_metadata(name, namespace, None, labels=labels),
        "rules": list(rules),
    }


def cluster_role(
    rules: Iterable[Body], *, name: str = "ops", aggregation_labels: Mapping[str, str] | None = None
) -> Body:
    body: Body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _object_metadata(name, "", None),
        "rules": list(rules),
    }
    if aggregation_labels is not None:
        body["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": aggregation_labels}]}
    return body


def role_binding(
    subjects: Iterable[Body],
    *,
    role_kind: str = "Role",
    role_name: str = "reader",
    name: str = "reader-binding",
    namespace: str = "shop",
) -> Body:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _object_metadata(name, namespace, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": list(subjects),
    }


def cluster_role_binding(
    subjects: Iterable[Body], *, role_name: str = "ops", name: str = "ops-binding"
) -> Body:
    body = role_binding(subjects, role_kind="ClusterRole", role_name=role_name, name=name)
    body["kind"] = "ClusterRoleBinding"
    del body["metadata"]["namespace"]
    return body


def user(name: str) -> Body:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def group(name: str) -> Body:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def service_account(namespace: str, name: str) -> Body:
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


def _object_metadata(
    name: str,
    namespace: str,
    generation: int | None,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Body:
    metadata: Body = {
        "name": name,
        "uid": "3f2b8c1e-7a4d-4e7b-9c1a-2d5e6f708192",
        "resourceVersion": "48213",
        "creationTimestamp": "2025-11-20T08:59:00Z",
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {}}},
            }
        ],
    }
    if namespace:
        metadata["namespace"] = namespace
    if generation is not None:
        metadata["generation"] = generation
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _last_applied(body: Body) -> str:
    """What ``kubectl apply`` leaves behind: the whole applied object, as JSON."""
    applied = {key: body[key] for key in ("apiVersion", "kind", "spec")}
    applied["metadata"] = {"name": body["metadata"]["name"]}
    return json.dumps(applied)
