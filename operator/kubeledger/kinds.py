"""What the operator watches: each audited resource, and whether it is a workload or RBAC.

Deployments and the four RBAC kinds are always watched; Argo Rollouts too (kopf starts
that watch only once the CRD exists); StatefulSets and DaemonSets when configured.
ReplicaSets are watched separately: they are read to understand revisions, never recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubeledger.kube import Resource

DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout", namespaced=True)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced=True)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                         namespaced=False)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding",
                         namespaced=True)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                                 "ClusterRoleBinding", namespaced=False)
REPLICA_SETS = Resource("apps", "v1", "replicasets", "ReplicaSet", namespaced=True)

EXTRA_WORKLOADS = {
    "statefulsets": Resource("apps", "v1", "statefulsets", "StatefulSet", namespaced=True),
    "daemonsets": Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True),
}


def audited(extra_kinds: Iterable[str] = ()) -> list[Resource]:
    """Every resource whose changes become records."""
    return [
        DEPLOYMENTS, ROLLOUTS, ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS,
        *(EXTRA_WORKLOADS[name] for name in extra_kinds),
    ]
