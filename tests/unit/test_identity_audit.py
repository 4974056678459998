"""The audit log joins the apiserver's audit events to watch events by uid + resourceVersion."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from kubeledger.core.redaction import Redactor
from kubeledger.identity.audit import AuditIdentity, AuditLog
from kubeledger.identity.user import User
from unit import identity_objects as io
from unit import objects

UID = objects.deployment()["metadata"]["uid"]
ADMIN = "kubernetes-admin"
DEPLOYER = "system:serviceaccount:ci:deployer"


def updated(resource_version: str = "48214") -> io.Body:
    """The Deployment as the apiserver answers an update: with its new resourceVersion."""
    body = objects.deployment()
    body["metadata"]["resourceVersion"] = resource_version
    return body


def test_successful_update_is_found_by_uid_and_new_resource_version() -> None:
    log = AuditLog()

    assert len(log.ingest(io.event_list(io.audit_event("patch", updated())))) == 1

    assert log.lookup(UID, "48214") == AuditIdentity(
        user=User(io.ALICE, "6d3c1f0e-2b7a-4c59-9e8d-1a2b3c4d5e6f",
                  ("developers", "system:authenticated")),
        source_ips=("10.0.12.7",),
        user_agent="kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
    )
    assert log.lookup(UID, "48213") is None


def test_impersonation_keeps_both_the_real_and_the_assumed_user() -> None:
    log = AuditLog()
    event = io.audit_event(
        "update", updated(), user=io.user_info(ADMIN, uid=None, groups=["system:masters"]),
        impersonated_user=io.user_info(DEPLOYER, uid="sa-uid",
                                       groups=["system:serviceaccounts"]))
    log.ingest(io.event_list(event))

    found = log.lookup(UID, "48214")

    assert found is not None
    assert found.user == User(ADMIN, None, ("system:masters",))
    assert found.impersonated == User(DEPLOYER, "sa-uid", ("system:serviceaccounts",))
    assert found.effective == found.impersonated


def test_scale_subresource_joins_by_the_deployments_uid() -> None:
    log = AuditLog()
    event = io.audit_event("update", io.scale(updated("48230"), 5), subresource="scale")

    log.ingest(io.event_list(event))

    assert log.lookup(UID, "48230") is not None


@pytest.mark.parametrize(
    ("description", "event"),
    [
        ("request received only", io.audit_event("patch", updated(), stage="RequestReceived")),
        ("a read", io.audit_event("get", updated())),
        ("a conflict", io.audit_event("update", updated(), code=409)),
        ("a denied write", io.audit_event("patch", updated(), code=403)),
        ("not an audited resource", io.audit_event("patch", updated(), resource="configmaps")),
        ("a server-side dry run",
         io.audit_event("patch", updated(), query="dryRun=All&fieldManager=kubectl-edit")),
        ("level Metadata: no response object", io.audit_event("patch", None)),
    ],
)
def test_events_that_are_not_audited_writes_are_dropped(description: str, event: io.Body) -> None:
    log = AuditLog()

    assert log.ingest(io.event_list(event)) == [], description
    assert len(log) == 0


def test_deletion_answered_with_a_status_is_found_by_uid() -> None:
    log = AuditLog()

    log.ingest(io.event_list(io.audit_event("delete", io.deletion_status(objects.deployment()))))

    found = log.lookup_deletion(UID)
    assert found is not None
    assert found.user.username == io.ALICE


def test_deletion_held_by_finalizers_answers_with_the_object() -> None:
    log = AuditLog()
    terminating = updated("48300")
    terminating["metadata"]["deletionTimestamp"] = "2025-11-20T09:06:00Z"

    log.ingest(io.event_list(io.audit_event("delete", terminating)))

    assert log.lookup_deletion(UID) is not None
    assert log.lookup(UID, "48300") is None


def test_a_later_no_op_write_does_not_replace_the_write_that_made_the_version() -> None:
    log = AuditLog()
    # Bob applies the same content again: nothing changes, the same resourceVersion answers.
    no_op = io.audit_event("patch", updated(), user=io.user_info("bob@example.com"))

    kept = log.ingest(io.event_list(io.audit_event("patch", updated()), no_op))

    assert len(kept) == 1
    found = log.lookup(UID, "48214")
    assert found is not None
    assert found.user.username == io.ALICE


def test_an_empty_batch_keeps_nothing() -> None:
    assert AuditLog().ingest({"kind": "EventList", "items": None}) == []


def test_events_expire() -> None:
    now = [0.0]
    log = AuditLog(ttl=60, clock=lambda: now[0])
    log.ingest(io.event_list(io.audit_event("patch", updated())))

    now[0] = 60.0

    assert log.lookup(UID, "48214") is None


async def test_waits_for_an_event_that_arrives_after_the_watch_event() -> None:
    log = AuditLog()
    waiting = asyncio.create_task(log.wait_for(UID, "48214", timeout=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()

    log.ingest(io.event_list(io.audit_event("patch", updated("48213"))))
    await asyncio.sleep(0)
    assert not waiting.done()  # another version of the object is not the one waited for
    log.ingest(io.event_list(io.audit_event("patch", updated("48214"))))

    found = await asyncio.wait_for(waiting, 1)
    assert found is not None
    assert found.user.username == io.ALICE


async def test_waits_for_a_late_deletion() -> None:
    log = AuditLog()
    waiting = asyncio.create_task(log.wait_for_deletion(UID, timeout=5))
    await asyncio.sleep(0)

    log.ingest(io.event_list(io.audit_event("delete", io.deletion_status(objects.deployment()))))

    assert await asyncio.wait_for(waiting, 1) is not None


async def test_an_event_already_received_is_returned_without_waiting() -> None:
    log = AuditLog()
    log.ingest(io.event_list(io.audit_event("patch", updated())))

    assert await asyncio.wait_for(log.wait_for(UID, "48214", timeout=60), 0.5) is not None


async def test_waiting_gives_up_after_the_timeout() -> None:
    log = AuditLog()
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await log.wait_for(UID, "48214", timeout=0.05) is None

    assert 0.04 <= loop.time() - started < 1
    # A timed-out waiter leaves nothing behind: memory stays bounded by live waits.
    assert vars(log)["_waiters"] == {}


async def test_concurrent_waiters_for_one_version_all_get_the_event() -> None:
    log = AuditLog()
    waiting = [asyncio.create_task(log.wait_for(UID, "48214", timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)

    log.ingest(io.event_list(io.audit_event("patch", updated())))

    found = await asyncio.wait_for(asyncio.gather(*waiting), 1)
    assert all(identity is not None for identity in found)


def test_request_and_response_bodies_are_never_stored() -> None:
    leaked = "hunter2-never-kept"  # a secret env value the write carries
    container = objects.container(env=[objects.env_var("DB_PASSWORD", leaked)])
    body = objects.deployment(template=objects.pod_template([container]))
    body["metadata"]["resourceVersion"] = "48214"
    # With a redactor the object as written is kept too, for a replay: redacted.
    log = AuditLog(redactor=Redactor(b"salt"))

    log.ingest(io.event_list(io.audit_event("update", body, request_object=body)))

    assert len(log) == 1
    assert leaked not in repr(vars(log))
    assert leaked.encode() not in pickle.dumps(vars(log)["_store"])
    assert log.written is not None
    kept = log.written.of(body["metadata"]["uid"])
    assert len(kept) == 1 and leaked.encode() not in pickle.dumps(kept)


def test_of_records_only_deletions_are_kept() -> None:
    log = AuditLog()
    record = updated("48400")

    log.ingest(io.event_list(io.audit_event("create", record, resource="auditrecords"),
                             io.audit_event("delete", io.deletion_status(record),
                                            resource="auditrecords")))

    assert log.lookup(UID, "48400") is None  # the operator's own writes: never waited for
    assert log.lookup_deletion(UID) is not None
