"""Replicas relay identities to each other: who the peers are, and what a peer may plant."""

from __future__ import annotations

import json

from kubeledger import peers
from kubeledger.core import kinds
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.audit import AuditLog
from unit import identity_objects as io
from unit import objects
from unit.fake_kube import FakeKube

KEY = peers.relay_key(b"the redaction salt")


def endpoint_slice(service: str, endpoints: list[tuple[str, bool]]) -> dict[str, object]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-x1", "namespace": "kubeledger",
                     "labels": {"kubernetes.io/service-name": service}},
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}
                      for address, ready in endpoints],
    }


async def test_peers_are_the_other_ready_endpoints_of_the_webhook_service() -> None:
    kube = FakeKube()
    kube.add(kinds.ENDPOINT_SLICES, endpoint_slice(
        "kubeledger-webhook", [("10.100.0.7", True), ("10.100.0.8", True),
                               ("10.100.0.9", False)]))
    kube.add(kinds.ENDPOINT_SLICES, endpoint_slice("elsewhere", [("10.100.0.20", True)]))
    found = peers.Peers(kube, namespace="kubeledger", service="kubeledger-webhook",
                        own_address="10.100.0.7")

    await found.refresh()

    assert found.addresses == ["10.100.0.8"]


def relayed(admission: list[dict[str, object]], audit: list[dict[str, object]]) -> bytes:
    return json.dumps({"admission": admission, "audit": audit}).encode()


def test_a_signed_relay_teaches_this_replica_what_the_peer_was_told() -> None:
    body = objects.deployment()
    told_admission, told_audit = AdmissionCache(), AuditLog()
    admitted = told_admission.remember(io.admission_request(
        "UPDATE", obj=body, old_obj=body, user=io.user_info(io.ALICE)))
    audited = told_audit.ingest(io.event_list(io.audit_event(
        "patch", body, user=io.user_info(io.ALICE))))
    assert admitted is not None and len(audited) == 1
    message = relayed([admitted], audited)
    admission, audit = AdmissionCache(), AuditLog()

    assert peers.accept(message, peers.signature(KEY, message), key=KEY, admission=admission,
                        audit=audit)

    uid, version = body["metadata"]["uid"], body["metadata"]["resourceVersion"]
    found_by_audit = audit.lookup(uid, version)
    assert found_by_audit is not None and found_by_audit.user.username == io.ALICE
    found_by_admission = admission.match(uid, body)
    assert found_by_admission is not None
    assert found_by_admission.user.username == io.ALICE


def test_a_relay_without_the_right_signature_plants_nothing() -> None:
    body = objects.deployment()
    admitted = AdmissionCache().remember(io.admission_request(
        "UPDATE", obj=body, old_obj=body, user=io.user_info("mallory")))
    assert admitted is not None
    message = relayed([admitted], [])
    admission = AdmissionCache()

    forged = peers.signature(peers.relay_key(b"another salt"), message)
    assert not peers.accept(message, forged, key=KEY, admission=admission, audit=None)
    assert not peers.accept(message, None, key=KEY, admission=admission, audit=None)

    assert len(admission) == 0


def test_a_malformed_entry_does_not_drop_the_others() -> None:
    body = objects.deployment()
    admitted = AdmissionCache().remember(io.admission_request(
        "UPDATE", obj=body, old_obj=body, user=io.user_info(io.ALICE)))
    assert admitted is not None
    message = relayed([{"uid": "no user"}, admitted], [])
    admission = AdmissionCache()

    assert peers.accept(message, peers.signature(KEY, message), key=KEY, admission=admission,
                        audit=None)

    assert len(admission) == 1
