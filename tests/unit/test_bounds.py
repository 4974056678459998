"""A record is cut to what the apiserver accepts, each cut marked, sized and hashed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubeledger.core import baselines, bounds, chain, model
from unit import records

KIB = 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _spec(**fields: Any) -> model.RecordSpec:
    return records.full_spec_with(chain=None, truncated=None, **fields)


def _huge_snapshot() -> dict[str, Any]:
    """Annotations near the apiserver's 256 KiB total, and a hundred containers."""
    annotations = {f"example.com/notes-{n}": "n" * (60 * KIB) for n in range(4)}
    annotations["example.com/team"] = "payments"
    containers = [{"name": f"c{n}", "image": f"registry.example/app:{n}",
                   "env": [{"name": f"VAR_{k}", "value": "v" * 40} for k in range(20)]}
                  for n in range(100)]
    return {"metadata": {"annotations": annotations},
            "spec": {"replicas": 0, "template": {"spec": {"containers": containers}}}}


def test_a_small_record_is_left_as_it_is() -> None:
    spec = _spec()

    assert bounds.bounded(spec) is spec
    assert "truncated" not in spec.wire()


def test_a_huge_snapshot_is_cut_below_its_limit_keeping_its_structure() -> None:
    snapshot = _huge_snapshot()
    assert bounds.size_of(snapshot) > bounds.SNAPSHOT_LIMIT

    cut = bounds.bounded(_spec(snapshot=snapshot))

    assert cut.snapshot is not None
    assert bounds.size_of(cut.snapshot) <= bounds.SNAPSHOT_LIMIT
    annotations = cut.snapshot["metadata"]["annotations"]
    assert annotations["example.com/team"] == "payments"  # the small ones stay readable
    assert cut.snapshot["spec"]["template"]["spec"]["containers"] == (
        snapshot["spec"]["template"]["spec"]["containers"])
    assert cut.truncated is not None
    whole, *parts = cut.truncated
    assert whole == model.Truncation(path="snapshot", bytes=len(_compact(snapshot)),
                                     sha256=_sha(_compact(snapshot)))
    assert parts
    for part in parts:
        key = json.loads(part.path.removeprefix("snapshot.metadata.annotations[")[:-1])
        original = snapshot["metadata"]["annotations"][key]
        assert part.bytes == len(original.encode()) == 60 * KIB
        assert part.sha256 == _sha(original.encode())
        assert annotations[key] == f"[truncated: {60 * KIB} bytes, sha256:{part.sha256}]"


def test_the_whole_snapshot_hash_is_that_of_the_baseline_the_operator_keeps() -> None:
    snapshot = _huge_snapshot()
    cut = bounds.bounded(_spec(snapshot=snapshot))

    assert cut.truncated is not None
    assert cut.truncated[0].sha256 == _sha(baselines.encode(snapshot))


def test_a_change_value_over_its_limit_is_replaced_by_a_marker() -> None:
    big = "x" * (bounds.VALUE_LIMIT + 1)
    change = model.FieldChange(path='metadata.annotations["a"]', old="short", new=big)

    cut = bounds.bounded(_spec(changes=[change]))

    (bounded_change,) = cut.changes
    assert bounded_change.old == "short"
    assert bounded_change.new == (
        f"[truncated: {len(big)} bytes, sha256:{_sha(big.encode())}]")
    assert cut.truncated == [model.Truncation(path="changes[0].new", bytes=len(big),
                                              sha256=_sha(big.encode()))]


def test_changes_together_stay_under_their_limit() -> None:
    # Each value under its own limit, but 64 of them far over the total.
    value = {"blob": "y" * (100 * KIB)}
    changes = [model.FieldChange(path=f"spec.f{n}", old=value, new=value) for n in range(8)]

    cut = bounds.bounded(_spec(changes=changes))

    total = sum(len(_compact(side)) for change in cut.changes for side in (change.old, change.new))
    assert total <= bounds.CHANGES_LIMIT
    assert cut.truncated is not None
    assert all(entry.bytes == len(_compact(value)) and entry.sha256 == _sha(_compact(value))
               for entry in cut.truncated)
    kept = [side for change in cut.changes for side in (change.old, change.new) if side == value]
    assert len(kept) == 16 - len(cut.truncated) >= 1  # the rest are whole, not all cut


