"""The hash chain: sealing links records, and ``verify`` finds every kind of tampering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeledger.core import chain, model
from unit import records

Named = tuple[str, dict[str, Any]]  # (record name, spec as written), what verify reads

FIRST_VERSION = 48_001
ALTERED = "content does not match its hash (altered)"
RELINKED = "does not link to the record before it (altered or reordered)"


def unsealed(version: int, **fields: Any) -> model.RecordSpec:
    """A record of the change at ``version`` of the Deployment in ``records``."""
    subject = records.deployment().model_copy(update={"resourceVersion": str(version)})
    return records.full_spec_with(subject=subject, **fields)


def named(spec: model.RecordSpec) -> Named:
    return model.record_name(spec.subject), spec.wire()


def sealed_history(count: int = 5) -> list[Named]:
    """``count`` records sealed one after the other from the start of the chain."""
    head = chain.Head()
    history = []
    for version in range(FIRST_VERSION, FIRST_VERSION + count):
        sealed, head = chain.seal(unsealed(version), head)
        history.append(named(sealed))
    return history


def finding(record: Named, problem: str) -> chain.Finding:
    name, spec = record
    return chain.Finding(spec["chain"]["sequence"], name, problem)


def go_number(text: str) -> int | float:
    """A JSON number as the apiserver's Go decoder keeps it: ``1.0`` comes back as ``1``."""
    number = float(text)
    return int(number) if number.is_integer() else number


def test_seal_links_each_record_to_the_one_before() -> None:
    first, first_head = chain.seal(unsealed(FIRST_VERSION), chain.Head())
    second, second_head = chain.seal(unsealed(FIRST_VERSION + 1), first_head)

    assert first.chain == model.Chain(
        sequence=1, previousHash=chain.GENESIS_HASH, hash=first_head.hash
    )
    assert second.chain == model.Chain(sequence=2, previousHash=first_head.hash,
                                       hash=second_head.hash)
    assert first_head == chain.Head(1, chain.record_hash(first.wire()))
    assert second_head == chain.Head(2, chain.record_hash(second.wire()))
    assert first_head.hash != second_head.hash


def test_seal_leaves_the_rest_of_the_record_as_it_was() -> None:
    spec = unsealed(FIRST_VERSION)

    sealed, _ = chain.seal(spec, chain.Head())

    assert sealed.model_copy(update={"chain": spec.chain}) == spec


def test_record_hash_leaves_out_the_stored_hash() -> None:
    wire = unsealed(FIRST_VERSION).wire()
    rehashed = {**wire, "chain": {**wire["chain"], "hash": "c" * 64}}

    assert chain.record_hash(rehashed) == chain.record_hash(wire)


@pytest.mark.parametrize(
    ("part", "field", "value"),
    [
        ("chain", "sequence", 4712),
        ("chain", "previousHash", "c" * 64),
        ("subject", "name", "api"),
        ("initiator", "username", "mallory@example.com"),
    ],
)
def test_record_hash_covers_everything_else(part: str, field: str, value: Any) -> None:
    wire = unsealed(FIRST_VERSION).wire()
    changed = {**wire, part: {**wire[part], field: value}}

    assert chain.record_hash(changed) != chain.record_hash(wire)


def test_canonical_json_sorts_keys_and_writes_integral_floats_as_integers() -> None:
    value = {"b": 1.0, "a": [2.0, 2.5, {"d": True, "c": None}], "é": "ü"}

    assert chain.canonical_json(value) == '{"a":[2,2.5,{"c":null,"d":true}],"b":1,"é":"ü"}'.encode()
    assert chain.canonical_json({"x": 1.0}) == chain.canonical_json({"x": 1})


def test_an_untouched_history_is_intact() -> None:
    verdict = chain.verify(sealed_history())

    assert verdict == chain.Verdict(checked=5, first_sequence=1, last_sequence=5, findings=())
    assert verdict.intact


def test_order_of_reading_does_not_matter() -> None:
    assert chain.verify(reversed(sealed_history())).intact


def test_an_altered_record_no_longer_matches_its_hash() -> None:
    history = sealed_history()
    name, spec = history[2]
    history[2] = (name, {**spec, "changes": [{"path": "spec.replicas", "old": 3, "new": 1}]})

    verdict = chain.verify(history)

    assert verdict.findings == (finding(history[2], ALTERED),)
    assert not verdict.intact


def test_a_record_removed_from_the_middle_is_named() -> None:
    history = sealed_history()
    del history[2]

    verdict = chain.verify(history)

    assert verdict.findings == (finding(history[2], "record 3 is missing (removed)"),)


def test_a_removed_range_is_named_by_its_bounds() -> None:
    history = sealed_history()
    del history[1:4]

    verdict = chain.verify(history)

    assert verdict.findings == (finding(history[1], "records 2..4 are missing (removed)"),)
    assert verdict.checked == 2


def test_a_sequence_number_used_twice_is_found() -> None:
    history = sealed_history()
    second = history[1][1]["chain"]
    intruder, _ = chain.seal(unsealed(60_000), chain.Head(2, second["hash"]))
    history.insert(3, ("intruder", intruder.wire()))

    verdict = chain.verify(history)

    assert chain.Finding(3, "intruder", "sequence number used twice") in verdict.findings
    assert not verdict.intact


def test_a_record_relinked_to_another_predecessor_is_found() -> None:
    """Re-sealing record 4 after record 2 gives it a valid hash, but breaks both its links."""
    history = sealed_history()
    second = history[1][1]["chain"]
    relinked, _ = chain.seal(unsealed(FIRST_VERSION + 3), chain.Head(3, second["hash"]))
    history[3] = named(relinked)

    verdict = chain.verify(history)

    assert verdict.findings == (finding(history[3], RELINKED), finding(history[4], RELINKED))


def test_a_full_history_must_start_at_one() -> None:
    window = sealed_history()[2:]

    verdict = chain.verify(window)

    assert verdict.findings == (finding(window[0], "records 1..2 are missing (removed)"),)


def test_records_pruned_by_retention_are_no_finding() -> None:
    verdict = chain.verify(sealed_history()[2:], pruned_through=2)

    assert verdict.intact
    assert (verdict.checked, verdict.first_sequence, verdict.last_sequence) == (3, 3, 5)
    assert verdict.pruned == 2


def test_a_gap_after_the_pruned_range_is_still_found() -> None:
    history = sealed_history()
    del history[3]

    verdict = chain.verify(history[1:], pruned_through=1)

    assert verdict.findings == (finding(history[3], "record 4 is missing (removed)"),)


def test_a_first_record_not_linked_to_genesis_is_found() -> None:
    forged, _ = chain.seal(unsealed(FIRST_VERSION), chain.Head(0, "f" * 64))
    record = named(forged)

    verdict = chain.verify([record])

    assert verdict.findings == (finding(record, RELINKED),)


def test_records_read_back_as_json_still_verify() -> None:
    history = [(name, json.loads(json.dumps(spec))) for name, spec in sealed_history()]

    assert chain.verify(history).intact


def test_integral_floats_coming_back_as_integers_still_verify() -> None:
    change = model.FieldChange(path="metadata.annotations.weight", old=1.0, new=2.5)
    sealed, _ = chain.seal(unsealed(FIRST_VERSION, changes=[change]), chain.Head())
    name, spec = named(sealed)

    stored = json.loads(json.dumps(spec), parse_float=go_number)

    assert stored["changes"][0] == {"path": "metadata.annotations.weight", "old": 1, "new": 2.5}
    assert chain.verify([(name, stored)]).intact
