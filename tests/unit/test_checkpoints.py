"""Checkpoints of the chain: signing, and holding a chain against them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubeledger.core import checkpoints
from kubeledger.core.checkpoints import Checkpoint
from kubeledger.sinks.elasticsearch import anchors

KEY = b"k" * 32
THEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def chain_of(count: int, *, first: int = 1, tag: str = "") -> dict[int, tuple[str, str]]:
    return {seq: (f"record-{seq}{tag}", f"hash-{seq}{tag}") for seq in range(first, count + 1)}


def point(sequence: int, *, tag: str = "", minutes: int = 0) -> Checkpoint:
    return Checkpoint("local", sequence, f"hash-{sequence}{tag}", f"record-{sequence}{tag}",
                      THEN + timedelta(minutes=minutes))


def problems(result: checkpoints.Check) -> list[tuple[int, str]]:
    return [(finding.sequence, finding.problem) for finding in result.findings]


def test_a_chain_that_holds_every_checkpointed_record_agrees() -> None:
    result = checkpoints.check(chain_of(10), [point(4), point(9)])

    assert result.findings == ()
    assert result.matched == 2


def test_a_chain_rebuilt_from_scratch_shorter_than_the_checkpoints_is_caught() -> None:
    rebuilt = chain_of(3, tag="-forged")

    result = checkpoints.check(rebuilt, [point(2), point(8)])

    assert problems(result) == [
        (2, "differs from the checkpoint of 2026-11-30T12:00:00+00:00 (the chain was "
            "rewritten)"),
        (8, "a checkpoint of 2026-11-30T12:00:00+00:00 vouches for this record, but the chain "
            "ends at 3 (records removed from its end, or the chain rebuilt)"),
    ]
    assert result.findings[0].name == "record-2-forged"


def test_a_rebuilt_chain_as_long_as_the_original_still_differs_in_its_hashes() -> None:
    result = checkpoints.check(chain_of(9, tag="-forged"), [point(5)])

    assert [seq for seq, _ in problems(result)] == [5]
    assert result.matched == 0


def test_checkpoints_of_records_removed_by_retention_are_counted_not_reported() -> None:
    result = checkpoints.check(chain_of(10, first=6), [point(3), point(8)], pruned_through=5)

    assert result.findings == ()
    assert (result.matched, result.before_retention) == (1, 1)


def test_a_checkpointed_record_missing_inside_the_chain_is_reported() -> None:
    holed = {seq: link for seq, link in chain_of(6).items() if seq != 4}

    assert problems(checkpoints.check(holed, [point(4)])) == [
        (4, "is missing, though the checkpoint of 2026-11-30T12:00:00+00:00 vouches for it "
            "(removed)")]


def test_two_checkpoints_of_one_sequence_that_disagree_are_reported() -> None:
    result = checkpoints.check(chain_of(5), [point(5), point(5, tag="-other", minutes=1)])

    assert (5, "two checkpoints disagree about this record (2026-11-30T12:00:00+00:00 and "
               "2026-11-30T12:01:00+00:00)") in problems(result)


def test_with_the_key_only_signed_checkpoints_vouch() -> None:
    signed, unsigned = point(3).signed(KEY), point(5)
    other_key = point(4).signed(b"x" * 32)

    result = checkpoints.check(chain_of(5), [signed, unsigned, other_key], key=KEY)

    assert result.matched == 1
    assert result.untrusted == 2
    assert [seq for seq, problem in problems(result)
            if "is not signed with the given key" in problem] == [4, 5]


def test_a_signature_covers_everything_the_checkpoint_says() -> None:
    signed = point(3).signed(KEY)

    assert signed.signed_by(KEY)
    assert not Checkpoint("local", 3, "hash-3-forged", "record-3", signed.time,
                          signed.signature).signed_by(KEY)
    assert not Checkpoint("other", 3, "hash-3", "record-3", signed.time,
                          signed.signature).signed_by(KEY)


def test_a_short_key_is_refused_with_how_to_make_one() -> None:
    assert checkpoints.key_problem(KEY) is None
    assert checkpoints.key_problem(b"secret") == (
        "holds 6 bytes; a checkpoint key needs at least 32 (e.g. `openssl rand -hex 32`)")


def test_a_checkpoint_document_reads_back_as_the_same_checkpoint_signature_intact() -> None:
    signed = Checkpoint("local", 42, "ab" * 32, "deployment-x-1",
                        datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)).signed(KEY)

    document = anchors.to_document(signed)
    read = anchors.from_document(document)

    assert read == signed
    assert read.signed_by(KEY)
    assert anchors.document_id(signed) == document["event"]["id"] == "checkpoint-local-42"
    assert anchors.index_for("kubeledger", signed) == "kubeledger-2026.12"
    # Not a change: kept out of the trail and out of searches for events.
    assert document["event"]["kind"] == "state"
    assert "chain" not in document["kubeledger"]
