"""Elasticsearch's copy of the trail, read back: each document against the record it
carries, and the two copies against each other."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kubeledger import cli
from kubeledger.cli import exits
from kubeledger.core import chain, model
from kubeledger.sinks.elasticsearch import ecs, trail
from unit import records


def sealed_chain(length: int) -> list[tuple[str, model.RecordSpec]]:
    head, sealed = chain.Head(), []
    for index in range(1, length + 1):
        spec, head = chain.seal(records.full_spec_with(chain=None), head)
        sealed.append((f"record-{index}", spec))
    return sealed


def test_an_untouched_document_gives_back_its_record() -> None:
    name, spec = sealed_chain(1)[0]

    found = trail.read(name, ecs.to_document(name, spec))

    assert found == trail.Document(name, 1, spec.wire())
    assert chain.verify([(found.name, found.spec or {})]).intact


def test_a_field_changed_in_elasticsearch_is_found_though_the_content_is_intact() -> None:
    name, spec = sealed_chain(1)[0]
    document = ecs.to_document(name, spec)
    document["user"]["name"] = "nobody"

    found = trail.read(name, document)

    assert found.problem == ("its fields differ from the record it carries (user.name: "
                             "altered in Elasticsearch)")


def test_altered_content_breaks_its_hash() -> None:
    name, spec = sealed_chain(1)[0]
    document = ecs.to_document(name, spec)
    content = json.loads(document["kubeledger"]["chain"]["content"])
    content["initiator"]["username"] = "nobody"
    forged = ecs.to_document(name, model.RecordSpec.model_validate(content))

    found = trail.read(name, forged)

    assert found.problem is None  # consistent with itself...
    verdict = chain.verify([(found.name, found.spec or {})])
    assert [finding.problem for finding in verdict.findings] == [
        "content does not match its hash (altered)"]  # ...but not with its hash


def test_a_document_without_content_cannot_be_checked() -> None:
    name, spec = sealed_chain(1)[0]
    document = ecs.to_document(name, spec)
    del document["kubeledger"]["chain"]["content"]

    assert trail.read(name, document).problem == (
        "carries no record content (delivered before documents carried it): cannot be checked")


def links_of(sealed: list[tuple[str, model.RecordSpec]]) -> dict[int, tuple[str, str]]:
    return {spec.chain.sequence: (name, spec.chain.hash) for name, spec in sealed
            if spec.chain is not None}


def test_copies_that_agree_with_the_newest_still_on_their_way() -> None:
    sealed = links_of(sealed_chain(5))
    delivered = {sequence: link for sequence, link in sealed.items() if sequence <= 3}

    compared = chain.compare(sealed, delivered)

    assert compared == chain.Comparison((), undelivered=2)


def test_a_cluster_chain_rebuilt_from_scratch_disagrees_with_the_copy() -> None:
    original = links_of(sealed_chain(3))
    # Consistent on its own (verify on the cluster says intact), but not the same chain.
    rebuilt = {sequence: (name, "f" * 64) for sequence, (name, _) in original.items()}

    compared = chain.compare(rebuilt, original)

    assert [(finding.sequence, finding.problem) for finding in compared.findings] == [
        (sequence, "differs from Elasticsearch's copy (one of the two was rewritten)")
        for sequence in (1, 2, 3)]


def test_the_newest_records_removed_from_the_cluster_or_a_copy_are_found() -> None:
    original = links_of(sealed_chain(4))
    truncated = {sequence: link for sequence, link in original.items() if sequence <= 2}
    holed = copy.deepcopy(original)
    del holed[2]

    assert [(f.sequence, f.problem) for f in chain.compare(truncated, original).findings] == [
        (3, "is in Elasticsearch beyond the cluster's last record (the cluster's newest "
            "records were removed)"),
        (4, "is in Elasticsearch beyond the cluster's last record (the cluster's newest "
            "records were removed)")]
    assert [(f.sequence, f.problem) for f in chain.compare(original, holed).findings] == [
        (2, "is missing from Elasticsearch, which holds later records (removed there)")]


def test_reading_elasticsearch_without_its_address_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.delenv("KUBELEDGER_CONFIG", raising=False)

    assert cli.main(["verify", "--source", "elasticsearch"]) == exits.USAGE
    assert capsys.readouterr().err == (
        "kubeledger: reading Elasticsearch needs its address: set ELASTICSEARCH_URL or pass "
        "--elasticsearch-url\n")


def test_a_checkpoint_key_needs_an_elasticsearch_to_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.delenv("KUBELEDGER_CONFIG", raising=False)
    key = tmp_path / "key"
    key.write_text("k" * 32)

    assert cli.main(["verify", "--checkpoint-key", str(key)]) == exits.USAGE
    assert capsys.readouterr().err == (
        "kubeledger: --checkpoint-key checks the checkpoints in Elasticsearch: set "
        "ELASTICSEARCH_URL or pass --elasticsearch-url\n")


def test_a_short_or_missing_checkpoint_key_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://127.0.0.1:9")
    short = tmp_path / "short"
    short.write_text("secret\n")

    assert cli.main(["verify", "--checkpoint-key", str(short)]) == exits.USAGE
    assert cli.main(["verify", "--checkpoint-key", str(tmp_path / "absent")]) == exits.USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"kubeledger: the checkpoint key file {short} holds 6 bytes; a checkpoint key needs "
        "at least 32 (e.g. `openssl rand -hex 32`)",
        "kubeledger: cannot read the checkpoint key: No such file or directory "
        f"({tmp_path / 'absent'})",
    ]
