"""Checkpoints of the chain in Elasticsearch: written by the operator, signed with its key,
and what catches a cluster chain rebuilt from scratch, consistent on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from kubernetes import client, config

from integration.kubectl import Kubectl, eventually
from integration.manifests import deployment, unique
from integration.operator import Operator, apply_recorded, verify_chain
from kubeledger.core import chain, model
from stack.cluster import Endpoints

# Small enough that each kubectl call stays well inside its timeout.
RESTORE_PAGE = 200


def _checkpointed_through(es: Elasticsearch, sequence: int) -> int | None:
    """The sequence of a checkpoint at or past ``sequence``, once there is one."""
    es.indices.refresh(index="kubeledger-*", allow_no_indices=True)
    found = es.search(index="kubeledger-*", size=1, allow_no_indices=True, query={
        "bool": {"filter": [{"term": {"event.dataset": "kubeledger.checkpoint"}},
                            {"range": {"kubeledger.checkpoint.sequence": {"gte": sequence}}}]}},
        sort=[{"kubeledger.checkpoint.sequence": "desc"}])["hits"]["hits"]
    return found[0]["_source"]["kubeledger"]["checkpoint"]["sequence"] if found else None


def _recorded_and_checkpointed(demo: Kubectl, es: Elasticsearch) -> int:
    """Makes a change, waits until a checkpoint covers its record; that checkpoint's sequence."""
    _, record = apply_recorded(demo, deployment(unique("anchored"), replicas=0))
    sequence = record["spec"]["chain"]["sequence"]
    return eventually(lambda: _checkpointed_through(es, sequence), timeout=60,
                      what=f"a checkpoint of sequence {sequence} or later")


def test_the_operator_signs_checkpoints_and_verify_holds_the_chain_against_them(
    stack: Endpoints, demo: Kubectl, operator: Operator, elasticsearch: Elasticsearch,
    tmp_path: Path,
) -> None:
    _recorded_and_checkpointed(demo, elasticsearch)

    signed = verify_chain(stack, "--checkpoint-key", str(stack.checkpoint_key_file))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert "checked the cluster's chain against" in signed.stdout
    assert "signatures checked): they agree" in signed.stdout

    other_key = tmp_path / "other.key"
    other_key.write_text("0" * 64)
    forged = verify_chain(stack, "--checkpoint-key", str(other_key))
    assert forged.returncode == 1
    assert "is not signed with the given key (forged, or signed with another key)" in (
        forged.stdout)
    # The key is never printed.
    assert stack.checkpoint_key_file.read_text().strip() not in signed.stdout + forged.stdout


def _kept(record: dict[str, Any]) -> dict[str, Any]:
    """What re-creates a record as it was: its name, labels and spec."""
    return {"apiVersion": record["apiVersion"], "kind": record["kind"], "spec": record["spec"],
            "metadata": {"name": record["metadata"]["name"],
                         "labels": record["metadata"].get("labels", {})}}


def _delete_every_record(stack: Endpoints, kubectl: Kubectl) -> None:
    """One deletecollection, as an attacker would (``kubectl delete --all`` deletes one
    record per request: minutes for a suite's thousands)."""
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(stack.kubeconfig), context="admin")
    try:
        client.CustomObjectsApi(api).delete_collection_cluster_custom_object(
            model.GROUP, model.VERSION, model.PLURAL, _request_timeout=120)
    finally:
        api.close()
    eventually(lambda: not kubectl.json("get", "auditrecords")["items"], timeout=120,
               what="every record deleted")


def _create(kubectl: Kubectl, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), RESTORE_PAGE):
        page = {"apiVersion": "v1", "kind": "List", "items": items[start:start + RESTORE_PAGE]}
        kubectl("create", "-f", "-", stdin=json.dumps(page))


def _forged_chain(template: dict[str, Any], length: int) -> list[dict[str, Any]]:
    """A new chain from sequence 1, consistent on its own: what a cluster-admin could seal."""
    head, forged = chain.Head(), []
    for index in range(1, length + 1):
        spec = model.RecordSpec.model_validate({**template["spec"], "chain": None})
        sealed, head = chain.seal(spec, head)
        forged.append({"apiVersion": template["apiVersion"], "kind": template["kind"],
                       "metadata": {"name": f"forged-{unique('chain')}-{index}"},
                       "spec": sealed.wire()})
    return forged


def test_a_cluster_chain_rebuilt_from_scratch_is_caught_against_the_checkpoints(
    stack: Endpoints, kubectl: Kubectl, demo: Kubectl, operator: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    checkpointed = _recorded_and_checkpointed(demo, elasticsearch)
    operator.stop()  # nothing writes while the trail is rebuilt
    originals = kubectl.json("get", "auditrecords")["items"]
    try:
        _delete_every_record(stack, kubectl)
        _create(kubectl, _forged_chain(originals[0], 3))

        rebuilt = verify_chain(stack)

        assert rebuilt.returncode == 1, rebuilt.stdout + rebuilt.stderr
        # Consistent on its own...
        assert "checked 3 records (sequence 1..3): intact" in rebuilt.stdout
        # ...but not with what Elasticsearch was told before.
        assert any(line.startswith(f"BROKEN  #{checkpointed} ")
                   and "vouches for this record, but the chain ends at 3" in line
                   for line in rebuilt.stdout.splitlines()), rebuilt.stdout
    finally:
        _delete_every_record(stack, kubectl)
        _create(kubectl, [_kept(record) for record in originals])
        operator.start()
    restored = verify_chain(stack)
    assert restored.returncode == 0, restored.stdout + restored.stderr
