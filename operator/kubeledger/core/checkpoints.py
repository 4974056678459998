"""Checkpoints of the chain: its head, written where the cluster cannot rewrite it.

Whoever controls the cluster can delete every record and seal a new chain that is
consistent on its own: ``chain.verify`` cannot tell. A checkpoint says "at this time the
chain's record ``sequence`` was ``record`` with hash ``hash``", and the operator keeps
writing them to Elasticsearch under create-only credentials, where nobody holding the
cluster can remove or change one. ``check`` holds a chain against the checkpoints: a
rebuilt or shortened chain disagrees with them.

A checkpoint may also carry a signature, an HMAC-SHA256 with a key that need not be
anywhere but the operator's Secret and the auditor's desk: with it, a checkpoint forged
by someone who has only the Elasticsearch credentials is told apart from a real one.
Pure functions; the shipper writes checkpoints and ``kubeledger verify`` reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from kubeledger.core.chain import Finding, canonical_json

# A shorter HMAC key is as weak as its length; 32 bytes match SHA-256's strength.
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class Checkpoint:
    """The chain of ``cluster`` ended at ``sequence`` (record ``record``, ``hash``) at ``time``."""

    cluster: str
    sequence: int
    hash: str
    record: str
    time: datetime
    signature: str | None = None

    def signed(self, key: bytes) -> Checkpoint:
        return dataclasses.replace(self, signature=signature(self, key))

    def signed_by(self, key: bytes) -> bool:
        return self.signature is not None and hmac.compare_digest(self.signature,
                                                                  signature(self, key))


def signature(checkpoint: Checkpoint, key: bytes) -> str:
    """HMAC-SHA256 over the canonical JSON of everything the checkpoint says."""
    said = {"cluster": checkpoint.cluster, "sequence": checkpoint.sequence,
            "hash": checkpoint.hash, "record": checkpoint.record,
            "time": checkpoint.time.isoformat()}
    return hmac.new(key, canonical_json(said), hashlib.sha256).hexdigest()


def key_problem(key: bytes) -> str | None:
    """Why ``key`` cannot sign checkpoints, or None when it can."""
    if len(key) < MIN_KEY_BYTES:
        return (f"holds {len(key)} bytes; a checkpoint key needs at least "
                f"{MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
    return None


@dataclass(frozen=True)
class Check:
    """How a chain agrees with the checkpoints."""

    findings: tuple[Finding, ...]
    # Checkpoints whose record the chain holds with the same hash.
    matched: int
    # Checkpoints of records that retention has removed from the chain since.
    before_retention: int
    # Checkpoints whose signature the given key does not make (each also a finding).
    untrusted: int


def check(links: Mapping[int, tuple[str, str]], checkpoints: Iterable[Checkpoint], *,
          pruned_through: int = 0, key: bytes | None = None) -> Check:
    """Holds a chain, ``sequence -> (record name, hash)``, against the checkpoints.

    Every checkpoint past the chain's last record is a finding, whatever else is wrong:
    the chain once went further, so records were removed from its end or it was sealed
    again from scratch. With ``key``, a checkpoint it did not sign vouches for nothing.
    """
    findings: list[Finding] = []
    matched = before_retention = untrusted = 0
    head = max(links, default=pruned_through)
    vouched: dict[int, Checkpoint] = {}
    for point in sorted(checkpoints, key=lambda each: (each.sequence, each.time)):
        when = point.time.isoformat()
        if key is not None and not point.signed_by(key):
            untrusted += 1
            findings.append(Finding(point.sequence, point.record,
                                    f"the checkpoint of {when} is not signed with the given "
                                    "key (forged, or signed with another key)"))
            continue
        earlier = vouched.setdefault(point.sequence, point)
        if earlier.hash != point.hash:
            findings.append(Finding(point.sequence, point.record,
                                    f"two checkpoints disagree about this record ("
                                    f"{earlier.time.isoformat()} and {when})"))
        if point.sequence > head:
            findings.append(Finding(point.sequence, point.record,
                                    f"a checkpoint of {when} vouches for this record, but the "
                                    f"chain ends at {head} (records removed from its end, or "
                                    "the chain rebuilt)"))
        elif point.sequence in links:
            name, digest = links[point.sequence]
            if digest == point.hash:
                matched += 1
            else:
                findings.append(Finding(point.sequence, name,
                                        f"differs from the checkpoint of {when} (the chain "
                                        "was rewritten)"))
        elif point.sequence <= pruned_through:
            before_retention += 1
        else:
            findings.append(Finding(point.sequence, point.record,
                                    f"is missing, though the checkpoint of {when} vouches "
                                    "for it (removed)"))
    return Check(tuple(sorted(findings, key=lambda finding: finding.sequence)), matched,
                 before_retention, untrusted)
