"""What protects the records is itself watched: removing the guard, or using the break-glass
path, leaves a critical record, with who did it.

The operator runs from its image through its chart (the module's release, see conftest),
with a break-glass group. Whatever a test removes it puts back, so that the tests after
it (``kubeledger verify`` among them) find the guard and an intact chain.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from integration.kubectl import Kubectl, KubectlError, eventually
from integration.manifests import unique
from integration.operator import uid_of, verify_chain, wait_for_action
from stack import release

POLICY = f"{release.FULLNAME}-protect-records"
CRD = "auditrecords.kubeledger.io"
BREAK_GLASS = "kubeledger:break-glass"
OPERATOR_IDENTITY = f"system:serviceaccount:{release.NAMESPACE}:{release.FULLNAME}"
SRE = "e2e-sre"
AS_BREAK_GLASS = (f"--as={SRE}", "--as-group=system:masters", f"--as-group={BREAK_GLASS}")


def recreatable(found: dict[str, Any]) -> dict[str, Any]:
    """An object as read, made fit to be created again: what the apiserver set removed."""
    metadata = {key: found["metadata"][key] for key in ("name", "labels", "annotations")
                if key in found["metadata"]}
    return {**{key: value for key, value in found.items() if key not in ("metadata", "status")},
            "metadata": metadata}


def audit_events_reach_the_writer(kubectl: Kubectl) -> None:
    """Waits until a change's record names its initiator from the audit log.

    Right after the release's pods start, the Service may hand an audit batch to the
    standby before it has found the writer (it looks for its peers every few seconds),
    and the writer records the change without it.
    """
    def attributed_from_audit() -> bool:
        name = unique("e2e-audit-probe")
        kubectl("create", "clusterrole", name, "--verb=get", "--resource=configmaps")
        try:
            created = wait_for_action(kubectl, uid_of(kubectl, {
                "kind": "ClusterRole", "metadata": {"name": name}}), "created")
        finally:
            kubectl("delete", "clusterrole", name)
        return bool(created["spec"]["initiator"]["source"] == "audit")

    eventually(attributed_from_audit, timeout=90, what="a record attributed by the audit log")


def test_deleting_the_policy_binding_is_a_critical_record(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    audit_events_reach_the_writer(kubectl)
    binding: dict[str, Any] = kubectl.json("get", "validatingadmissionpolicybinding", POLICY)
    uid = uid_of(kubectl, binding)
    kubectl("delete", "validatingadmissionpolicybinding", POLICY)
    try:
        deleted = wait_for_action(kubectl, uid, "deleted")
    finally:
        kubectl("create", "-f", "-", stdin=json.dumps(recreatable(binding)))

    spec = deleted["spec"]
    assert (spec["subject"]["kind"], spec["subject"]["name"]) == (
        "ValidatingAdmissionPolicyBinding", POLICY)
    assert spec["severity"] == "critical"
    assert spec["reasons"][0] == ("deletes the binding of the records' "
                                  "ValidatingAdmissionPolicy: the policy is no longer enforced")
    assert (spec["initiator"]["source"], spec["initiator"]["verified"]) == ("audit", True)


def test_a_break_glass_deletion_of_a_record_is_a_critical_record_naming_who(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    in_cluster.upgrade(protection={"breakGlassGroups": [BREAK_GLASS]})
    audit_events_reach_the_writer(kubectl)
    record = min(kubectl.json("get", "auditrecords")["items"],
                 key=lambda item: item["spec"]["chain"]["sequence"])
    name, sequence = record["metadata"]["name"], record["spec"]["chain"]["sequence"]
    kubectl("delete", "auditrecord", name, *AS_BREAK_GLASS)
    try:
        deleted = wait_for_action(kubectl, record["metadata"]["uid"], "deleted")
    finally:
        # Put back as the operator writes records (the policy lets only it create them).
        kubectl("create", "-f", "-", f"--as={OPERATOR_IDENTITY}",
                stdin=json.dumps(recreatable(record)))

    spec = deleted["spec"]
    assert (spec["subject"]["kind"], spec["subject"]["name"]) == ("AuditRecord", name)
    assert (spec["action"], spec["severity"]) == ("deleted", "critical")
    assert spec["reasons"] == [f"AuditRecord {name} (sequence {sequence}) deleted outside "
                               "retention (break-glass, or without the guard)"]
    initiator = spec["initiator"]
    assert (initiator["username"], initiator["verified"], initiator["source"]) == (
        SRE, True, "audit")
    assert BREAK_GLASS in initiator["groups"]
    # The record is back and the chain, the deletion's record included, is whole.
    assert kubectl.json("get", "auditrecord", name)["spec"] == record["spec"]
    verdict = verify_chain(in_cluster.endpoints)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "intact" in verdict.stdout


def test_nobody_but_break_glass_may_delete_the_records_crd(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    # Server-side dry runs pass admission as a deletion would, and delete nothing. A
    # cluster-admin passes RBAC, not the policy.
    with pytest.raises(KubectlError) as refused:
        kubectl("delete", "crd", CRD, "--dry-run=server")
    assert "the AuditRecord CRD cannot be deleted: it would delete every record" in (
        refused.value.stderr)
    assert "(server dry run)" in kubectl("delete", "crd", CRD, "--dry-run=server",
                                         *AS_BREAK_GLASS)
    assert kubectl("get", "crd", CRD, "-o", "name").strip()
