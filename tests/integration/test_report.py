"""``kubeledger report`` on the real stack: a planted delivery history gives its figures.

One Deployment in a namespace of its own goes through five deployments (its creation, an
image change, a configuration change, a fix and one more configuration change), one
rollback of a rollout that had completed, and one rollout that really fails (an image no
registry serves, a short progress deadline), fixed forward. So: 5 deployments, 1
rollback, 1 failed rollout, 2 failed changes, a change failure rate of 40%, and one time
to restore, from the failure to the fix's completion. The report says so from the
cluster's records and from Elasticsearch's documents, and the operator's /metrics counts
the same.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.kubectl import Kubectl, eventually
from integration.manifests import MISSING_IMAGE, TEST_IMAGE, TEST_IMAGE_2, deployment, unique
from integration.operator import Operator, records_of, uid_of
from integration.test_cli import ledger
from stack.cluster import Endpoints

# Long enough for a rollout that works here (about a second), short for one that cannot.
PROGRESS_DEADLINE_SECONDS = 10
EXPECTED = {"deployments": 5, "rollbacks": 1, "failedRollouts": 1, "failedChanges": 2,
            "changeFailureRate": 0.4, "restored": 1}


def _count(admin: Kubectl, uid: str, action: str, count: int, timeout: float = 90) -> None:
    """Waits until ``uid`` has ``count`` records with ``action``."""
    eventually(lambda: sum(record["spec"]["action"] == action
                           for record in records_of(admin, uid)) >= count or None,
               timeout=timeout, what=f"{count} {action!r} records of {uid}")


@pytest.fixture(scope="module")
def planted(kubectl: Kubectl, operator: Operator) -> dict[str, Any]:
    """The history in a fresh namespace; its name, the uid and its records."""
    admin = kubectl.as_user("admin")
    namespace = unique("delivery")
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    manifest = deployment("web", image=TEST_IMAGE,
                          progress_deadline_seconds=PROGRESS_DEADLINE_SECONDS)
    manifest["metadata"]["namespace"] = namespace
    ns, target = ("-n", namespace), "deployment/web"
    admin.apply(manifest)
    uid = uid_of(admin, manifest)
    completed = 0

    def then_completes() -> None:
        nonlocal completed
        completed += 1
        _count(admin, uid, "rollout-completed", completed)

    then_completes()                                                 # deployment 1
    admin(*ns, "set", "image", target, f"app={TEST_IMAGE_2}")
    then_completes()                                                 # deployment 2
    admin(*ns, "set", "env", target, "STEP=config")
    then_completes()                                                 # deployment 3
    # Back to the image change's template: a rollback of a rollout that had completed.
    admin(*ns, "rollout", "undo", target)
    _count(admin, uid, "rolled-back", 1)
    then_completes()                                                 # no deployment
    admin(*ns, "set", "image", target, f"app={MISSING_IMAGE}")
    _count(admin, uid, "rollout-failed", 1, timeout=PROGRESS_DEADLINE_SECONDS + 90)
    # Fixed forward, image and configuration in one write: a template never seen before
    # (the first image alone would be revision 1 again, a rollback).
    admin(*ns, "patch", target, "--type=strategic", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": TEST_IMAGE, "env": [{"name": "STEP", "value": "fix"}]},
        ]}}}}))
    then_completes()                                                 # deployment 4
    admin(*ns, "set", "env", target, "STEP=last")
    then_completes()                                                 # deployment 5
    return {"namespace": namespace, "uid": uid, "records": records_of(admin, uid)}


def _restore_seconds(records: list[dict[str, Any]]) -> float:
    """From the failed rollout's record to the next completed rollout's."""
    actions = [record["spec"]["action"] for record in records]
    failed = actions.index("rollout-failed")
    restored = actions.index("rollout-completed", failed)
    at = [datetime.fromisoformat(records[index]["spec"]["observedAt"])
          for index in (failed, restored)]
    return (at[1] - at[0]).total_seconds()


def _reported(stack: Endpoints, namespace: str, *extra: str,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    done = ledger(stack, "report", "-n", namespace, "-o", "json", *extra, env=env)
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    return printed


def test_the_planted_history_is_reported_from_the_cluster(
        stack: Endpoints, planted: dict[str, Any]) -> None:
    namespace = planted["namespace"]

    found = _reported(stack, namespace)

    total = found["total"]
    assert {key: total[key] for key in EXPECTED} == EXPECTED
    assert total["medianTimeToRestoreSeconds"] == _restore_seconds(planted["records"])
    assert found["namespaces"] == {namespace: total}
    assert found["workloads"] == [{"namespace": namespace, "kind": "Deployment",
                                   "name": "web", **total}]
    assert found["window"]["namespace"] == namespace
    assert found["window"]["source"] == "cluster"
    table = ledger(stack, "report", "-n", namespace)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].split()[:7] == [
        "TOTAL", "*", "5", "1", "1", "2", "40%"]


def test_elasticsearch_gives_the_same_figures(
        stack: Endpoints, elasticsearch: Any, planted: dict[str, Any]) -> None:
    namespace = planted["namespace"]
    env = {"ELASTICSEARCH_URL": stack.elasticsearch_url,
           "ELASTICSEARCH_USERNAME": stack.elasticsearch_username,
           "ELASTICSEARCH_PASSWORD": stack.elasticsearch_password,
           "ELASTICSEARCH_CA_CERTS": str(stack.elasticsearch_ca)}
    names = {record["metadata"]["name"] for record in planted["records"]}

    def shipped() -> bool | None:
        elasticsearch.indices.refresh(index="kubeledger-*")
        found = elasticsearch.search(
            index="kubeledger-*", size=1000,
            query={"term": {"kubeledger.subject.uid": planted["uid"]}})
        return {hit["_id"] for hit in found["hits"]["hits"]} >= names or None

    eventually(shipped, timeout=60, what="every record's document")

    found = _reported(stack, namespace, "--source", "elasticsearch", "--cluster-name",
                      "local", env=env)

    assert found["total"] == _reported(stack, namespace)["total"]
    assert {key: found["total"][key] for key in EXPECTED} == EXPECTED
    assert found["window"]["source"] == "elasticsearch"


def test_the_metrics_count_the_same(operator: Operator, planted: dict[str, Any]) -> None:
    namespace = planted["namespace"]
    samples = {(sample.name, sample.labels.get("namespace")): sample.value
               for family in text_string_to_metric_families(operator.metrics())
               for sample in family.samples}

    def of(name: str) -> float:
        return samples[(name, namespace)]

    assert (of("kubeledger_deployments_total"), of("kubeledger_rollbacks_total"),
            of("kubeledger_failed_rollouts_total"),
            of("kubeledger_failed_changes_total")) == (5, 1, 1, 2)
    assert of("kubeledger_time_to_restore_seconds_count") == 1
    assert of("kubeledger_time_to_restore_seconds_sum") == pytest.approx(
        _restore_seconds(planted["records"]), abs=1e-3)
