"""Bounding a record's size before it is sealed, so the apiserver always accepts it.

An AuditRecord lives in etcd, and etcd refuses a request over ``--max-request-bytes``
(1.5 MiB by default): a record larger than that would be refused for good, and the change
would go unrecorded. Objects can be large on purpose or by accident (annotations up to
the apiserver's 256 KiB total, a hundred containers, a ClusterRole with a thousand
rules), so every record passes through :func:`bounded` after redaction and anomaly
flagging and before ``chain.seal``: the hash covers what is stored.

What is cut is replaced in place by a marker string,
``[truncated: <bytes> bytes, sha256:<hex>]``, giving the size of what stood there and its
SHA-256 (of a string's UTF-8 text; of anything else, its compact JSON with sorted keys, as
``baselines.encode`` writes it), so anyone holding the original can check that it is the
one cut. ``spec.truncated`` lists every cut with its path and the same two figures. For a
cut snapshot, the first entry (path ``snapshot``) gives those of the whole redacted
snapshot, which is exactly the baseline the operator kept in memory: after a restart, an
object listed unchanged is recognised by that hash (``baselines.LatestRecords``), though
its record holds only the cut snapshot.

Sizes are in bytes of UTF-8 JSON, never characters: "é" counts 2, "👍" 4.

The limits, and why the total stays under etcd's 1.5 MiB (1,536 KiB):

- the snapshot, at most 320 KiB: an object's annotations alone may reach 256 KiB, and a
  snapshot of an ordinary object (even 1,000 RBAC rules, about 100 KiB) fits whole;
- each change value (``old``, ``new``), at most 128 KiB, and all of them together at most
  384 KiB (64 changes of two values could otherwise reach 16 MiB). ``diff`` already
  replaces a value over 2,048 characters by a marker of its own, so these bite only on
  many-byte characters or should that cap rise; they hold whatever ``diff`` does;
- each declared text (the initiator and repository an object declares about itself, in
  annotations anyone may write), at most 1 KiB, its start kept before the marker;
- the reasons, at most 32 KiB together (a binding of thousands of subjects lists a
  reason each);
- the rest of a spec (subject, initiator with its groups, commit, anomalies, chain, the
  ``truncated`` list itself, at most ``MAX_CUTS`` entries per part) is small: under 32 KiB.

So a spec is at most 320 + 384 + 2 + 32 + 32 = 770 KiB. The apiserver adds metadata: the
labels and ``managedFields``, whose ``fieldsV1`` lists the keys of the maps written, not
their values (lists in these free-form fields are atomic), so it is at most about the
size of the spec's keys: a few KiB usually, under 770 KiB even for a spec of nothing but
keys. The stored object stays under 1,540 KiB only in that absurd worst case; in any real
one (keys are a small fraction of the bytes) under 900 KiB, with room to spare below both
etcd's 1,536 KiB and the apiserver's 3 MiB request body limit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubeledger.core import diff
from kubeledger.core.model import FieldChange, RecordSpec, Truncation

KIB = 1024
SNAPSHOT_LIMIT = 320 * KIB
VALUE_LIMIT = 128 * KIB
CHANGES_LIMIT = 384 * KIB
DECLARED_LIMIT = 1 * KIB
REASONS_LIMIT = 32 * KIB
# Cuts listed per part at most: past this, the enclosing value is cut whole, so the list
# of cuts cannot itself grow with the object (a thousand long annotations).
MAX_CUTS = 16
# A child is fitted into what is left for it only when that is at least this much: a
# smaller remainder would keep little but a marker's worth of it.
_MIN_CHILD_BUDGET = 256


def bounded(spec: RecordSpec) -> RecordSpec:
    """``spec`` with every part within its limit, and ``truncated`` listing the cuts.

    The same spec (not a copy) when nothing is over: small records are untouched.
    """
    cuts: list[Truncation] = []
    snapshot = spec.snapshot
    if snapshot is not None and size_of(snapshot) > SNAPSHOT_LIMIT:
        whole = Truncation(path="snapshot", bytes=size_of(snapshot), sha256=digest_of(snapshot))
        part = _Fitting()
        fitted = part.fit(snapshot, SNAPSHOT_LIMIT, "snapshot")
        # The CRD wants an object here: one cut whole is left empty (``whole`` says why).
        snapshot = fitted if isinstance(fitted, dict) else {}
        cuts += [whole, *(part.cuts if isinstance(fitted, dict) else ())]
    changes = _bounded_changes(spec.changes, cuts)
    reasons = _bounded_reasons(spec.reasons, cuts)
    initiator, commit = spec.initiator, spec.commit
    if (declared := _declared(initiator.declared, "initiator.declared", cuts)) is not None:
        initiator = initiator.model_copy(update={"declared": declared})
    if (repository := _declared(commit.repository, "commit.repository", cuts)) is not None:
        commit = commit.model_copy(update={"repository": repository})
    if not cuts:
        return spec
    return spec.model_copy(update={
        "snapshot": snapshot, "changes": changes, "reasons": reasons,
        "initiator": initiator, "commit": commit, "truncated": cuts})


def marker(value: Any) -> str:
    """What stands in for a cut ``value``: its size and hash."""
    return f"[truncated: {size_of(value)} bytes, sha256:{digest_of(value)}]"


def size_of(value: Any) -> int:
    """Bytes of ``value``: a string's UTF-8 text, anything else's compact JSON."""
    return len(_bytes(value))


def digest_of(value: Any) -> str:
    return hashlib.sha256(_bytes(value)).hexdigest()


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _json_size(value: Any) -> int:
    """Bytes ``value`` takes inside the JSON of its container (a string with its quotes)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass
