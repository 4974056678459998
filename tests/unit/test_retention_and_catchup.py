"""Retention and catch-up against the fake cluster: what goes, what stays, what is recorded."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from kubeledger.core import chain, kinds, model
from kubeledger.core.baselines import Baselines
from kubeledger.core.record_index import RecordIndex
from kubeledger.core.redaction import Redactor
from kubeledger.kube import errors
from kubeledger.recording import catchup, history, retention
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import objects, records
from unit.fake_kube import FakeKube

NAMESPACE = "kubeledger"
OLD = datetime.now(UTC) - timedelta(days=30)


async def chain_of(kube: FakeKube, uids: list[str]) -> Ledger:
    """One old record per entry of ``uids``, in that order."""
    ledger = Ledger(kube, chain.Head())
    for index, uid in enumerate(uids, start=1):
        subject = records.deployment().model_copy(update={"uid": uid})
        await ledger.append(f"record-{index}",
                            records.full_spec_with(chain=None, observedAt=OLD, subject=subject))
    return ledger


@pytest.mark.parametrize("indexed", [True, False])
async def test_delivered_superseded_old_records_go_and_the_watermark_comes_first(
    indexed: bool,
) -> None:
    kube = FakeKube()
    await chain_of(kube, ["a", "a", "b", "a", "b"])
    if not indexed:  # one written before records had an index: all are read whole
        for key, body in kube.objects.items():
            if key[-1] == "record-2":
                del body["metadata"]["annotations"]

    removed = await retention.prune(kube, NAMESPACE, retention=timedelta(days=7),
                                    delivered_up_to=4)

    # 1, 2 (a, superseded) and 3 (b, superseded by 5) are delivered; 4 and 5 are latest.
    assert removed == 3
    assert sorted(kube.records()) == ["record-4", "record-5"]
    assert await retention.pruned_through(kube, NAMESPACE) == 3
    assert kube.calls["list"] == (1 if indexed else 2)  # metadata, then whole


async def test_undelivered_records_stay_whatever_their_age() -> None:
    kube = FakeKube()
    await chain_of(kube, ["a", "a", "a"])

    assert await retention.prune(kube, NAMESPACE, retention=timedelta(days=7),
                                 delivered_up_to=0) == 0
    assert len(kube.records()) == 3
    assert kube.calls["write_config_map"] == 0


async def test_pruning_goes_on_through_failures_and_records_already_gone() -> None:
    kube = FakeKube()
    await chain_of(kube, ["a", "a", "a"])
    kube.fail("list", errors.Unavailable("503", status=503), times=2)
    # Someone removed record-1 just before us: our delete answers 404.
    kube.fail("delete", errors.NotFound("404 removed meanwhile", status=404), after=True)

    assert await retention.prune(kube, NAMESPACE, retention=timedelta(days=7),
                                 delivered_up_to=3) == 2
    assert list(kube.records()) == ["record-3"]


def test_an_objects_latest_record_stays_in_whatever_order_the_records_come() -> None:
    def index(sequence: int, uid: str, observed_at: datetime) -> RecordIndex:
        return RecordIndex(sequence=sequence, hash="", lost=(),
                           observed_at=observed_at.isoformat(), subject={"uid": uid},
                           action="changed", snapshot=None, template=None)

    expiry = retention.Expiry(now=datetime.now(UTC), retention=timedelta(days=7),
                              delivered_up_to=4)
    # Listed latest first: record-3 is u1's latest, which only a later one tells.
    for name, sequence, uid, observed_at in [
            ("record-3", 3, "u1", OLD), ("record-1", 1, "u1", OLD), ("record-2", 2, "u2", OLD),
            ("record-4", 4, "u2", datetime.now(UTC)), ("record-5", 5, "u1", OLD),
            ("record-0", 0, "u1", OLD)]:
        expiry.add(name, index(sequence, uid, observed_at))

    # record-2 is old and superseded by a young one; record-5 is undelivered, so u1's
    # latest (it stays) and record-3 may go; record-0 is outside the chain.
    assert sorted(expiry.expired()) == [("record-1", 1), ("record-2", 2), ("record-3", 3)]


async def test_nothing_pruned_means_no_gaps_to_expect() -> None:
    assert await retention.pruned_through(FakeKube(), NAMESPACE) == 0


def recorder_over(kube: FakeKube, baselines: Baselines) -> Recorder:
    return Recorder(cluster="prod", redactor=Redactor(b"salt"), baselines=baselines,
                    ledger=Ledger(kube, chain.Head()),
                    specs=functools.partial(history.spec_of, kube))


async def test_an_object_gone_from_the_listing_is_recorded_deleted_once() -> None:
    kube = FakeKube()
    baselines = Baselines()
    recorder = recorder_over(kube, baselines)
    body = objects.deployment()
    await recorder.observe(kinds.DEPLOYMENTS, "ADDED", body)
    # Listed at start-up, then vanished: the baseline was confirmed before the listing.
    baselines.get(body["metadata"]["uid"]).seen_at -= 10  # type: ignore[union-attr]

    found = await catchup.record_unobserved_deletions(kube, recorder, baselines,
                                                      [kinds.DEPLOYMENTS])
    again = await catchup.record_unobserved_deletions(kube, recorder, baselines,
                                                      [kinds.DEPLOYMENTS])

    assert found == again == {kinds.DEPLOYMENTS: set()}
    deleted = [spec for spec in kube.records().values()
               if spec["action"] == model.Action.DELETED_WHILE_UNOBSERVED]
    assert len(deleted) == 1
    assert len(baselines) == 0


async def test_an_object_first_seen_after_the_listing_started_is_not_declared_deleted() -> None:
    kube = FakeKube()
    baselines = Baselines()
    recorder = recorder_over(kube, baselines)
    body = objects.deployment()

    async def arrives_mid_listing() -> None:
        await recorder.observe(kinds.DEPLOYMENTS, "ADDED", body)

    kube.after_list.append(arrives_mid_listing)

    await catchup.record_unobserved_deletions(kube, recorder, baselines, [kinds.DEPLOYMENTS])

    assert len(baselines) == 1
    assert [spec["action"] for spec in kube.records().values()] == [model.Action.CREATED]


async def test_a_resource_absent_from_the_cluster_is_skipped() -> None:
    kube = FakeKube()
    baselines = Baselines()
    recorder = recorder_over(kube, baselines)
    await recorder.observe(kinds.ROLLOUTS, "ADDED", objects.argo_rollout())
    kube.fail("list", errors.NotFound("404 no rollouts CRD here", status=404))

    listed = await catchup.record_unobserved_deletions(kube, recorder, baselines,
                                                       [kinds.ROLLOUTS])

    assert listed == {}  # nothing for the first listing to wait for either
    assert len(baselines) == 1


async def test_the_recorder_moves_the_baseline_only_once_the_record_is_written() -> None:
    kube = FakeKube()
    baselines = Baselines()
    recorder = recorder_over(kube, baselines)
    body = objects.deployment()
    uid = body["metadata"]["uid"]

    written = await recorder.observe(kinds.DEPLOYMENTS, "ADDED", body)
    churn = objects.deployment()
    churn["metadata"]["resourceVersion"] = "48999"
    unchanged = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", churn)

    assert written is not None and written.cluster == "prod"
    assert unchanged is None
    assert len(kube.records()) == 1
    baseline = baselines.get(uid)
    assert baseline is not None and baseline.subject.resourceVersion == "48213"
    await recorder.observe(kinds.DEPLOYMENTS, "DELETED", churn)
    assert baselines.get(uid) is None


async def test_a_baseline_read_from_the_records_is_found_gone_by_a_listing_made_meanwhile(
) -> None:
    # Start-up lists the cluster while it reads the records: the listing starts first.
    kube = FakeKube()
    listed = await catchup.list_present(kube, [kinds.DEPLOYMENTS])
    await Ledger(kube, chain.Head()).append("deployment-web-1", records.full_spec())
    baselines = (await history.read(kube)).baselines()

    await catchup.record_vanished(recorder_over(kube, baselines), baselines, listed)

    assert [spec["action"] for spec in kube.records().values()] == [
        model.Action.IMAGE_CHANGED, model.Action.DELETED_WHILE_UNOBSERVED]
    assert len(baselines) == 0
