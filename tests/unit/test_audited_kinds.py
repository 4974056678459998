"""What is audited is said once (``core.kinds``); the chart and the test stack agree with it.

The chart's webhook rules (for the kinds a webhook can see) and the local stack's audit
policy name resources the way the apiserver matches them; a kind left out there would be
recorded without its initiator.
The chart is rendered with the real ``helm`` (see ``test_chart``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeledger.core import kinds
from kubeledger.identity import audit
from stack import cluster, helm_tool

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubeledger"
GroupResource = tuple[str, str]


def expected(resources: list[kinds.Resource]) -> set[GroupResource]:
    """Each audited resource, and its scale subresource where it has one."""
    names = {(r.group, r.plural) for r in resources}
    return names | {(r.group, f"{r.plural}/scale") for r in resources if r.scalable}


def webhook_rules(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    env = {**os.environ, **{f"HELM_{part}_HOME": str(tmp_path / part.lower())
                            for part in ("CONFIG", "CACHE", "DATA")}}
    done = subprocess.run([str(helm_tool.ensure_helm()), "template", "ledger", str(CHART),
                           "--namespace", "audit", *args],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (configuration,) = [doc for doc in yaml.safe_load_all(done.stdout)
                        if doc and doc["kind"] == "ValidatingWebhookConfiguration"]
    rules: list[dict[str, Any]] = [rule for hook in configuration["webhooks"]
                                   for rule in hook["rules"]]
    return rules


def named(rules: list[dict[str, Any]]) -> set[GroupResource]:
    return {(group, resource) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"]}


@pytest.mark.parametrize("extra", [[], list(kinds.EXTRA_WORKLOADS)])
def test_the_chart_webhook_sees_exactly_the_audited_kinds(tmp_path: Path,
                                                          extra: list[str]) -> None:
    rules = webhook_rules(tmp_path, "--set-json", f"watch.extraKinds={json.dumps(extra)}")

    assert named(rules) == expected([r for r in kinds.audited(extra) if r.webhook])
    versions = {(r.group, r.version) for r in kinds.every_audited()}
    assert {(group, version) for rule in rules for group in rule["apiGroups"]
            for version in rule["apiVersions"]} <= versions


def test_the_stack_audit_policy_covers_every_kind_that_can_be_audited() -> None:
    policy = yaml.safe_load(cluster.AUDIT_POLICY)
    writes, _deletions, nothing_else = policy["rules"]
    listed = {(entry.get("group", ""), resource) for entry in writes["resources"]
              for resource in entry["resources"]}

    every = kinds.every_audited()
    assert writes["level"] == "RequestResponse"
    assert {(r.group, r.plural) for r in every} <= listed
    assert listed <= expected(every)
    assert nothing_else == {"level": "None"}


def test_the_stack_audit_policy_logs_who_deletes_a_record() -> None:
    deletions = yaml.safe_load(cluster.AUDIT_POLICY)["rules"][1]

    assert deletions == {"level": "RequestResponse", "verbs": ["delete", "deletecollection"],
                         "resources": [{"group": kinds.RECORDS.group,
                                        "resources": [kinds.RECORDS.plural]}]}


def test_the_audit_receiver_keeps_events_of_every_kind_that_can_be_audited() -> None:
    assert {r.plural for r in kinds.every_audited()} == audit.AUDITED_RESOURCES
    assert {kinds.RECORDS.plural} == audit.AUDITED_DELETIONS


def test_the_protection_is_audited_without_a_webhook_and_the_crd_alone() -> None:
    audited = kinds.audited()

    assert set(kinds.PROTECTION) <= set(audited)
    assert not any(r.webhook for r in kinds.PROTECTION)
    assert kinds.RECORDS_CRD.field_selector == "metadata.name=auditrecords.kubeledger.io"
    assert kinds.RECORDS_CRD.audits("auditrecords.kubeledger.io")
    assert not kinds.RECORDS_CRD.audits("rollouts.argoproj.io")
    assert kinds.ADMISSION_POLICIES.audits("anything")
