"""What a starting writer reads from the records in the cluster, page by page."""

from __future__ import annotations

from typing import Any

from kubeledger.core import chain, kinds, model
from kubeledger.recording import history
from unit import records
from unit.fake_kube import FakeKube


def spec(replicas: int, *, uid: str = "web-uid") -> model.RecordSpec:
    subject = records.deployment().model_copy(update={"uid": uid, "name": uid})
    return records.full_spec_with(chain=None, subject=subject,
                                  snapshot={"spec": {"replicas": replicas}})


def chained(sequence: int) -> dict[str, Any]:
    link = model.Chain(sequence=sequence, previousHash="a" * 64, hash=f"{sequence:064x}")
    return records.full_spec_with(chain=link).wire()


def folded(specs: list[dict[str, Any]]) -> history.History:
    found = history.History()
    for each in specs:
        found.add(each)
    return found


def test_the_highest_sequence_is_the_head_whatever_the_order() -> None:
    found = folded([chained(3), chained(9), chained(1),
                    records.full_spec_with(chain=None).wire()])

    assert found.head == chain.Head(9, f"{9:064x}")
    assert found.records == 4


def test_no_records_means_the_start_of_the_chain() -> None:
    head = folded([]).head

    assert head == chain.Head(0, chain.GENESIS_HASH)
    assert chain.seal(records.full_spec(), head)[1].sequence == 1


def test_a_new_writer_names_only_what_could_have_been_in_flight() -> None:
    specs = []
    head = chain.Head()
    for n in range(1, 41):
        sealed, head = chain.seal(spec(n), head)
        if n not in (5, 33, 38):  # 5 removed long ago; 33 and 38 in flight at the crash
            specs.append(sealed.wire())

    assert folded(specs).missing_in_flight(window=16) == {33, 38}


def test_gaps_declared_lost_or_pruned_are_not_missing() -> None:
    specs = []
    head = chain.Head()
    for n in range(1, 21):
        sealed, head = chain.seal(spec(n), head, lost={17} if n == 19 else ())
        if n not in (3, 17):  # 3 pruned by retention; 17 declared lost by 19
            specs.append(sealed.wire())

    assert folded(specs).missing_in_flight(window=32, pruned_through=3) == set()
    assert folded(specs).missing_in_flight(window=32) == {3}


async def test_reading_folds_every_page_into_the_head_and_the_baselines() -> None:
    kube = FakeKube()
    kube.page_size = 2
    head = chain.Head()
    for n, uid in enumerate(["web", "api", "web", "db", "api"], start=1):
        sealed, head = chain.seal(spec(n, uid=uid), head)
        kube.add(kinds.RECORDS, {"metadata": {"name": f"record-{n}"}, "spec": sealed.wire()})

    found = await history.read(kube)

    assert (found.records, found.head) == (5, head)
    baselines = found.baselines()
    latest = {uid: baselines.get(uid) for uid in ("web", "api", "db")}
    assert {uid: b.snapshot["spec"]["replicas"] for uid, b in latest.items() if b} == {
        "web": 3, "api": 5, "db": 4}


async def test_reading_keeps_the_records_after_the_delivery_position_for_the_shipper() -> None:
    kube = FakeKube()
    head = chain.Head()
    for n in range(1, 6):
        sealed, head = chain.seal(spec(n, uid="web"), head)
        kube.add(kinds.RECORDS, {"metadata": {"name": f"record-{n}"}, "spec": sealed.wire()})

    kept = history.Undelivered(after=3, limit=10)
    await history.read(kube, kept)
    too_many = history.Undelivered(after=0, limit=4)
    await history.read(kube, too_many)

    assert kept.records is not None
    assert {sequence: name for sequence, (name, _) in kept.records.items()} == {
        4: "record-4", 5: "record-5"}
    assert too_many.records is None  # past the limit: the shipper reads them itself
