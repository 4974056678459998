"""Every kind of Deployment change becomes exactly one AuditRecord, classified and diffed.

Runs the real operator against the real stack; changes are made with kubectl, as alice,
the way a person would make them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from integration.kubectl import Kubectl, eventually
from integration.manifests import (
    MISSING_IMAGE,
    TEST_IMAGE,
    TEST_IMAGE_2,
    deployment,
    open_crd,
    unique,
)
from integration.operator import (
    Operator,
    actions_of,
    apply_recorded,
    change_actions_of,
    settled,
    uid_of,
    wait_for_action,
)


def _create(demo: Kubectl, manifest: dict[str, Any]) -> str:
    uid, _ = apply_recorded(demo, manifest)
    return uid


def _changes(record: dict[str, object]) -> dict[str, tuple[object, object]]:
    spec = record["spec"]
    assert isinstance(spec, dict)
    return {c["path"]: (c.get("old"), c.get("new")) for c in spec.get("changes", [])}


def test_creation_is_recorded_live_with_labels_and_diff(demo: Kubectl) -> None:
    name = unique("create")
    uid = _create(demo, deployment(name, image=TEST_IMAGE))
    record = wait_for_action(demo, uid, "created")
    spec, labels = record["spec"], record["metadata"]["labels"]
    assert spec["action"] == "created"
    assert spec["observation"] == "live"
    assert spec["subject"] | {"resourceVersion": "-"} == {
        "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "demo", "name": name,
        "uid": uid, "resourceVersion": "-"}
    assert labels == {
        "kubeledger.io/subject-kind": "Deployment", "kubeledger.io/subject-namespace": "demo",
        "kubeledger.io/subject-name": name, "kubeledger.io/subject-uid": uid,
        "kubeledger.io/action": "created"}
    # A creation lists what was set; a new list (the containers) comes whole.
    _, containers = _changes(record)["spec.template.spec.containers"]
    assert containers == [{"name": "app", "image": TEST_IMAGE,
                           "imagePullPolicy": "IfNotPresent",
                           "resources": {}, "terminationMessagePath": "/dev/termination-log",
                           "terminationMessagePolicy": "File"}]
    assert spec["initiator"]["username"] == "alice"
    assert spec["initiator"]["verified"] is True


def test_image_change_scale_restart_undo_pause_resume(demo: Kubectl) -> None:
    name = unique("lifecycle")
    uid = _create(demo, deployment(name, image=TEST_IMAGE))
    ns = ("-n", "demo")

    demo(*ns, "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    changed = wait_for_action(demo, uid, "image-changed")
    assert _changes(changed)["spec.template.spec.containers[name=app].image"] == (
        TEST_IMAGE, TEST_IMAGE_2)
    # Wait for the controller's new ReplicaSet, so that `undo` has a revision to go back to.
    eventually(lambda: len(demo.json(*ns, "get", "replicasets", "-l", f"app={name}")["items"])
               >= 2, timeout=60, what="the second ReplicaSet")

    demo(*ns, "scale", f"deployment/{name}", "--replicas=3")
    scaled = wait_for_action(demo, uid, "scaled")
    assert _changes(scaled)["spec.replicas"] == (1, 3)

    demo(*ns, "rollout", "restart", f"deployment/{name}")
    restarted = wait_for_action(demo, uid, "rollout-restarted")
    assert any("restartedAt" in path for path in _changes(restarted))
    eventually(lambda: len(demo.json(*ns, "get", "replicasets", "-l", f"app={name}")["items"])
               >= 3, timeout=60, what="the restart's ReplicaSet")

    demo(*ns, "rollout", "undo", f"deployment/{name}")
    rolled_back = wait_for_action(demo, uid, "rolled-back")
    assert rolled_back["spec"]["severity"] == "warning"

    demo(*ns, "rollout", "pause", f"deployment/{name}")
    assert _changes(wait_for_action(demo, uid, "paused"))["spec.paused"] == (None, True)
    demo(*ns, "rollout", "resume", f"deployment/{name}")
    wait_for_action(demo, uid, "resumed")

    assert change_actions_of(demo, uid) == ["created", "image-changed", "scaled",
                                            "rollout-restarted", "rolled-back", "paused",
                                            "resumed"]


def test_env_change_is_config_change_with_secret_redacted(
    demo: Kubectl, kubectl: Kubectl,
) -> None:
    name = unique("secret")
    uid = _create(demo, deployment(name, env={"LOG_LEVEL": "info"}))
    demo("-n", "demo", "set", "env", f"deployment/{name}",
         "DB_PASSWORD=hunter2-very-secret", "LOG_LEVEL=debug")
    record = wait_for_action(demo, uid, "config-changed")
    changes = _changes(record)
    assert changes["spec.template.spec.containers[name=app].env[name=LOG_LEVEL].value"] == (
        "info", "debug")
    added = changes["spec.template.spec.containers[name=app].env[name=DB_PASSWORD]"]
    assert str(added[1]).count("redacted:sha256:") == 1
    everything = kubectl("get", "auditrecords", "-o", "json")
    assert "hunter2-very-secret" not in everything
    # last-applied-configuration (kubectl apply) would carry the value: never copied.
    assert "last-applied-configuration" not in json.dumps(record)


def test_completed_and_failed_rollouts_come_from_conditions(demo: Kubectl) -> None:
    completes = unique("complete")
    uid_complete = _create(demo, deployment(completes, replicas=0))
    completed = wait_for_action(demo, uid_complete, "rollout-completed")
    assert completed["spec"]["severity"] == "info"

    # No registry serves the image, so the pod never becomes ready: the deadline passes.
    fails = unique("fail")
    uid_fail = _create(demo, deployment(fails, image=MISSING_IMAGE, replicas=1,
                                        progress_deadline_seconds=2))
    failed = wait_for_action(demo, uid_fail, "rollout-failed", timeout=60)
    assert failed["spec"]["severity"] == "warning"
    assert _changes(failed)["rollout.phase"] == ("progressing", "failed")


def test_status_churn_and_bookkeeping_write_no_record(demo: Kubectl) -> None:
    name = unique("quiet")
    manifest = deployment(name, replicas=2)
    uid = _create(demo, manifest)
    # Until both pods are ready the controller writes status and the revision annotation
    # many times; only the completed rollout is worth a record.
    settled(demo, manifest)
    assert actions_of(demo, uid) == ["created", "rollout-completed"]


def test_an_annotation_change_is_one_record_and_no_rollout(demo: Kubectl) -> None:
    name = unique("noted")
    manifest = deployment(name, replicas=1)
    uid = _create(demo, manifest)
    settled(demo, manifest)
    # The apiserver moves the generation on an annotation change, and the controller
    # catches up a moment later: no rollout happened, so neither record says one did.
    demo("-n", "demo", "annotate", f"deployment/{name}", "example.com/owner=payments")
    noted = wait_for_action(demo, uid, "config-changed")
    settled(demo, manifest)
    assert list(_changes(noted)) == ['metadata.annotations["example.com/owner"]']
    assert actions_of(demo, uid) == ["created", "rollout-completed", "config-changed"]


def test_deletion_is_recorded_once(demo: Kubectl) -> None:
    name = unique("gone")
    uid = _create(demo, deployment(name))
    demo("-n", "demo", "delete", "deployment", name)
    deleted = wait_for_action(demo, uid, "deleted")
    assert deleted["metadata"]["name"].endswith("-deleted")
    assert "snapshot" not in deleted["spec"]
    time.sleep(1)
    assert change_actions_of(demo, uid) == ["created", "deleted"]


def test_watched_objects_carry_nothing_of_ours(demo: Kubectl) -> None:
    name = unique("untouched")
    _create(demo, deployment(name))
    metadata = demo.json("-n", "demo", "get", "deployment", name)["metadata"]
    assert not metadata.get("finalizers")
    ours = [key for key in metadata.get("annotations", {})
            if "kopf" in key or "kubeledger" in key]
    assert ours == []
    managers = {entry["manager"] for entry in metadata.get("managedFields", [])}
    assert not any("kopf" in manager or "kubeledger" in manager for manager in managers)


def test_argo_rollouts_are_watched_once_their_crd_exists(kubectl: Kubectl,
                                                         demo: Kubectl) -> None:
    kubectl.install_crd(open_crd("argoproj.io", "Rollout", "rollouts"))
    name = unique("canary")
    rollout = deployment(name)
    rollout.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
    kubectl.apply(rollout)
    uid = uid_of(kubectl, rollout)
    # kopf starts watching a resource when its CRD appears.
    created = wait_for_action(kubectl, uid, "created", timeout=60)
    assert created["spec"]["subject"]["apiVersion"] == "argoproj.io/v1alpha1"
    kubectl("-n", "demo", "patch", "rollout", name, "--type=json", "-p",
            '[{"op": "replace", "path": "/spec/template/spec/containers/0/image",'
            ' "value": "nginx:1.27"}]')
    wait_for_action(kubectl, uid, "image-changed")


def test_statefulsets_are_a_configuration_switch_away(kubectl: Kubectl,
                                                      operator: Operator) -> None:
    operator.stop()
    operator.start(KUBELEDGER_WATCH_EXTRA_KINDS="statefulsets")
    try:
        stateful = deployment(unique("db"), image="postgres:16")
        stateful.update(kind="StatefulSet")
        stateful["spec"]["serviceName"] = stateful["metadata"]["name"]
        uid, created = apply_recorded(kubectl, stateful)
        assert created["spec"]["subject"]["kind"] == "StatefulSet"
        kubectl("-n", "demo", "set", "image", f"statefulset/{stateful['metadata']['name']}",
                "app=postgres:17")
        wait_for_action(kubectl, uid, "image-changed")
    finally:
        operator.stop()
        operator.start()
