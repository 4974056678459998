"""Baselines: rebuilt from the records themselves, the latest record of each live object."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from kubeledger.core import model, record_index, revisions
from kubeledger.core.baselines import Baselines, encode
from kubeledger.core.record_index import LatestRecords
from unit import records

WEB_UID = records.deployment().uid
API_UID = "7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9"


def subject(uid: str = WEB_UID, name: str = "web", version: int = 1) -> model.Subject:
    return records.deployment().model_copy(
        update={"uid": uid, "name": name, "resourceVersion": str(version)}
    )


def snapshot(replicas: int) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}}


def recorded(
    sequence: int,
    *,
    uid: str = WEB_UID,
    name: str = "web",
    action: model.Action = model.Action.SCALED,
) -> dict[str, Any]:
    """The spec of a record at ``sequence``, its snapshot saying ``replicas: sequence``."""
    deleting = action in (model.Action.DELETED, model.Action.DELETED_WHILE_UNOBSERVED)
    spec = records.full_spec_with(
        subject=subject(uid, name, version=sequence),
        action=action,
        snapshot=None if deleting else snapshot(sequence),
        chain=model.Chain(sequence=sequence, previousHash="a" * 64, hash="b" * 64),
    )
    return spec.wire()


def latest_of(specs: list[dict[str, Any]]) -> Baselines:
    folded = LatestRecords()
    for spec in specs:
        folded.add(f"record-{spec['chain']['sequence']}", record_index.of(spec))
    return folded.baselines()


def digest(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(encode(snapshot)).hexdigest()


def remembered(*subjects: model.Subject) -> Baselines:
    baselines = Baselines()
    for each in subjects:
        baselines.remember(each, snapshot(1))
    return baselines


def test_the_latest_record_of_each_object_wins_in_any_order() -> None:
    baselines = latest_of(
        [recorded(1), recorded(7), recorded(2, uid=API_UID, name="api"), recorded(4)]
    )

    web = baselines.get(WEB_UID)
    api = baselines.get(API_UID)
    assert len(baselines) == 2
    assert web is not None and api is not None
    # Their snapshots are still in their records: named, and known by their hash.
    assert not web.loaded and not api.loaded
    assert (web.digest, web.record, web.subject) == (
        digest(snapshot(7)), "record-7", subject(version=7))
    assert (api.digest, api.record, api.subject) == (
        digest(snapshot(2)), "record-2", subject(API_UID, "api", version=2))


@pytest.mark.parametrize(
    "deletion", [model.Action.DELETED, model.Action.DELETED_WHILE_UNOBSERVED]
)
def test_objects_last_recorded_as_deleted_drop_out(deletion: model.Action) -> None:
    baselines = latest_of(
        [recorded(1), recorded(3, action=deletion), recorded(2, uid=API_UID, name="api")]
    )

    assert baselines.get(WEB_UID) is None
    assert baselines.find("Deployment", "shop", "web") is None
    assert baselines.get(API_UID) is not None
    assert len(baselines) == 1


def test_find_looks_up_by_kind_namespace_and_name() -> None:
    binding = records.cluster_role_binding()
    baselines = remembered(subject(), binding)

    found = baselines.find("Deployment", "shop", "web")
    assert found is not None and found.subject == subject()
    cluster_scoped = baselines.find("ClusterRoleBinding", "", "deployer-is-admin")
    assert cluster_scoped is not None and cluster_scoped.subject == binding
    assert baselines.find("StatefulSet", "shop", "web") is None
    assert baselines.find("Deployment", "other", "web") is None


def test_forget_removes_the_object_and_its_name() -> None:
    baselines = remembered(subject())

    baselines.forget(WEB_UID)

    assert baselines.get(WEB_UID) is None
    assert baselines.find("Deployment", "shop", "web") is None
    assert len(baselines) == 0


def test_forgetting_an_old_object_keeps_the_name_of_its_successor() -> None:
    """A Deployment deleted and created again under the same name has a new uid."""
    baselines = remembered(subject(), subject(API_UID, "web"))

    baselines.forget(WEB_UID)

    found = baselines.find("Deployment", "shop", "web")
    assert found is not None and found.subject.uid == API_UID


def test_touch_marks_the_object_as_seen_now() -> None:
    baselines = remembered(subject())
    baseline = baselines.get(WEB_UID)
    assert baseline is not None
    baseline.seen_at = time.monotonic() - 3600.0
    before = time.monotonic()

    baselines.touch(WEB_UID)
    baselines.touch(API_UID)  # unknown: nothing to mark, nothing added

    assert baseline.seen_at >= before
    assert len(baselines) == 1


def test_the_templates_of_every_record_are_folded_into_the_history_in_sequence_order() -> None:
    def with_image(sequence: int, image: str) -> dict[str, Any]:
        spec = recorded(sequence)
        spec["snapshot"] = {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}}
        return spec

    specs = [with_image(3, "web:1"), with_image(1, "web:1"), with_image(2, "web:2")]
    (baseline,) = latest_of(specs).of_kind("apps/v1", "Deployment")

    assert baseline.templates == tuple(
        revisions.template_fingerprint(spec["snapshot"]) for spec in (specs[2], specs[0]))
