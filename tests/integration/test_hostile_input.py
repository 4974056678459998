"""Hostile or odd input on the real stack: records stay bounded and honest, and the
operator keeps recording.

Each test makes the apiserver accept something at the edge of what it accepts (or try
to, where the apiserver itself refuses it) and checks what a user would: the record's
fields, its copy in Elasticsearch, ``kubeledger verify``. The tests run in file order: the
last one restarts the operator over what the others left and then checks that an
ordinary change is still recorded within the usual wait.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from integration.documents import delivered
from integration.kubectl import Kubectl, KubectlError, eventually
from integration.manifests import TEST_IMAGE, deployment, role, unique
from integration.operator import (
    ROLLOUT_STATUS,
    SETTLE_SECONDS,
    Operator,
    apply_recorded,
    records_of,
    run_verify,
    uid_of,
    wait_for_action,
)

KIB = 1024
# The apiserver's limit on all of an object's annotations together, keys included.
ANNOTATIONS_LIMIT = 256 * KIB
# Kubernetes' name limits: a DNS subdomain (most objects) and a DNS label (namespaces).
SUBDOMAIN_MAX, LABEL_MAX = 253, 63
# Each of four annotations: together with the rest, just under the limit.
NOTE_BYTES = 63 * KIB
DIGEST = "sha256:" + "5" * 64
# Who records of the huge objects declare: long enough to be cut (1 KiB).
LONG_DECLARED = "carol-" * 400


def _create(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    """``kubectl create``, not ``apply``: apply would copy everything into an annotation."""
    kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    return uid_of(kubectl, manifest)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _changes_of(kubectl: Kubectl, uid: str) -> list[dict[str, Any]]:
    """An object's records but for its rollouts' progress, which comes in its own time."""
    return [r for r in records_of(kubectl, uid) if r["spec"]["action"] not in ROLLOUT_STATUS]


def _document_of(es: Elasticsearch, kubectl: Kubectl, record: dict[str, Any]) -> Any:
    """The record's copy in Elasticsearch, once delivered (its object may have more)."""
    name = record["metadata"]["name"]
    docs = delivered(es, kubectl, record["spec"]["subject"]["uid"], 1)
    return next(doc for doc in docs if doc["_id"] == name)


def _change_names(kubectl: Kubectl) -> set[str]:
    """Every record's name, but for those that only follow a rollout's progress."""
    return {r["metadata"]["name"] for r in kubectl.json("get", "auditrecords")["items"]
            if r["spec"]["action"] not in ROLLOUT_STATUS and not _rollout_only(r)}


def _rollout_only(record: dict[str, Any]) -> bool:
    """A change of the rollout's state alone (seen after the fact across a restart)."""
    paths = [change["path"] for change in record["spec"].get("changes", [])]
    return bool(paths) and all(path.startswith("rollout.") for path in paths)


