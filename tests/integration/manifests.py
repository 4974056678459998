"""Small builders for the objects the integration tests create.

Deployments run the stack's own test images (``stack.images``): the node pulls nothing
from outside, so their pods really start and their rollouts really complete.
"""

from __future__ import annotations

import uuid
from typing import Any

from stack import images

TEST_IMAGE, TEST_IMAGE_2 = images.TEST_IMAGES
# A tag no registry serves: its pods never start, so its rollouts really fail.
MISSING_IMAGE = TEST_IMAGE.rsplit(":", 1)[0] + ":missing"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def deployment(name: str, *, image: str = TEST_IMAGE, replicas: int = 1,
               env: dict[str, str] | None = None,
               progress_deadline_seconds: int | None = None) -> dict[str, Any]:
    labels = {"app": name}
    container: dict[str, Any] = {"name": "app", "image": image}
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "demo"}, "spec": spec}


def role(name: str, rules: list[dict[str, Any]], *, namespace: str | None = "demo"
         ) -> dict[str, Any]:
    kind = "Role" if namespace else "ClusterRole"
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": metadata, "rules": rules}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]], *,
            namespace: str | None = "demo") -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                        "name": role_name},
            "subjects": subjects}


def user(name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def open_crd(group: str, kind: str, plural: str, version: str = "v1alpha1") -> dict[str, Any]:
    """A namespaced CRD accepting any content: stands in for a third party's (Argo's) CRD."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [{"name": version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {
                              "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }
