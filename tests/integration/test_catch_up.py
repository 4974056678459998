"""Restarts lose nothing and double nothing: changes made while the operator was down are
recorded once, each from its audit event where the apiserver sends it again, else after
the fact with the diff; a plain restart records nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from integration.kubectl import Kubectl, eventually
from integration.manifests import TEST_IMAGE, TEST_IMAGE_2, deployment, unique
from integration.operator import (
    Operator,
    apply_recorded,
    change_actions_of,
    records_of,
    run_verify,
    settled,
    uid_of,
    wait_for_action,
)


def _total(kubectl: Kubectl) -> int:
    return len(kubectl.json("get", "auditrecords")["items"])


def test_restart_without_changes_adds_nothing(kubectl: Kubectl, operator: Operator) -> None:
    manifest = deployment(unique("steady"))
    apply_recorded(kubectl, manifest)
    settled(kubectl, manifest)
    before = _total(kubectl)
    operator.stop()
    operator.start()
    operator.wait_listed()
    time.sleep(3)
    assert _total(kubectl) == before


# A change the operator could not see as it happened, but whose audit event it was sent.
REPLAYED = "audit-log"
IMAGE = "spec.template.spec.containers[name=app].image"
NOTE = 'metadata.annotations["example.com/note"]'


def _rollout_only(record: dict[str, Any]) -> bool:
    """A record of the rollout's progress alone, which the controller makes in its own time."""
    changes = record["spec"]["changes"]
    return bool(changes) and all(change["path"].startswith("rollout.") for change in changes)


