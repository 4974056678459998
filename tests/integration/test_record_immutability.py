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