def test_a_declared_text_keeps_its_start_and_says_it_was_cut() -> None:
    forged = "mallory " * 1000
    initiator = records.direct_initiator().model_copy(update={"declared": forged})

    cut = bounds.bounded(_spec(initiator=initiator))

    declared = cut.initiator.declared
    assert declared is not None
    assert len(declared.encode()) <= bounds.DECLARED_LIMIT
    assert declared.startswith("mallory mallory")
    assert declared.endswith(f"[truncated: {len(forged)} bytes, sha256:{_sha(forged.encode())}]")
    assert cut.initiator.username == records.REAL_USER  # the verified identity is untouched
    assert cut.truncated == [model.Truncation(path="initiator.declared", bytes=len(forged),
                                              sha256=_sha(forged.encode()))]


def test_sizes_count_bytes_not_characters() -> None:
    # 400 characters, 1,600 bytes: over the 1 KiB limit only when counted in bytes.
    thumbs = "\N{THUMBS UP SIGN}" * 400
    assert len(thumbs) < bounds.DECLARED_LIMIT < len(thumbs.encode())
    commit = model.Commit(sha="3f2a9c1", repository=thumbs)

    cut = bounds.bounded(_spec(commit=commit))

    assert cut.commit.repository is not None
    assert len(cut.commit.repository.encode()) <= bounds.DECLARED_LIMIT
    assert cut.commit.repository.startswith("\N{THUMBS UP SIGN}")  # cut between characters
    assert cut.truncated == [model.Truncation(path="commit.repository", bytes=1600,
                                              sha256=_sha(thumbs.encode()))]


def test_unicode_below_the_limit_in_bytes_is_kept() -> None:
    accents = "é" * 500  # 1,000 bytes
    initiator = records.direct_initiator().model_copy(update={"declared": accents})

    assert bounds.bounded(_spec(initiator=initiator)).initiator.declared == accents


def test_many_reasons_are_cut_after_their_limit() -> None:
    reasons = [f"grants view to User user-{n:05d} in namespace team-{n}" for n in range(2000)]

    cut = bounds.bounded(_spec(reasons=reasons))

    assert len(_compact(cut.reasons)) <= bounds.REASONS_LIMIT
    assert cut.reasons[0] == reasons[0]
    assert cut.truncated is not None
    (entry,) = cut.truncated
    kept = len(cut.reasons) - 1
    assert entry.path == f"reasons[{kept}:]"
    assert entry.sha256 == _sha(_compact(reasons[kept:]))
    assert cut.reasons[-1].startswith(f"{2000 - kept} more reasons [truncated:")


def test_many_cut_parts_give_way_to_one_cut_of_their_whole() -> None:
    # A thousand long annotations: listing each cut would itself grow without bound.
    annotations = {f"k{n}": "z" * 400 for n in range(1000)}

    cut = bounds.bounded(_spec(snapshot={"metadata": {"annotations": annotations}}))

    assert cut.truncated is not None
    assert len(cut.truncated) <= bounds.MAX_CUTS + 1
    assert cut.snapshot is not None
    assert bounds.size_of(cut.snapshot) <= bounds.SNAPSHOT_LIMIT


def test_the_sealed_record_hashes_the_bounded_content() -> None:
    cut = bounds.bounded(_spec(snapshot=_huge_snapshot()))
    sealed, _ = chain.seal(cut, chain.Head())

    assert chain.verify([("r", sealed.wire())]).intact
    assert len(_compact(sealed.wire())) < 800 * KIB


def test_a_list_of_many_small_items_is_cut_whole() -> None:
    # Twenty thousand small rules: cutting them one at a time would list thousands of cuts.
    rules = [{"apiGroups": [""], "resources": [f"r{n}"], "verbs": ["get"]}
             for n in range(20_000)]
    snapshot = {"rules": rules, "metadata": {"labels": {"app": "web"}}}

    cut = bounds.bounded(_spec(snapshot=snapshot))

    assert cut.snapshot == {"rules": bounds.marker(rules), "metadata": {"labels": {"app": "web"}}}
    assert cut.truncated == [
        model.Truncation(path="snapshot", bytes=len(_compact(snapshot)),
                         sha256=_sha(_compact(snapshot))),
        model.Truncation(path="snapshot.rules", bytes=len(_compact(rules)),
                         sha256=_sha(_compact(rules)))]