def _changes(record: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {change["path"]: (change.get("old"), change.get("new"))
            for change in record["spec"]["changes"] if not change["path"].startswith("rollout.")}


def _made_by(record: dict[str, Any], user: str) -> bool:
    initiator = record["spec"]["initiator"]
    return (initiator["username"], initiator["verified"], initiator["source"]) == (
        user, True, "audit")


def test_changes_while_down_are_recorded_once_from_the_audit_stream(
    kubectl: Kubectl, demo: Kubectl, operator: Operator,
) -> None:
    """Issue 11's downtime: bob changes one Deployment three times while the operator is
    stopped; once it is back, the apiserver's retried audit batches give three records,
    each bob's, verified, each with its own diff. A deletion and a creation of that time
    are caught up too, and a second restart adds nothing."""
    changed, removed, born = unique("changed"), unique("removed"), unique("born")
    changed_uid, _ = apply_recorded(demo, deployment(changed, image=TEST_IMAGE))
    removed_uid, _ = apply_recorded(demo, deployment(removed, image=TEST_IMAGE))
    for name in (changed, removed):
        settled(demo, deployment(name))

    operator.stop()
    bob = kubectl.as_user("bob")
    began = time.monotonic()
    bob("-n", "demo", "set", "image", f"deployment/{changed}", f"app={TEST_IMAGE_2}")
    bob("-n", "demo", "scale", f"deployment/{changed}", "--replicas=2")
    bob("-n", "demo", "annotate", f"deployment/{changed}", "example.com/note=after-hours")
    assert time.monotonic() - began < 20
    demo("-n", "demo", "delete", "deployment", removed)
    newborn = deployment(born)
    demo.apply(newborn)
    born_uid = uid_of(demo, newborn)
    operator.start()

    def bobs_three() -> list[dict[str, Any]] | None:
        found = [record for record in records_of(demo, changed_uid)[1:]
                 if not _rollout_only(record)]
        return found if len(found) >= 3 else None

    # The apiserver sends the failed batches again after its backoff (10 s, then 15 s).
    image, scale, note = eventually(bobs_three, timeout=60, what="bob's three records")
    assert [record["spec"]["action"] for record in (image, scale, note)] == [
        "image-changed", "scaled", "config-changed"]
    for record in (image, scale, note):
        assert _made_by(record, "bob"), record["spec"]["initiator"]
        assert record["spec"]["observation"] == REPLAYED
    assert _changes(image) == {IMAGE: (TEST_IMAGE, TEST_IMAGE_2)}
    assert _changes(scale) == {"spec.replicas": (1, 2)}
    assert _changes(note) == {NOTE: (None, "after-hours")}
    new = wait_for_action(demo, born_uid, "created")
    assert new["spec"]["observation"] == REPLAYED and _made_by(new, "alice")
    gone = wait_for_action(demo, removed_uid, "deleted-while-unobserved")
    assert gone["spec"]["observation"] == "after-the-fact"

    # Once the rollouts started meanwhile are over, a second restart finds nothing new.
    for name in (changed, born):
        settled(demo, deployment(name))
    total = _total(kubectl)
    operator.stop()
    operator.start()
    operator.wait_listed()
    time.sleep(3)
    assert _total(kubectl) == total
    assert [record["spec"]["action"] for record in records_of(demo, changed_uid)
            if not _rollout_only(record)] == [
        "created", "image-changed", "scaled", "config-changed"]
    assert change_actions_of(demo, removed_uid) == ["created", "deleted-while-unobserved"]
    # Its rollout's progress is no audited write: the listing records it after the fact.
    assert [record["spec"]["action"] for record in records_of(demo, born_uid)
            if not _rollout_only(record)] == ["created"]
    verified = run_verify(operator)
    assert verified.returncode == 0, verified.stdout + verified.stderr


INDEX = "kubeledger.io/index"


def test_a_restart_reads_each_records_index_and_verify_holds_it_to_the_spec(
    kubectl: Kubectl, demo: Kubectl, operator: Operator,
) -> None:
    """Start-up reads the records' index (their metadata), not their snapshots; records
    written before the index existed are read whole. Either way a change made while the
    operator was down is diffed against the snapshot in the object's last record."""
    indexed, legacy = unique("indexed"), unique("legacy")
    indexed_uid, created = apply_recorded(demo, deployment(indexed))
    legacy_uid, _ = apply_recorded(demo, deployment(legacy))
    for name in (indexed, legacy):
        settled(demo, deployment(name))
    index = json.loads(created["metadata"]["annotations"][INDEX])
    assert (index["sequence"], index["subject"]["uid"], index["action"]) == (
        created["spec"]["chain"]["sequence"], indexed_uid, "created")
    for record in records_of(kubectl, legacy_uid):
        kubectl("annotate", "auditrecord", record["metadata"]["name"], f"{INDEX}-")

    operator.stop()
    for name in (indexed, legacy):
        # A patch, not ``kubectl scale``: its audit event carries the whole object.
        kubectl.as_user("bob")("-n", "demo", "patch", f"deployment/{name}", "--type=merge",
                               "--patch", '{"spec": {"replicas": 2}}')
    operator.start()

    for uid in (indexed_uid, legacy_uid):
        scaled = wait_for_action(demo, uid, "scaled", timeout=60)
        assert _changes(scaled) == {"spec.replicas": (1, 2)}
        assert _made_by(scaled, "bob")
    assert run_verify(operator).returncode == 0

    # An index that does not stand for its record's spec is a finding of verify.
    forged = {**index, "snapshot": "0" * 64}
    name = created["metadata"]["name"]
    kubectl("annotate", "--overwrite", "auditrecord", name,
            f"{INDEX}={json.dumps(forged, separators=(',', ':'), sort_keys=True)}")
    try:
        found = run_verify(operator)
        assert found.returncode == 1, found.stdout + found.stderr
        assert (f"BROKEN  #{index['sequence']} {name}: its index ({INDEX}) does not match "
                "its spec") in found.stdout
    finally:
        kubectl("annotate", "--overwrite", "auditrecord", name,
                f"{INDEX}={created['metadata']['annotations'][INDEX]}")
    assert run_verify(operator).returncode == 0


def test_records_read_well_in_kubectl(kubectl: Kubectl, demo: Kubectl) -> None:
    name = unique("table")
    apply_recorded(demo, deployment(name))
    table = kubectl("get", "auditrecords", "-l", "kubeledger.io/subject-namespace=demo")
    header = table.splitlines()[0].split()
    assert header[:8] == ["NAME", "TIME", "ACTION", "KIND", "NAMESPACE", "NAME", "INITIATOR",
                          "COMMIT"]
    rows = table.splitlines()[1:]
    assert rows and all(" demo " in row for row in rows)
    assert any(name in row and "created" in row for row in rows)
    by_category = eventually(lambda: kubectl("get", "audit", "-o", "name"),
                             what="records listed by category")
    assert "auditrecord.kubeledger.io/" in by_category


def test_verify_detects_a_removed_record(kubectl: Kubectl, demo: Kubectl,
                                         operator: Operator) -> None:
    intact = run_verify(operator)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact" in intact.stdout
    name = unique("evidence")
    uid, _ = apply_recorded(demo, deployment(name))
    demo("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    wait_for_action(demo, uid, "image-changed")
    victim = records_of(demo, uid)[0]
    kubectl("delete", "auditrecord", victim["metadata"]["name"])
    try:
        broken = run_verify(operator)
        assert broken.returncode == 1
        assert f"record {victim['spec']['chain']['sequence']} is missing" in broken.stdout
    finally:
        restored = {key: victim[key] for key in ("apiVersion", "kind", "spec")}
        restored["metadata"] = {"name": victim["metadata"]["name"],
                                "labels": victim["metadata"]["labels"]}
        kubectl.apply(restored)
    assert run_verify(operator).returncode == 0


def test_operator_without_rights_stops_with_what_to_fix(operator: Operator) -> None:
    """alice may not use the operator's Lease (nor list AuditRecords): the operator must say
    so and stop, not spin."""
    config = json.loads(operator.endpoints.kubeconfig.read_text())
    config["current-context"] = "alice"
    as_alice = operator.endpoints.directory / "kubeconfig-alice-operator"
    as_alice.write_text(json.dumps(config))
    env = {"PATH": "/usr/bin:/bin", **operator.endpoints.operator_env(),
           "KUBECONFIG": str(as_alice), "KUBELEDGER_WEBHOOK_PORT": "", "KUBELEDGER_AUDIT_PORT": ""}
    refused = subprocess.run([str(Path(sys.executable).with_name("kubeledger")), "run"],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "kubeledger: cannot start: the operator may not use its Lease kubeledger/kubeledger "
        "(403 Forbidden): bind its service account to the chart's Role (rbac.create=true)")
