"""What a starting writer reads from the records in the cluster, page by page."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kubeledger.core import chain, kinds, model, record_index
from kubeledger.core.baselines import encode
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
    for number, each in enumerate(specs):
        found.add(f"record-{number}", record_index.of(each))
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


def store(kube: FakeKube, name: str, sealed: model.RecordSpec, *, indexed: bool = True) -> None:
    """A record as the ledger writes it (with its index), or as written before the index."""
    metadata: dict[str, Any] = {"name": name}
    if indexed:
        metadata["annotations"] = {
            record_index.ANNOTATION: record_index.of(sealed.wire()).annotation()}
    kube.add(kinds.RECORDS, {"metadata": metadata, "spec": sealed.wire()})


@pytest.mark.parametrize("indexed", [
    "all", "none", "some",
    # Past the most read one by one: the records without an index are listed whole.
    "none, many"])
async def test_reading_folds_every_page_into_the_head_and_the_baselines(
    indexed: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if indexed == "none, many":
        monkeypatch.setattr(history, "MOST_READ_ONE_BY_ONE", 2)
    kube = FakeKube()
    kube.page_size = 2
    head = chain.Head()
    for n, uid in enumerate(["web", "api", "web", "db", "api"], start=1):
        sealed, head = chain.seal(spec(n, uid=uid), head)
        store(kube, f"record-{n}", sealed,
              indexed=indexed == "all" or (indexed == "some" and n % 2 == 0))

    found = await history.read(kube)

    assert (found.records, found.head) == (5, head)
    baselines = found.baselines()
    latest = {uid: baselines.get(uid) for uid in ("web", "api", "db")}
    assert {uid: (b.record, b.digest, b.loaded) for uid, b in latest.items() if b} == {
        uid: (f"record-{n}", record_index.of(kube.records()[f"record-{n}"]).snapshot, False)
        for uid, n in (("web", 3), ("api", 5), ("db", 4))}
    # Listed as metadata only: a record was read whole only where it had no index.
    assert kube.calls["get"] == {"all": 0, "none": 5, "some": 3, "none, many": 0}[indexed]


def test_the_index_stands_for_the_spec_and_reads_back_as_written() -> None:
    sealed, _ = chain.seal(spec(7), chain.Head(), lost={3})
    index = record_index.of(sealed.wire())

    assert record_index.read({record_index.ANNOTATION: index.annotation()}) == index
    assert (index.sequence, index.lost, index.action) == (1, (3,), "image-changed")
    assert index.snapshot == hashlib.sha256(encode({"spec": {"replicas": 7}})).hexdigest()
    assert record_index.read({}) is None
    assert record_index.read({record_index.ANNOTATION: "{not json"}) is None
    assert record_index.read({record_index.ANNOTATION: '{"v": 99}'}) is None


async def test_reading_keeps_the_records_after_the_delivery_position_for_the_shipper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = FakeKube()
    head = chain.Head()
    for n in range(1, 6):
        sealed, head = chain.seal(spec(n, uid="web"), head)
        store(kube, f"record-{n}", sealed, indexed=n != 5)

    kept = history.Undelivered(after=3, limit=10)
    await history.read(kube, kept)
    too_many = history.Undelivered(after=0, limit=4)
    await history.read(kube, too_many)
    monkeypatch.setattr(history, "MOST_READ_ONE_BY_ONE", 2)
    too_many_to_read = history.Undelivered(after=0, limit=10)
    await history.read(kube, too_many_to_read)

    assert kept.records is not None
    assert {sequence: name for sequence, (name, _) in kept.records.items()} == {
        4: "record-4", 5: "record-5"}
    # Past the limit, or too many to read one by one: the shipper reads them itself.
    assert too_many.records is None
    assert too_many_to_read.records is None
