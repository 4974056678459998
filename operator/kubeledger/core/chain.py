"""The tamper-evident hash chain over records: sealing a record and verifying a sequence.

Each record carries a sequence number, the hash of the record before it, and its own
hash: SHA-256 over the canonical JSON of its spec without ``chain.hash``. Removing,
altering or reordering a record breaks a link that ``verify`` reports. Pure functions;
the ledger decides the order, the sinks store the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeledger.core.model import Chain, RecordSpec

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Head:
    """The last record in the chain: the next one gets ``sequence + 1`` and links to ``hash``."""

    sequence: int = 0
    hash: str = GENESIS_HASH


def seal(spec: RecordSpec, head: Head, *, lost: Iterable[int] = ()) -> tuple[RecordSpec, Head]:
    """The spec linked as the record after ``head``, and the head it becomes once written.

    ``lost``: earlier sequence numbers this record declares will never hold a record.
    """
    sequence = head.sequence + 1
    link = Chain(sequence=sequence, previousHash=head.hash, lost=sorted(lost) or None)
    digest = record_hash(spec.model_copy(update={"chain": link}).wire())
    sealed = spec.model_copy(update={"chain": link.model_copy(update={"hash": digest})})
    return sealed, Head(sequence, digest)


def record_hash(spec_wire: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical spec with ``chain.hash`` left out."""
    chain = {k: v for k, v in spec_wire.get("chain", {}).items() if k != "hash"}
    body = {**spec_wire, "chain": chain}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, integral floats as integers.

    The apiserver stores free-form values through Go's JSON decoder, which turns ``1.0``
    into ``1``; normalising here keeps a record's hash stable across that round trip.
    """
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value


@dataclass(frozen=True)
class Finding:
    """One break in the chain: which record, and what is wrong with it."""

    sequence: int
    name: str
    problem: str


@dataclass(frozen=True)
class Verdict:
    checked: int
    first_sequence: int | None
    last_sequence: int | None
    findings: tuple[Finding, ...]
    # Sequence numbers absent because retention pruned them (through ``pruned_through``).
    pruned: int = 0
    # Sequence numbers absent because a later record declared them lost (``Chain.lost``).
    lost: tuple[int, ...] = ()

    @property
    def intact(self) -> bool:
        return not self.findings


def verify(records: Iterable[tuple[str, Mapping[str, Any]]], *,
           pruned_through: int = 0) -> Verdict:
    """Checks ``(name, spec)`` pairs: every hash, every link, no gaps, no duplicates.

    Records up to ``pruned_through`` may be absent: the operator removes delivered records
    after the retention, and says how far it went before removing any. So may records a
    later record declares lost (``Chain.lost``): sealed, but never written. A record after
    a lost one links to it, whose hash nobody has: that link is not checked. Every other
    absence, from sequence 1 on, is a finding. A full history (Elasticsearch's) is
    checked with ``pruned_through=0``.
    """
    chained = sorted(
        ((spec["chain"]["sequence"], name, spec) for name, spec in records if "chain" in spec),
        key=lambda item: item[0],
    )
    declared = {lost for _, _, spec in chained for lost in spec["chain"].get("lost") or ()}
    findings: list[Finding] = []
    pruned = 0
    lost: set[int] = set()
    previous: tuple[int, str] = (0, GENESIS_HASH)
    for sequence, name, spec in chained:
        link = spec["chain"]
        if record_hash(spec) != link.get("hash"):
            findings.append(Finding(sequence, name, "content does not match its hash (altered)"))
        missing = range(previous[0] + 1, sequence)
        if missing and missing[-1] <= pruned_through:
            pruned += len(missing)  # removed by retention after delivery: nothing to link
        elif missing and set(missing) <= declared:
            lost.update(missing)  # sealed, never written, and said so by a later record
        else:
            findings.extend(_link_findings(previous, sequence, name, link["previousHash"]))
        previous = (sequence, link.get("hash", ""))
    return Verdict(
        checked=len(chained),
        first_sequence=chained[0][0] if chained else None,
        last_sequence=chained[-1][0] if chained else None,
        findings=tuple(findings),
        pruned=pruned,
        lost=tuple(sorted(lost)),
    )


def _link_findings(
    previous: tuple[int, str], sequence: int, name: str, previous_hash: str,
) -> list[Finding]:
    last_sequence, last_hash = previous
    if sequence == last_sequence:
        return [Finding(sequence, name, "sequence number used twice")]
    if sequence != last_sequence + 1:
        gap = (f"record {last_sequence + 1} is" if sequence == last_sequence + 2
               else f"records {last_sequence + 1}..{sequence - 1} are")
        return [Finding(sequence, name, f"{gap} missing (removed)")]
    if previous_hash != last_hash:
        return [Finding(sequence, name, "does not link to the record before it (altered or "
                                        "reordered)")]
    return []


@dataclass(frozen=True)
class Comparison:
    """How two copies of one trail (the cluster's, Elasticsearch's) compare."""

    findings: tuple[Finding, ...]
    # The cluster's newest records, not in the copy yet: on their way, not missing.
    undelivered: int


def compare(cluster: Mapping[int, tuple[str, str]], copy: Mapping[int, tuple[str, str]], *,
            pruned_through: int = 0) -> Comparison:
    """Checks the cluster's records against a copy, both ``sequence -> (name, hash)``.

    Each copy may be intact on its own while the two disagree: a chain rebuilt from
    scratch in the cluster, or the newest records removed from it, is found only here.
    Records up to ``pruned_through`` are only in the copy, by design.
    """
    findings: list[Finding] = []
    copy_head = max(copy, default=0)
    undelivered = 0
    for sequence, (name, digest) in sorted(cluster.items()):
        if sequence in copy:
            if copy[sequence][1] != digest:
                findings.append(Finding(sequence, name, "differs from Elasticsearch's copy "
                                                        "(one of the two was rewritten)"))
        elif sequence < copy_head:
            findings.append(Finding(sequence, name, "is missing from Elasticsearch, which "
                                                    "holds later records (removed there)"))
        else:
            undelivered += 1
    cluster_head = max(cluster, default=pruned_through)
    findings.extend(
        Finding(sequence, name, "is in Elasticsearch beyond the cluster's last record (the "
                                "cluster's newest records were removed)")
        for sequence, (name, _) in sorted(copy.items()) if sequence > cluster_head)
    return Comparison(tuple(sorted(findings, key=lambda finding: finding.sequence)),
                      undelivered)
