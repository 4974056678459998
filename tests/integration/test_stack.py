"""Smoke tests proving the local stack is real: RBAC, controllers, Elasticsearch with auth."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from integration.kubectl import Kubectl, KubectlError, eventually
from stack.cluster import Endpoints


def test_controller_manager_creates_replicaset_for_alices_deployment(kubectl: Kubectl) -> None:
    alice = kubectl.as_user("alice")
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    alice("-n", "demo", "create", "deployment", name, "--image=nginx:1.25")
    try:
        uid = alice.json("-n", "demo", "get", "deployment", name)["metadata"]["uid"]

        def owned_replicasets() -> list[dict[str, Any]]:
            items = alice.json("-n", "demo", "get", "replicasets")["items"]
            return [rs for rs in items
                    if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences", []))]

        (replicaset,) = eventually(owned_replicasets, what="the Deployment's ReplicaSet")
        assert replicaset["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    finally:
        alice("-n", "demo", "delete", "deployment", name)


def test_alice_may_not_create_cluster_roles(kubectl: Kubectl) -> None:
    with pytest.raises(KubectlError) as denied:
        kubectl.as_user("alice")("create", "clusterrole", "smoke-denied",
                                 "--verb=get", "--resource=pods")
    assert 'User "alice" cannot create resource "clusterroles"' in denied.value.stderr


def test_elasticsearch_indexes_and_searches_with_credentials(
    elasticsearch: Elasticsearch,
) -> None:
    index = f"smoke-{uuid.uuid4().hex[:6]}"
    elasticsearch.index(index=index, id="1", document={"user": "alice", "action": "scaled"},
                        refresh=True)
    try:
        found = elasticsearch.search(index=index, query={"match": {"user": "alice"}})
        assert [hit["_id"] for hit in found["hits"]["hits"]] == ["1"]
        nodes = elasticsearch.nodes.info(node_id="_local")["nodes"]
        assert [node["version"][:2] for node in nodes.values()] == ["8."]
    finally:
        elasticsearch.indices.delete(index=index)


def test_elasticsearch_refuses_wrong_password(stack: Endpoints) -> None:
    intruder = Elasticsearch(stack.elasticsearch_url, basic_auth=("elastic", "wrong"))
    with pytest.raises(AuthenticationException):
        intruder.search(index="*")
    intruder.close()
