"""Every Kubernetes resource the operator addresses, and the one list of what is audited.

Deployments and the four RBAC kinds are always audited; Argo Rollouts too (kopf starts
that watch only once the CRD exists); StatefulSets and DaemonSets when configured
(``watch_extra_kinds``); and what protects the trail itself (``PROTECTION``): the
ValidatingAdmissionPolicies and their bindings, and the AuditRecord CRD (that one object
only). The rest are read or written, never watched by kopf: the operator's own
AuditRecords (watched for their deletions alone, ``recording.break_glass``), the other
CRDs, and the GitOps objects that say who synced a change.

Whatever else must agree with this list is derived from it or checked against it: the
settings' choice of extra kinds (``config``), the audit events kept (``identity.audit``),
and, by a unit test, the chart's webhook rules and the test stack's audit policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from kubeledger.core import model


@dataclass(frozen=True)
class Resource:
    """A Kubernetes resource addressed the way the dynamic API needs it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    # Has a ``scale`` subresource: writes through it (``kubectl scale``, autoscalers) are
    # seen by a webhook or an audit policy only when a rule names ``<plural>/scale``.
    scalable: bool = False
    # Named by the chart's admission webhook rules. Not for admissionregistration objects,
    # which the apiserver never sends to webhooks, nor for the one audited CRD: a rule
    # cannot name a single object, and every CRD write of the cluster would wait for the
    # webhook. Their initiators come from the audit log alone.
    webhook: bool = True
    # Only the object of this name is audited (the records' CRD among every CRD): listings
    # select it by name where they can, and handlers skip the others (``audits``).
    only: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def field_selector(self) -> str | None:
        """The listing's field selector that keeps only the audited object, if one."""
        return None if self.only is None else f"metadata.name={self.only}"

    def audits(self, name: str) -> bool:
        """Whether the object of this name is audited."""
        return self.only is None or name == self.only


RBAC_GROUP = "rbac.authorization.k8s.io"

DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True,
                       scalable=True)
ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout", namespaced=True,
                    scalable=True)
ROLES = Resource(RBAC_GROUP, "v1", "roles", "Role", namespaced=True)
CLUSTER_ROLES = Resource(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", namespaced=False)
ROLE_BINDINGS = Resource(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", namespaced=True)
CLUSTER_ROLE_BINDINGS = Resource(RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding",
                                 namespaced=False)

EXTRA_WORKLOADS = {
    "statefulsets": Resource("apps", "v1", "statefulsets", "StatefulSet", namespaced=True,
                             scalable=True),
    "daemonsets": Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True),
}

# What the operator itself keeps and installs.
RECORDS = Resource(model.GROUP, model.VERSION, model.PLURAL, model.KIND, namespaced=False)
CUSTOM_RESOURCE_DEFINITIONS = Resource("apiextensions.k8s.io", "v1",
                                       "customresourcedefinitions",
                                       "CustomResourceDefinition", namespaced=False)
ADMISSION_GROUP = "admissionregistration.k8s.io"
# What keeps the records safe, audited so that removing or weakening it is seen.
ADMISSION_POLICIES = Resource(ADMISSION_GROUP, "v1", "validatingadmissionpolicies",
                              "ValidatingAdmissionPolicy", namespaced=False, webhook=False)
ADMISSION_POLICY_BINDINGS = Resource(ADMISSION_GROUP, "v1", "validatingadmissionpolicybindings",
                                     "ValidatingAdmissionPolicyBinding", namespaced=False,
                                     webhook=False)
RECORDS_CRD_NAME = f"{model.PLURAL}.{model.GROUP}"
RECORDS_CRD = dataclasses.replace(CUSTOM_RESOURCE_DEFINITIONS, webhook=False,
                                  only=RECORDS_CRD_NAME)
PROTECTION = (ADMISSION_POLICIES, ADMISSION_POLICY_BINDINGS, RECORDS_CRD)

# One writer at a time: leader election on a Lease in the operator's namespace; the
# replicas find each other through the EndpointSlices of their webhook Service.
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice",
                           namespaced=True)

# What the GitOps controllers keep about a sync: read to name its trigger and commit.
ARGOCD_APPLICATIONS = Resource("argoproj.io", "v1alpha1", "applications", "Application",
                               namespaced=True)
FLUX_OWNERS = {
    "Kustomization": Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations",
                              "Kustomization", namespaced=True),
    "HelmRelease": Resource("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease",
                            namespaced=True),
}


def audited(extra_kinds: Iterable[str] = ()) -> list[Resource]:
    """Every resource whose changes become records."""
    return [
        DEPLOYMENTS, ROLLOUTS, ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS,
        *PROTECTION, *(EXTRA_WORKLOADS[name] for name in extra_kinds),
    ]


def every_audited() -> list[Resource]:
    """Every resource that can be audited, with every extra kind switched on."""
    return audited(EXTRA_WORKLOADS)