class _Fitting:
    """Cuts within one part of a record, largest first, keeping the structure around them."""

    cuts: list[Truncation] = field(default_factory=list)

    def fit(self, value: Any, budget: int, path: str) -> Any:
        """``value`` cut down to at most ``budget`` bytes of JSON (or a marker)."""
        if _json_size(value) <= budget:
            return value
        if isinstance(value, dict | list):
            return self._fit_items(value, budget, path)
        return self.cut(value, path)

    def _fit_items(self, value: dict[str, Any] | list[Any], budget: int, path: str) -> Any:
        """Fits a mapping's or list's children in, the largest first, recursing into each."""
        kept: Any
        if isinstance(value, dict):
            keys: list[Any] = list(value)
            kept = dict(value)

            def path_of(key: Any) -> str:
                return diff.key_path(path, key)
        else:
            keys, kept = list(range(len(value))), list(value)

            def path_of(key: Any) -> str:
                return f"{path}[{key}]"
        started = len(self.cuts)
        sizes = {key: _json_size(kept[key]) for key in keys}
        total = _json_size(value)
        for key in sorted(keys, key=lambda k: -sizes[k]):
            if total <= budget:
                break
            if len(self.cuts) >= MAX_CUTS:
                del self.cuts[started:]
                return self.cut(value, path)
            left = budget - (total - sizes[key])
            child = (self.fit(kept[key], left, path_of(key)) if left >= _MIN_CHILD_BUDGET
                     else self.cut(kept[key], path_of(key)))
            kept[key] = child
            total += _json_size(child) - sizes[key]
        if total > budget:
            del self.cuts[started:]
            return self.cut(value, path)
        return kept

    def cut(self, value: Any, path: str) -> str:
        """Replaces ``value`` whole by its marker, and lists the cut."""
        self.cuts.append(Truncation(path=path, bytes=size_of(value), sha256=digest_of(value)))
        return marker(value)


def _bounded_changes(changes: list[FieldChange], cuts: list[Truncation]) -> list[FieldChange]:
    """Each value within ``VALUE_LIMIT``, then the largest cut until all fit ``CHANGES_LIMIT``."""
    originals: dict[tuple[int, str], Any] = {}
    values: dict[tuple[int, str], Any] = {}
    part = _Fitting()
    for index, change in enumerate(changes):
        for side in ("old", "new"):
            value = getattr(change, side)
            if value is not None:
                originals[(index, side)] = value
                values[(index, side)] = part.fit(value, VALUE_LIMIT, _change_path(index, side))
    total = sum(_json_size(value) for value in values.values())
    for key in sorted(values, key=lambda k: -_json_size(values[k])):
        if total <= CHANGES_LIMIT:
            break
        before = _json_size(values[key])
        path = _change_path(*key)
        # Cut whole now: what was cut inside it is no longer listed on its own.
        part.cuts[:] = [cut for cut in part.cuts if not _inside(cut.path, path)]
        values[key] = part.cut(originals[key], path)
        total += _json_size(values[key]) - before
    cuts += part.cuts
    if not part.cuts:
        return changes
    return [change.model_copy(update={side: values[(index, side)] for side in ("old", "new")
                                      if (index, side) in values})
            for index, change in enumerate(changes)]


def _change_path(index: int, side: str) -> str:
    return f"changes[{index}].{side}"


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith((parent + ".", parent + "["))


def _bounded_reasons(reasons: list[str], cuts: list[Truncation]) -> list[str]:
    """The reasons in order while they fit ``REASONS_LIMIT``; the rest as one marker."""
    # Room for the closing marker (under 150 bytes) within the limit.
    total, kept = 256, list[str]()
    for index, reason in enumerate(reasons):
        total += _json_size(reason) + 1  # and its comma
        if total > REASONS_LIMIT:
            rest = reasons[index:]
            cuts.append(Truncation(path=f"reasons[{index}:]", bytes=size_of(rest),
                                   sha256=digest_of(rest)))
            return [*kept, f"{len(rest)} more reasons {marker(rest)}"]
        kept.append(reason)
    return reasons


def _declared(text: str | None, path: str, cuts: list[Truncation]) -> str | None:
    """A declared text cut to ``DECLARED_LIMIT`` bytes (its start, then the marker); None
    when it needs no cut."""
    if text is None or size_of(text) <= DECLARED_LIMIT:
        return None
    tail = " " + marker(text)
    start = text.encode()[:DECLARED_LIMIT - len(tail.encode())].decode(errors="ignore")
    cuts.append(Truncation(path=path, bytes=size_of(text), sha256=digest_of(text)))
    return start + tail
