"""The operator as users run it: its image, through its chart, in a real cluster with a node.

The module's release (see conftest) is the one ``make dev-up`` installs: the webhook behind
its Service, the apiserver's audit backend pointed at the pod over the cluster network,
Elasticsearch reached from the pod. The tests run in file order and end with the
uninstall, which must leave the CRD and the records. One release serves them all:
installing one (and pointing the apiserver's audit backend at it) costs a minute.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from integration.kubectl import Kubectl, KubectlError, eventually
from integration.manifests import deployment, unique
from integration.operator import actions_of, uid_of, verify_chain, wait_for_action
from stack import images, release

TEST_IMAGE, TEST_IMAGE_2 = images.TEST_IMAGES


def operator_pod(kubectl: Kubectl, in_cluster: release.Release) -> dict[str, Any]:
    """The pod that writes: the one the Lease names (the chart runs a standby beside it)."""
    writer = in_cluster.writer()
    assert writer is not None
    found: dict[str, Any] = kubectl.json("get", "pod", "-n", release.NAMESPACE, writer)
    return found


def test_operator_pod_runs_the_dockerfile_image_locked_down(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    pod = operator_pod(kubectl, in_cluster)
    assert pod["status"]["phase"] == "Running"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == in_cluster.image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    name = pod["metadata"]["name"]
    exec_ = ("exec", "-n", release.NAMESPACE, name, "--")
    assert kubectl(*exec_, "id", "-u").strip() == "65532"
    with pytest.raises(KubectlError, match="Read-only file system"):
        kubectl(*exec_, "touch", "/opt/kubeledger/written")
    assert kubectl(*exec_, "kubeledger", "version").strip() == "0.1.0"


def test_alices_change_is_recorded_verified_and_shipped_from_the_pod(
    kubectl: Kubectl, in_cluster: release.Release, elasticsearch: Elasticsearch,
) -> None:
    name = unique("web")
    alice = kubectl.as_user("alice")
    alice("-n", "demo", "create", "deployment", name, f"--image={TEST_IMAGE}")
    uid = uid_of(kubectl, deployment(name))
    created = wait_for_action(kubectl, uid, "created")
    initiator = created["spec"]["initiator"]
    # The audit event came through the cluster network to the pod's receiver...
    assert (initiator["username"], initiator["verified"], initiator["source"]) == (
        "alice", True, "audit")
    # ...and the admission request through the webhook's Service: its field manager.
    assert initiator["tool"] == "kubectl-create"

    def shipped() -> list[dict[str, Any]]:
        elasticsearch.indices.refresh(index="kubeledger-*")
        hits = elasticsearch.search(index="kubeledger-*", query={
            "term": {"orchestrator.resource.id": uid}})["hits"]["hits"]
        return [hit for hit in hits if hit["_id"] == created["metadata"]["name"]]

    (document,) = eventually(shipped, timeout=30, what="the record's Elasticsearch document")
    assert document["_source"]["user"]["name"] == "alice"


def test_real_rollouts_complete_and_a_missing_image_fails(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    alice = kubectl.as_user("alice")
    manifest = deployment(unique("roll"), image=TEST_IMAGE, progress_deadline_seconds=15)
    alice.apply(manifest)
    uid = uid_of(kubectl, manifest)
    wait_for_action(kubectl, uid, "rollout-completed", timeout=60)
    target = f"deployment/{manifest['metadata']['name']}"
    alice("-n", "demo", "set", "image", target, f"app={TEST_IMAGE_2}")
    alice("-n", "demo", "rollout", "status", target, "--timeout=60s")
    expected = ["created", "rollout-completed", "image-changed", "rollout-completed"]
    eventually(lambda: actions_of(kubectl, uid) == expected, timeout=30,
               what=f"the records {expected}")
    # No registry serves this tag: the pod never starts and the deadline passes.
    missing = TEST_IMAGE.rsplit(":", 1)[0] + ":missing"
    alice("-n", "demo", "set", "image", target, f"app={missing}")
    failed = wait_for_action(kubectl, uid, "rollout-failed", timeout=90)
    phase = {c["path"]: c.get("new") for c in failed["spec"]["changes"]}["rollout.phase"]
    assert phase == "failed"


OPERATOR_IDENTITY = f"system:serviceaccount:{release.NAMESPACE}:{release.FULLNAME}"
POLICY = f"{release.FULLNAME}-protect-records"
BREAK_GLASS = "kubeledger:break-glass"
REFUSED_BY_POLICY = (f"is forbidden: ValidatingAdmissionPolicy '{POLICY}' with binding "
                     f"'{POLICY}' denied request: ")


def some_record(kubectl: Kubectl) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", "auditrecords")["items"][0]
    return found


def may(kubectl: Kubectl, user: str, verb: str) -> bool:
    """Whether RBAC lets ``user`` ``verb`` AuditRecords (``kubectl auth can-i``)."""
    try:
        kubectl("auth", "can-i", verb, "auditrecords.kubeledger.io", f"--as={user}")
    except KubectlError:
        return False  # "no" exits 1
    return True


def test_records_are_refused_to_anyone_but_the_operator_cluster_admins_included(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    record = some_record(kubectl)
    name = record["metadata"]["name"]
    removal = (f"AuditRecords are removed by kubeledger's retention only "
               f"({OPERATOR_IDENTITY})")
    # A cluster-admin (system:masters) passes RBAC, not the policy.
    with pytest.raises(KubectlError) as by_admin:
        kubectl("delete", "auditrecord", name)
    assert f"(Forbidden): auditrecords.kubeledger.io \"{name}\" {REFUSED_BY_POLICY}{removal}" in (
        by_admin.value.stderr)
    # Nor does anyone else RBAC lets delete records.
    grant = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "e2e-record-deleter"},
             "rules": [{"apiGroups": ["kubeledger.io"], "resources": ["auditrecords"],
                        "verbs": ["get", "delete", "create"]}]}
    kubectl.apply(grant)
    kubectl("create", "clusterrolebinding", "e2e-record-deleter",
            "--clusterrole=e2e-record-deleter", "--user=alice")
    try:
        eventually(lambda: may(kubectl, "alice", "delete"), what="alice's grant to apply")
        with pytest.raises(KubectlError) as by_alice:
            kubectl.as_user("alice")("delete", "auditrecord", name)
        assert f"{REFUSED_BY_POLICY}{removal}" in by_alice.value.stderr
        forged = {"apiVersion": record["apiVersion"], "kind": record["kind"],
                  "metadata": {"name": f"forged-{unique('by-alice')}"}, "spec": record["spec"]}
        with pytest.raises(KubectlError) as forging:
            kubectl.as_user("alice")("create", "-f", "-", stdin=json.dumps(forged))
        assert (f"{REFUSED_BY_POLICY}AuditRecords are written by kubeledger only "
                f"({OPERATOR_IDENTITY}): a record cannot be added by hand") in (
            forging.value.stderr)
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", "e2e-record-deleter",
                "--ignore-not-found")
    # The spec is refused by the CRD's own rule first (422), before admission runs. (A value
    # no record has: a patch that changes nothing is no change, and is let through.)
    with pytest.raises(KubectlError, match="spec is immutable"):
        kubectl("patch", "auditrecord", name, "--type=merge",
                "--patch", '{"spec": {"cluster": "forged-elsewhere"}}')
    # Nor its index, which a starting writer reads in place of the spec.
    for annotation in ("kubeledger.io/index=forged", "kubeledger.io/index-"):
        with pytest.raises(KubectlError) as indexing:
            kubectl("annotate", "--overwrite", "auditrecord", name, annotation)
        assert (f"{REFUSED_BY_POLICY}an AuditRecord's index (the kubeledger.io/index "
                f"annotation) cannot be changed") in indexing.value.stderr
    # Retention, the operator's own deletions, passes (dry run: nothing is removed).
    assert "(server dry run)" in kubectl("delete", "auditrecord", name, "--dry-run=server",
                                         f"--as={OPERATOR_IDENTITY}")
    assert kubectl.json("get", "auditrecord", name)["spec"] == record["spec"]


CRD = "auditrecords.kubeledger.io"
SRE = "e2e-sre"
AS_BREAK_GLASS = (f"--as={SRE}", "--as-group=system:masters", f"--as-group={BREAK_GLASS}")


# What protects the records is itself watched: removing the guard, or using the
# break-glass path, leaves a critical record, with who did it. Whatever a test removes
# it puts back, so that the tests after it find the guard and an intact chain.


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


def test_helm_upgrade_keeps_records_salt_and_chain(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    before = {r["metadata"]["name"] for r in kubectl.json("get", "auditrecords")["items"]}
    salt = in_cluster.salt()
    in_cluster.upgrade(podAnnotations={"kubeledger.io/upgraded": unique("at")},
                       protection={"breakGlassGroups": [BREAK_GLASS]})
    assert in_cluster.salt() == salt
    after = {r["metadata"]["name"] for r in kubectl.json("get", "auditrecords")["items"]}
    assert before <= after
    # The new pod records live, and the chain it continues is intact.
    manifest = deployment(unique("after"), image=TEST_IMAGE)
    kubectl.as_user("bob").apply(manifest)
    created = wait_for_action(kubectl, uid_of(kubectl, manifest), "created")
    assert created["spec"]["initiator"]["username"] == "bob"
    verdict = verify_chain(in_cluster.endpoints)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "intact" in verdict.stdout


def test_a_break_glass_group_may_delete_a_record(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    name = some_record(kubectl)["metadata"]["name"]
    as_member = ("--as=admin", "--as-group=system:masters", f"--as-group={BREAK_GLASS}")
    assert "(server dry run)" in kubectl("delete", "auditrecord", name, "--dry-run=server",
                                         *as_member)
    with pytest.raises(KubectlError) as refused:
        kubectl("delete", "auditrecord", name, "--dry-run=server")
    assert f"or by a member of {BREAK_GLASS} (break-glass)" in refused.value.stderr


def test_uninstall_leaves_the_crd_and_the_records(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    count = len(kubectl.json("get", "auditrecords")["items"])
    in_cluster.uninstall()
    assert kubectl("get", "crd", "auditrecords.kubeledger.io", "-o", "name").strip()
    assert len(kubectl.json("get", "auditrecords")["items"]) >= count
    assert not kubectl("get", "deployment", "-n", release.NAMESPACE, "--ignore-not-found",
                       "-o", "name", release.DEPLOYMENT).strip()
    assert not kubectl("get", "validatingadmissionpolicy", "--ignore-not-found", "-o", "name",
                       POLICY).strip()