def _latest_cut(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The latest record of each object whose latest record holds a cut snapshot."""
    latest: dict[str, dict[str, Any]] = {}
    for record in kubectl.json("get", "auditrecords")["items"]:
        uid = record["spec"]["subject"]["uid"]
        current = latest.get(uid)
        if current is None or (record["spec"]["chain"]["sequence"]
                               > current["spec"]["chain"]["sequence"]):
            latest[uid] = record
    return [r for r in latest.values()
            if any(cut["path"] == "snapshot" for cut in r["spec"].get("truncated", []))]


def _moved_on(kubectl: Kubectl, record: dict[str, Any]) -> bool:
    subject = record["spec"]["subject"]
    now = kubectl.json("-n", subject["namespace"], "get", "deployment", subject["name"])
    return bool(now["metadata"]["resourceVersion"] != subject["resourceVersion"])


def _huge(name: str) -> dict[str, Any]:
    """Annotations just under the 256 KiB total, 60 containers, and no pods to run."""
    manifest = deployment(name, replicas=0)
    notes = {f"example.com/notes-{n}": chr(ord("a") + n) * NOTE_BYTES for n in range(4)}
    annotations = {**notes, "example.com/team": "payments",
                   "kubeledger.io/initiator": LONG_DECLARED}
    assert ANNOTATIONS_LIMIT - 2 * KIB < sum(
        len(key) + len(value) for key, value in annotations.items()) < ANNOTATIONS_LIMIT
    manifest["metadata"]["annotations"] = annotations
    manifest["spec"]["template"]["spec"]["containers"] = [
        {"name": f"c{n}", "image": TEST_IMAGE,
         "env": [{"name": f"SETTING_{k}", "value": f"value-{n}-{k}-" + "v" * 80}
                 for k in range(20)]}
        for n in range(60)]
    return manifest


def test_a_change_too_large_for_a_whole_record_is_recorded_cut_and_says_so(
        kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch) -> None:
    alice = kubectl.as_user("alice")
    manifest = _huge(unique("huge"))
    uid = _create(alice, manifest)

    record = wait_for_action(kubectl, uid, "created")
    spec = record["spec"]
    assert spec["initiator"]["username"] == "alice"
    assert spec["initiator"]["verified"] is True
    cuts = {cut["path"]: cut for cut in spec["truncated"]}
    whole = spec["truncated"][0]
    assert whole["path"] == "snapshot"
    assert whole["bytes"] > 320 * KIB
    # The snapshot kept its structure: the small annotation and every container.
    annotations = spec["snapshot"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "payments"
    containers = spec["snapshot"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == [f"c{n}" for n in range(60)]
    noted = manifest["metadata"]["annotations"]
    cut_notes = [key for key in noted if key.startswith("example.com/notes-")
                 and f'snapshot.metadata.annotations["{key}"]' in cuts]
    assert cut_notes
    for key in cut_notes:
        entry = cuts[f'snapshot.metadata.annotations["{key}"]']
        assert entry == {"path": entry["path"], "bytes": NOTE_BYTES, "sha256": _sha(noted[key])}
        assert annotations[key] == f"[truncated: {NOTE_BYTES} bytes, sha256:{_sha(noted[key])}]"
    # The forged initiator, declared at length: its start kept, cut and said so.
    declared = spec["initiator"]["declared"]
    assert declared.startswith("carol-carol-")
    assert len(declared.encode()) <= KIB
    assert cuts["initiator.declared"]["sha256"] == _sha(LONG_DECLARED)
    assert spec["initiator"]["declaredMismatch"] is True
    assert len(json.dumps(record)) < 1024 * KIB

    document = _document_of(elasticsearch, kubectl, record)
    assert document["_source"]["kubeledger"]["truncated"] == spec["truncated"]
    verified = run_verify(operator)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout


def test_an_unchanged_huge_object_gives_no_record_and_a_change_to_it_one(
        kubectl: Kubectl, operator: Operator) -> None:
    alice = kubectl.as_user("alice")
    manifest = _huge(unique("huge-again"))
    uid = _create(alice, manifest)
    wait_for_action(kubectl, uid, "created")
    # The controller's status writes move the resourceVersion; nothing recordable changes.
    time.sleep(SETTLE_SECONDS)
    alice("-n", "demo", "scale", f"deployment/{manifest['metadata']['name']}", "--replicas=0")
    alice("-n", "demo", "annotate", f"deployment/{manifest['metadata']['name']}",
          "example.com/team=billing", "--overwrite")

    created, changed = eventually(lambda: (found := _changes_of(kubectl, uid))[1:] and found,
                                  what="the annotation's record")
    assert created["spec"]["action"] == "created"
    # Diffed against the real object the operator kept, not against the cut snapshot (the
    # rollout's phase, read from status, may move in the same record).
    assert [(c["path"], c["old"], c["new"]) for c in changed["spec"]["changes"]
            if not c["path"].startswith("rollout.")] == [
        ('metadata.annotations["example.com/team"]', "payments", "billing")]
    time.sleep(SETTLE_SECONDS)
    assert len(_changes_of(kubectl, uid)) == 2


def test_a_cluster_role_with_a_thousand_rules(
        kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch) -> None:
    rules = [{"apiGroups": ["example.com"], "resources": [f"things-{n:04d}"],
              "verbs": ["get", "list", "watch"]} for n in range(1000)]
    name = unique("many-rules")
    manifest = role(name, rules, namespace=None)
    uid = _create(kubectl, manifest)

    created = wait_for_action(kubectl, uid, "created")
    assert created["spec"]["snapshot"]["rules"] == rules  # about 90 KiB: kept whole
    assert "truncated" not in created["spec"]
    rules[500]["verbs"] = ["*"]
    kubectl.apply(role(name, rules, namespace=None))
    changed = wait_for_action(kubectl, uid, "rules-changed")
    assert [(c["path"], c["new"]) for c in changed["spec"]["changes"]] == [
        ("rules[500].verbs", ["*"])]
    assert len(delivered(elasticsearch, kubectl, uid, 2)) == 2


def test_names_at_their_length_limits(kubectl: Kubectl, operator: Operator,
                                      elasticsearch: Elasticsearch) -> None:
    namespace = ("ns-" + unique("x") + "-" + "n" * LABEL_MAX)[:LABEL_MAX]
    name = (unique("long") + "-" + "d" * SUBDOMAIN_MAX)[:SUBDOMAIN_MAX]
    kubectl("create", "namespace", namespace)
    manifest = deployment(name, replicas=0)
    manifest["metadata"]["namespace"] = namespace
    # A label value may not exceed 63 characters: the pods are selected by a short one.
    labels = {"app": "long-name"}
    manifest["spec"]["selector"]["matchLabels"] = labels
    manifest["spec"]["template"]["metadata"]["labels"] = labels
    too_long = json.loads(json.dumps(manifest))
    too_long["metadata"]["name"] = name + "x"
    with pytest.raises(KubectlError, match="must be no more than 253 characters"):
        _create(kubectl, too_long)

    uid = _create(kubectl, manifest)
    record = wait_for_action(kubectl, uid, "created")
    assert record["spec"]["subject"]["name"] == name
    assert record["spec"]["subject"]["namespace"] == namespace
    labels_of_record = record["metadata"]["labels"]
    assert labels_of_record["kubeledger.io/subject-namespace"] == namespace
    assert labels_of_record["kubeledger.io/subject-name"] == name[:LABEL_MAX]
    document = _document_of(elasticsearch, kubectl, record)
    assert document["_source"]["orchestrator"]["resource"]["name"] == name
    assert document["_source"]["orchestrator"]["namespace"] == namespace


def test_unicode_in_annotations_is_kept_and_refused_in_label_values(
        kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch) -> None:
    alice = kubectl.as_user("alice")
    manifest = deployment(unique("unicode"), replicas=0)
    refused = json.loads(json.dumps(manifest))
    refused["metadata"]["labels"] = {"team": "équipe"}
    with pytest.raises(KubectlError, match="a valid label must be"):
        _create(alice, refused)

    text = "Zürich → 東京 👍 \u202eevil\u202c"
    manifest["metadata"]["annotations"] = {"example.com/note": text}
    manifest["metadata"]["labels"] = {"team": "equipe"}
    _, record = apply_recorded(alice, manifest)
    assert record["spec"]["snapshot"]["metadata"]["annotations"]["example.com/note"] == text
    assert record["spec"]["snapshot"]["metadata"]["labels"] == {"team": "equipe"}
    document = _document_of(elasticsearch, kubectl, record)
    changes = {c["path"]: c for c in document["_source"]["kubeledger"]["changes"]}
    assert json.loads(changes['metadata.annotations["example.com/note"]']["new"]) == text


def test_a_commit_annotation_that_is_no_sha_is_not_taken_for_a_commit(
        kubectl: Kubectl, operator: Operator) -> None:
    manifest = deployment(unique("not-a-sha"), replicas=0)
    claim = "release-2026; $(rm -rf /)"
    manifest["metadata"]["annotations"] = {"kubeledger.io/commit": claim}
    _, record = apply_recorded(kubectl.as_user("alice"), manifest)

    assert record["spec"]["commit"] == {"source": "unresolved"}
    # What was declared is still there to read, as declared, in the snapshot.
    assert record["spec"]["snapshot"]["metadata"]["annotations"]["kubeledger.io/commit"] == claim


def test_a_forged_initiator_is_declared_beside_the_verified_one(
        kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch) -> None:
    manifest = deployment(unique("forged"), replicas=0)
    manifest["metadata"]["annotations"] = {"kubeledger.io/initiator": "admin"}
    _, record = apply_recorded(kubectl.as_user("bob"), manifest)

    initiator = record["spec"]["initiator"]
    assert (initiator["username"], initiator["verified"]) == ("bob", True)
    assert (initiator["declared"], initiator["declaredMismatch"]) == ("admin", True)
    document = _document_of(elasticsearch, kubectl, record)
    assert document["_source"]["user"]["name"] == "bob"
    assert document["_source"]["kubeledger"]["initiator"]["declared"] == "admin"


def test_an_image_with_a_digest_and_no_tag(kubectl: Kubectl, operator: Operator) -> None:
    alice = kubectl.as_user("alice")
    repository = TEST_IMAGE.rsplit(":", 1)[0]
    name = unique("digest")
    uid, record = apply_recorded(alice, deployment(name, image=f"{repository}@{DIGEST}",
                                                   replicas=0))
    containers = record["spec"]["snapshot"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == f"{repository}@{DIGEST}"
    assert record["spec"]["commit"] == {"source": "unresolved"}  # a digest names no commit

    other = "sha256:" + "6" * 64
    alice("-n", "demo", "set", "image", f"deployment/{name}", f"app={repository}@{other}")
    changed = wait_for_action(kubectl, uid, "image-changed")
    assert [(c["old"], c["new"]) for c in changed["spec"]["changes"]
            if not c["path"].startswith("rollout.")] == [
        (f"{repository}@{DIGEST}", f"{repository}@{other}")]


def test_after_all_that_a_restart_adds_nothing_and_recording_goes_on(
        kubectl: Kubectl, operator: Operator) -> None:
    # Move the huge objects on past their cut records with a write no record describes
    # (an annotation the projection drops), so that the listing after the restart has a
    # new resourceVersion: it must be recognised unchanged by content, not by its name.
    cut = _latest_cut(kubectl)
    assert cut
    for latest in cut:
        kubectl.as_user("alice")(
            "-n", "demo", "annotate", f"deployment/{latest['spec']['subject']['name']}",
            "deprecated.daemonset.template.generation=7")
    time.sleep(SETTLE_SECONDS)
    before = _change_names(kubectl)
    assert all(_moved_on(kubectl, latest) for latest in cut)
    operator.stop()
    operator.start()
    operator.wait_listed()
    time.sleep(SETTLE_SECONDS)
    # Nothing spurious, from the cut snapshots or anything else.
    assert _change_names(kubectl) == before

    started = time.monotonic()
    _, record = apply_recorded(kubectl.as_user("alice"), deployment(unique("ordinary")))
    assert record["spec"]["initiator"]["username"] == "alice"
    # Within the usual wait for the audit event, not after a backlog.
    assert time.monotonic() - started < 3 * SETTLE_SECONDS
    verified = run_verify(operator)
    assert verified.returncode == 0, verified.stdout + verified.stderr
