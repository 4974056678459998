"""A record's spec cannot be changed once written: the CRD's CEL rule, enforced by the apiserver."""

from __future__ import annotations

import pytest

from integration.kubectl import Kubectl, KubectlError
from integration.manifests import deployment, unique
from integration.operator import apply_recorded


def test_spec_is_immutable_while_labels_still_change(kubectl: Kubectl, demo: Kubectl) -> None:
    _, record = apply_recorded(demo, deployment(unique("cel")))
    name = record["metadata"]["name"]
    with pytest.raises(KubectlError, match="spec is immutable"):
        kubectl("patch", "auditrecord", name, "--type=merge",
                "--patch", '{"spec": {"action": "deleted"}}')
    kubectl("label", "auditrecord", name, "example.com/reviewed=yes")
    after = kubectl.json("get", "auditrecord", name)
    assert after["metadata"]["labels"]["example.com/reviewed"] == "yes"
    assert after["spec"] == record["spec"]


def test_a_records_managed_fields_name_kubeledger_and_its_spec_as_one_field(
    kubectl: Kubectl, demo: Kubectl
) -> None:
    """The spec is atomic, so a record's metadata (read at every start) stays small; the
    operator names itself as the writer."""
    _, record = apply_recorded(demo, deployment(unique("owned")))
    name = record["metadata"]["name"]
    managed = kubectl.json("get", "auditrecord", name, "--show-managed-fields")
    (entry,) = managed["metadata"]["managedFields"]
    assert entry["manager"] == "kubeledger"
    assert entry["fieldsV1"]["f:spec"] == {}
    assert set(entry["fieldsV1"]) == {"f:metadata", "f:spec"}
