"""The ReplicaSet index: which pod templates a Deployment ran before a given change."""

from __future__ import annotations

from typing import Any

from kubeledger.core import projection
from kubeledger.core.revisions import Revisions
from unit import objects

Body = dict[str, Any]

OWNER_UID = objects.deployment()["metadata"]["uid"]
OTHER_OWNER_UID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
OLD_IMAGE = "registry.example.com/shop/web:1.4.2"
NEW_IMAGE = "registry.example.com/shop/web:1.5.0"


def owner(image: str) -> Body:
    return objects.deployment(template=objects.pod_template([objects.container(image=image)]))


def fingerprint(image: str) -> str:
    """The fingerprint of the Deployment's template when it runs ``image``."""
    return projection.template_fingerprint(owner(image)["spec"]["template"])


def replica_set(
    uid: str,
    version: int,
    image: str = OLD_IMAGE,
    *,
    owner_uid: str = OWNER_UID,
    controller: bool | None = True,
) -> Body:
    """A ReplicaSet as the Deployment controller makes it; no ownerReference if None."""
    metadata: Body = {
        "name": f"web-{uid}",
        "namespace": "shop",
        "uid": uid,
        "resourceVersion": str(version),
    }
    if controller is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "web",
                "uid": owner_uid,
                "controller": controller,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata,
        "spec": {"replicas": 3, "template": objects.replica_set_template(owner(image), uid)},
    }


def observed(*events: tuple[str | None, Body]) -> Revisions:
    revisions = Revisions()
    for event_type, body in events:
        revisions.observe(event_type, body)
    return revisions


def test_only_replica_sets_first_seen_before_the_change_count() -> None:
    revisions = observed(
        (None, replica_set("rs-old", 100, OLD_IMAGE)),  # from the initial listing
        ("ADDED", replica_set("rs-new", 200, NEW_IMAGE)),
    )

    assert revisions.earlier_templates(OWNER_UID, "100") == frozenset()
    assert revisions.earlier_templates(OWNER_UID, "150") == {fingerprint(OLD_IMAGE)}
    assert revisions.earlier_templates(OWNER_UID, "201") == {
        fingerprint(OLD_IMAGE),
        fingerprint(NEW_IMAGE),
    }


def test_the_pod_template_hash_label_does_not_change_the_fingerprint() -> None:
    revisions = observed(("ADDED", replica_set("rs-old", 100)))

    (known,) = revisions.earlier_templates(OWNER_UID, "101")
    assert known == fingerprint(OLD_IMAGE)


def test_a_deleted_replica_set_is_forgotten() -> None:
    revisions = observed(
        ("ADDED", replica_set("rs-old", 100, OLD_IMAGE)),
        ("ADDED", replica_set("rs-new", 200, NEW_IMAGE)),
        ("DELETED", replica_set("rs-old", 300, OLD_IMAGE)),
    )

    assert revisions.earlier_templates(OWNER_UID, "1000") == {fingerprint(NEW_IMAGE)}

    revisions.observe("DELETED", replica_set("rs-new", 400, NEW_IMAGE))
    assert revisions.earlier_templates(OWNER_UID, "1000") == frozenset()


def test_a_later_modification_keeps_the_first_seen_version() -> None:
    """The controller scales an old ReplicaSet up again on a rollback: still an old one."""
    revisions = observed(
        ("ADDED", replica_set("rs-old", 100)),
        ("MODIFIED", replica_set("rs-old", 500)),
    )

    assert revisions.earlier_templates(OWNER_UID, "200") == {fingerprint(OLD_IMAGE)}


def test_replica_sets_not_controlled_by_the_owner_are_ignored() -> None:
    revisions = observed(
        ("ADDED", replica_set("rs-orphan", 100, controller=None)),
        ("ADDED", replica_set("rs-adopted", 110, controller=False)),
        ("ADDED", replica_set("rs-other", 120, NEW_IMAGE, owner_uid=OTHER_OWNER_UID)),
    )

    assert revisions.earlier_templates(OWNER_UID, "1000") == frozenset()
    assert revisions.earlier_templates(OTHER_OWNER_UID, "1000") == {fingerprint(NEW_IMAGE)}
