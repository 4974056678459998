"""Finding the head of the chain among the records that exist at start-up."""

from __future__ import annotations

from typing import Any

from kubeledger.core import chain, model
from kubeledger.recording import ledger
from unit import records


def chained(sequence: int) -> dict[str, Any]:
    link = model.Chain(sequence=sequence, previousHash="a" * 64, hash=f"{sequence:064x}")
    return records.full_spec_with(chain=link).wire()


def test_the_highest_sequence_is_the_head_whatever_the_order() -> None:
    specs = [chained(3), chained(9), chained(1), records.full_spec_with(chain=None).wire()]

    assert ledger.head_of(specs) == chain.Head(9, f"{9:064x}")


def test_no_records_means_the_start_of_the_chain() -> None:
    head = ledger.head_of([])

    assert head == chain.Head(0, chain.GENESIS_HASH)
    assert chain.seal(records.full_spec(), head)[1].sequence == 1
