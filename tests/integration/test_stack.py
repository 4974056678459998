"""Smoke tests proving the local stack is real: a current Kubernetes whose node runs pods,
RBAC, controllers, a network that keeps everything on this machine, Elasticsearch with auth."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from integration.kubectl import Kubectl, KubectlError, eventually
from integration.manifests import TEST_IMAGE, deployment, unique
from stack import cache
from stack.cluster import Endpoints


def test_server_is_the_configured_kubernetes_release(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "--output=json"))
    assert version["serverVersion"]["gitVersion"] == cache.kubernetes_version()
    (node,) = kubectl.json("get", "nodes")["items"]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"


def http_get(address: str, port: int) -> str | None:
    """One plain HTTP GET, the way a pod would be probed: the answer's body (None: no answer)."""
    try:
        with socket.create_connection((address, port), timeout=5) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            answer = b"".join(iter(lambda: connection.recv(4096), b""))
    except OSError:
        return None  # kube-proxy may not have programmed the Service yet
    return answer.decode(errors="replace").split("\r\n\r\n", 1)[-1]


def test_pods_start_and_answer_through_their_service(kubectl: Kubectl) -> None:
    alice = kubectl.as_user("alice")
    manifest = deployment(unique("served"), image=TEST_IMAGE)
    name = manifest["metadata"]["name"]
    alice.apply(manifest)
    try:
        alice("-n", "demo", "rollout", "status", f"deployment/{name}", "--timeout=60s")
        alice("-n", "demo", "expose", "deployment", name, "--port=80", "--target-port=8080")
        service_ip = alice.json("-n", "demo", "get", "service", name)["spec"]["clusterIP"]
        assert "testapp 1" in eventually(lambda: http_get(service_ip, 80),
                                         what=f"an answer from service {name}")
    finally:
        alice("-n", "demo", "delete", "deployment,service", name, "--ignore-not-found")


def test_images_from_outside_registries_are_never_pulled(kubectl: Kubectl) -> None:
    alice = kubectl.as_user("alice")
    manifest = deployment(unique("outside"), image="nginx:1.25")
    alice.apply(manifest)
    try:
        def waiting_reason() -> str | None:
            pods = alice.json("-n", "demo", "get", "pods", "-l",
                              f"app={manifest['metadata']['name']}")["items"]
            states = [status.get("state", {}).get("waiting", {}).get("reason")
                      for pod in pods for status in pod["status"].get("containerStatuses", [])]
            return next((s for s in states if s in {"ErrImagePull", "ImagePullBackOff"}), None)
        assert eventually(waiting_reason, timeout=60, what="a failed pull of nginx:1.25")
    finally:
        alice("-n", "demo", "delete", "deployment", manifest["metadata"]["name"])


def test_controller_manager_creates_replicaset_for_alices_deployment(kubectl: Kubectl) -> None:
    alice = kubectl.as_user("alice")
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    alice("-n", "demo", "create", "deployment", name, f"--image={TEST_IMAGE}")
    try:
        uid = alice.json("-n", "demo", "get", "deployment", name)["metadata"]["uid"]

        def owned_replicasets() -> list[dict[str, Any]]:
            items = alice.json("-n", "demo", "get", "replicasets")["items"]
            return [rs for rs in items
                    if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences", []))]

        (replicaset,) = eventually(owned_replicasets, what="the Deployment's ReplicaSet")
        assert replicaset["spec"]["template"]["spec"]["containers"][0]["image"] == TEST_IMAGE
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
    intruder = Elasticsearch(stack.elasticsearch_url, basic_auth=("elastic", "wrong"),
                             ca_certs=str(stack.elasticsearch_ca))
    with pytest.raises(AuthenticationException):
        intruder.search(index="*")
    intruder.close()
