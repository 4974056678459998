"""A restarted writer's baselines hold their snapshots' hashes only: a snapshot is read
from its record when, and only when, a change must be diffed against it."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from kubeledger.core import chain, kinds, model
from kubeledger.core.baselines import Baselines
from kubeledger.core.redaction import Redactor
from kubeledger.recording import history
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import objects
from unit.fake_kube import FakeKube

REDACTOR = Redactor(b"salt")


def recorder_over(kube: FakeKube, baselines: Baselines, head: chain.Head) -> Recorder:
    return Recorder(cluster="prod", redactor=REDACTOR, baselines=baselines,
                    ledger=Ledger(kube, head), specs=functools.partial(history.spec_of, kube))


def at(body: dict[str, Any], version: str) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = version
    return body


async def restarted(kube: FakeKube) -> tuple[Recorder, Baselines]:
    """A new writer over the records in ``kube``, as start-up builds it."""
    found = await history.read(kube)
    baselines = found.baselines()
    return recorder_over(kube, baselines, found.head), baselines


async def test_an_unchanged_object_is_known_without_reading_its_record() -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    await first.observe(kinds.DEPLOYMENTS, "ADDED", at(objects.deployment(), "10"))
    recorder, baselines = await restarted(kube)

    listed = await recorder.observe(kinds.DEPLOYMENTS, None, at(objects.deployment(), "12"))

    assert listed is None
    assert kube.calls["get"] == 0
    (baseline,) = baselines.of_kind("apps/v1", "Deployment")
    assert not baseline.loaded


async def test_a_change_is_diffed_against_the_snapshot_read_from_the_last_record() -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    await first.observe(kinds.DEPLOYMENTS, "ADDED", at(objects.deployment(replicas=3), "10"))
    recorder, _ = await restarted(kube)

    scaled = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED",
                                    at(objects.deployment(replicas=5), "13"))
    again = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED",
                                   at(objects.deployment(replicas=6), "14"))

    assert scaled is not None and again is not None
    assert [(change.path, change.old, change.new) for change in scaled.changes] == [
        ("spec.replicas", 3, 5)]
    assert scaled.action is model.Action.SCALED
    assert kube.calls["get"] == 1  # once read, the snapshot is held
    assert scaled.chain is not None and scaled.chain.sequence == 2


async def test_a_deletion_after_a_restart_is_classified_from_the_last_record() -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    await first.observe(kinds.DEPLOYMENTS, "ADDED", at(objects.deployment(), "10"))
    recorder, baselines = await restarted(kube)

    deleted = await recorder.observe(kinds.DEPLOYMENTS, "DELETED",
                                     at(objects.deployment(), "15"))

    assert deleted is not None and deleted.action is model.Action.DELETED
    assert len(baselines) == 0


async def test_a_binding_is_judged_by_the_rules_of_its_role_read_from_its_record() -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    everything = objects.cluster_role([objects.rule(["*"], ["*"], api_groups=["*"])])
    await first.observe(kinds.CLUSTER_ROLES, "ADDED", at(everything, "10"))
    recorder, _ = await restarted(kube)

    bound = await recorder.observe(kinds.CLUSTER_ROLE_BINDINGS, "ADDED", at(
        objects.cluster_role_binding([objects.user("mallory")]), "11"))

    assert bound is not None and bound.severity is model.Severity.CRITICAL
    assert kube.calls["get"] == 1


async def test_a_last_record_removed_meanwhile_leaves_the_object_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    await first.observe(kinds.DEPLOYMENTS, "ADDED", at(objects.deployment(replicas=3), "10"))
    recorder, _ = await restarted(kube)
    (name,) = kube.records()
    kube.remove(kinds.RECORDS, name)  # by break-glass, after start-up read the index

    changed = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED",
                                     at(objects.deployment(replicas=5), "13"))

    # Nothing to diff against: recorded as an object first seen now, after the fact.
    assert changed is not None and changed.action is model.Action.CREATED
    assert changed.observation is model.Observation.AFTER_THE_FACT
    assert f"record {name}, the last of Deployment/web, is gone" in caplog.text
