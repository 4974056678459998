"""Every record reaches Elasticsearch exactly once, as an ECS document, through outages,
operator crashes and bad credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from integration.documents import INDICES, delivered, documents
from integration.kubectl import Kubectl, eventually
from integration.manifests import TEST_IMAGE, TEST_IMAGE_2, binding, deployment, unique
from integration.operator import (
    Operator,
    apply_recorded,
    records_of,
    run_verify,
    verify_chain,
    wait_for_action,
)
from stack import pki
from stack.cluster import Endpoints


def test_records_become_ecsdocuments(demo: Kubectl, elasticsearch: Elasticsearch) -> None:
    name = unique("ecs")
    uid, _ = apply_recorded(demo, deployment(name, image=TEST_IMAGE))
    demo("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    wait_for_action(demo, uid, "image-changed")
    docs = delivered(elasticsearch, demo, uid, 2)
    changed = next(d for d in docs if d["_source"]["event"]["action"] == "image-changed")
    source = changed["_source"]
    assert changed["_index"].startswith("kubeledger-")
    assert source["ecs"]["version"].startswith("8.")
    assert source["event"]["kind"] == "event"
    assert source["event"]["category"] == ["configuration"]
    assert source["orchestrator"]["type"] == "kubernetes"
    assert source["orchestrator"]["cluster"]["name"] == "local"
    assert source["orchestrator"]["namespace"] == "demo"
    assert source["orchestrator"]["resource"] == {
        "type": "deployment", "name": name, "id": uid}
    # The snapshot is in the content the hash covers, and nowhere else.
    assert "snapshot" in source["kubeledger"]["chain"].pop("content")
    assert "snapshot" not in str(source)
    paths = source["kubeledger"]["changed_paths"]
    assert "spec.template.spec.containers[name=app].image" in paths
    # The query a security team would type in Kibana.
    hits = elasticsearch.search(index=INDICES, q=(
        f'event.action:image-changed AND orchestrator.resource.name:"{name}"'))["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == [changed["_id"]]


def test_critical_rbac_is_searchable_by_severity(kubectl: Kubectl, operator: Operator,
                                                 elasticsearch: Elasticsearch) -> None:
    name = unique("root")
    kubectl.apply(binding(name, "ClusterRole", "cluster-admin",
                          [{"kind": "ServiceAccount", "name": "ci", "namespace": "demo"}],
                          namespace=None))
    uid = kubectl.json("get", "clusterrolebinding", name)["metadata"]["uid"]
    wait_for_action(kubectl, uid, "created")
    delivered(elasticsearch, kubectl, uid, 1)
    hits = elasticsearch.search(index=INDICES, q="kubeledger.severity:critical",
                                size=1000)["hits"]["hits"]
    assert name in {hit["_source"]["orchestrator"]["resource"]["name"] for hit in hits}
    assert all(hit["_source"]["kubeledger"]["severity"] == "critical" for hit in hits)
    kubectl("delete", "clusterrolebinding", name)


def test_a_wrong_ca_or_wrong_credentials_say_so_keep_records_and_recover(
    demo: Kubectl, stack: Endpoints, operator: Operator, elasticsearch: Elasticsearch,
) -> None:
    """Each misconfiguration is one clear line in the operator's log, no traceback; the
    records wait in the cluster and are delivered once the operator runs with the right
    settings. Both in one test: each needs the operator restarted with other settings."""
    stray = pki.stray_ca(stack.pki)
    user = stack.elasticsearch_writer_username
    misconfigured = {
        "wrong-ca": ({"ELASTICSEARCH_CA_CERTS": str(stray)},
                     f"Elasticsearch at {stack.elasticsearch_url} presented a certificate "
                     f"that the CA bundle {stray} (ELASTICSEARCH_CA_CERTS) does not verify "
                     "(unable to get local issuer certificate); set ELASTICSEARCH_CA_CERTS "
                     "to the CA that signed it"),
        "locked": ({"ELASTICSEARCH_PASSWORD": "not-the-password"},
                   f"rejected the credentials of user '{user}' (401)"),
    }
    uids = []
    try:
        for prefix, (settings, complaint) in misconfigured.items():
            operator.stop()
            log_start = operator.log.stat().st_size
            operator.start(**settings)
            uid, _ = apply_recorded(demo, deployment(unique(prefix)))
            uids.append(uid)

            def said(complaint: str = complaint, log_start: int = log_start) -> str | None:
                text = operator.log.read_text()[log_start:]
                return text if complaint in text else None

            log = eventually(said, what=f"{complaint!r} in the operator's log")
            assert log.count(complaint) == 1
            assert "Traceback" not in log
            assert "not-the-password" not in log
            assert documents(elasticsearch, uid) == []
            assert records_of(demo, uid)  # kept in the cluster meanwhile
    finally:
        operator.stop()
        operator.start()
    for uid in uids:
        delivered(elasticsearch, demo, uid, 1)


def test_search_by_user_and_action(kubectl: Kubectl, operator: Operator,
                                   elasticsearch: Elasticsearch) -> None:
    alice, bob = kubectl.as_user("alice"), kubectl.as_user("bob")
    name = unique("whodunit")
    uid, _ = apply_recorded(alice, deployment(name))
    bob("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    wait_for_action(kubectl, uid, "image-changed")
    delivered(elasticsearch, kubectl, uid, 2)
    query = f'user.name:bob AND event.action:image-changed AND orchestrator.resource.id:"{uid}"'
    (hit,) = elasticsearch.search(index=INDICES, q=query)["hits"]["hits"]
    source = hit["_source"]
    assert source["user"]["name"] == "bob"
    assert source["kubeledger"]["initiator"]["verified"] is True
    assert "bob" in source["related"]["user"]
    assert elasticsearch.search(index=INDICES, q=query.replace("bob", "alice"))[
        "hits"]["total"]["value"] == 0


def test_delivered_records_leave_the_cluster_after_retention(
    kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch,
) -> None:
    operator.stop()
    # A retention of about 3 seconds; the pruning runs as often.
    operator.start(KUBELEDGER_RETENTION_DAYS="0.00004")
    try:
        name = unique("aged")
        uid, _ = apply_recorded(kubectl, deployment(name, replicas=0))
        wait_for_action(kubectl, uid, "rollout-completed")  # replicas 0 completes at once
        earlier = {r["metadata"]["name"] for r in records_of(kubectl, uid)}
        # A label starts no rollout: its record stays the latest.
        kubectl("-n", "demo", "label", f"deployment/{name}", "example.com/aged=yes")
        latest = wait_for_action(kubectl, uid, "config-changed")["metadata"]["name"]

        def pruned() -> list[dict[str, Any]] | None:
            left = records_of(kubectl, uid)
            return left if [r["metadata"]["name"] for r in left] == [latest] else None

        # Superseded records go (only once delivered); the latest stays as the object's
        # baseline; Elasticsearch keeps them all.
        eventually(pruned, timeout=60, what="the superseded record removed")
        eventually(lambda: {d["_id"] for d in documents(elasticsearch, uid)} == {*earlier, latest},
                   what="every record in Elasticsearch")
        # The chain in the cluster has holes now, which verify knows to expect.
        verdict = run_verify(operator)
        assert verdict.returncode == 0, verdict.stdout
        assert "removed after delivery (retention)" in verdict.stdout
    finally:
        operator.stop()
        operator.start()


def test_the_operators_user_creates_documents_and_can_change_none(
    stack: Endpoints, demo: Kubectl, elasticsearch: Elasticsearch,
) -> None:
    uid, _ = apply_recorded(demo, deployment(unique("write-once")))
    (document,) = [doc for doc in delivered(elasticsearch, demo, uid, 1)
                   if doc["_source"]["event"]["action"] == "created"]
    index, name = document["_index"], document["_id"]
    writer = Elasticsearch(stack.elasticsearch_url, basic_auth=(
        stack.elasticsearch_writer_username, stack.elasticsearch_writer_password),
        ca_certs=str(stack.elasticsearch_ca))
    tampering: dict[str, Callable[[], object]] = {
        "delete it": lambda: writer.delete(index=index, id=name),
        "overwrite it": lambda: writer.index(index=index, id=name, document={"forged": 1}),
        "update it": lambda: writer.update(index=index, id=name, doc={"forged": 1}),
        "delete the index": lambda: writer.indices.delete(index=index),
        "change the index's settings": lambda: writer.indices.put_settings(
            index=index, settings={"index.blocks.write": True}),
    }
    try:
        for attempt in tampering.values():
            with pytest.raises(AuthorizationException):
                attempt()
    finally:
        writer.close()
    assert elasticsearch.get(index=index, id=name)["_source"] == document["_source"]


def test_the_whole_trail_verifies_from_elasticsearch_and_tampering_there_is_found(
    stack: Endpoints, demo: Kubectl, elasticsearch: Elasticsearch,
) -> None:
    name = unique("evidence")
    uid, _ = apply_recorded(demo, deployment(name))
    demo("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    wait_for_action(demo, uid, "image-changed")
    docs = delivered(elasticsearch, demo, uid, 2)
    intact = verify_chain(stack, "--source", "both")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "documents in Elasticsearch (cluster local)" in intact.stdout
    assert "they agree" in intact.stdout

    # The change a person made, not the rollout's records (which name no user).
    by_action = {doc["_source"]["event"]["action"]: doc for doc in docs}
    removed, altered = by_action["created"], by_action["image-changed"]
    sequences = [doc["_source"]["kubeledger"]["chain"]["sequence"] for doc in (removed, altered)]
    elasticsearch.update(index=altered["_index"], id=altered["_id"],
                         doc={"user": {"name": "mallory"}}, refresh=True)
    elasticsearch.delete(index=removed["_index"], id=removed["_id"], refresh=True)
    try:
        broken = verify_chain(stack, "--source", "elasticsearch")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert (f"BROKEN  #{sequences[1]} {altered['_id']}: its fields differ from the record "
                "it carries (user.name: altered in Elasticsearch)") in broken.stdout
        assert f"record {sequences[0]} is missing (removed)" in broken.stdout
        both = verify_chain(stack, "--source", "both")
        assert both.returncode == 1
        assert (f"BROKEN  #{sequences[0]} {removed['_id']}: is missing from Elasticsearch, "
                "which holds later records (removed there)") in both.stdout
    finally:
        for doc in docs:
            elasticsearch.index(index=doc["_index"], id=doc["_id"], document=doc["_source"],
                                refresh=True)
    assert verify_chain(stack, "--source", "elasticsearch").returncode == 0
