"""Changes to kubeledger's own protection: weakening it is critical, and says what it took.

Bodies are shaped as the chart renders them (``helm/kubeledger/templates/protection.yaml``,
``rbac.yaml``) and the CRD as ``crds/auditrecords.yaml`` ships it; each is projected as
the operator projects it before classifying.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubeledger.core import classify, model, projection
from kubeledger.core.classify import protection
from kubeledger.kube import crd
from unit import objects

Action = model.Action
Severity = model.Severity
Body = dict[str, Any]

GUARD_LABELS = {"app.kubernetes.io/name": "kubeledger", protection.PROTECTION_LABEL: "true"}
OWN_PERMISSIONS = "changes kubeledger's own permissions"


def policy(*, labels: dict[str, str] | None = None) -> Body:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "kubeledger-protect-records", "uid": "p-1",
                     "resourceVersion": "7", "generation": 1,
                     "labels": dict(GUARD_LABELS if labels is None else labels)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["kubeledger.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["auditrecords"]}]},
            "variables": [{"name": "breakGlass",
                           "expression": "[].exists(g, g in request.userInfo.groups)"}],
            "validations": [{"expression": "request.operation != 'DELETE' || "
                                           "variables.breakGlass", "reason": "Forbidden"}],
        },
        "status": {"observedGeneration": 1},
    }


def binding(*, labels: dict[str, str] | None = None) -> Body:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "kubeledger-protect-records", "uid": "b-1", "resourceVersion": "8",
                     "labels": dict(GUARD_LABELS if labels is None else labels)},
        "spec": {"policyName": "kubeledger-protect-records", "validationActions": ["Deny"]},
    }


def records_crd() -> Body:
    body = crd.manifest()
    body["metadata"].update(uid="c-1", resourceVersion="9")
    return body


def own_role() -> Body:
    role = objects.cluster_role([objects.rule(["get", "list", "watch"], ["deployments"],
                                              api_groups=["apps"])], name="kubeledger")
    role["metadata"]["labels"] = dict(GUARD_LABELS)
    return role


def own_binding() -> Body:
    bound = objects.cluster_role_binding(
        [objects.service_account("kubeledger", "kubeledger")], role_name="kubeledger",
        name="kubeledger")
    bound["metadata"]["labels"] = dict(GUARD_LABELS)
    return bound


def classified(old: Body | None, new: Body | None) -> classify.Classification:
    body = new or old
    assert body is not None
    result = classify.classify(
        body["kind"], projection.project(old) if old is not None else None,
        projection.project(new) if new is not None else None,
        classify.Context(name=body["metadata"]["name"]))
    assert result is not None
    return result


def changed(body: Body, change: Any) -> Body:
    new = copy.deepcopy(body)
    change(new)
    return new


# Removing the guard


@pytest.mark.parametrize(("body", "reason"), [
    (policy(), "deletes the ValidatingAdmissionPolicy that protects the records"),
    (binding(), "deletes the binding of the records' ValidatingAdmissionPolicy: the policy is "
                "no longer enforced"),
    (records_crd(), "deletes the AuditRecord CRD: every record in the cluster goes with it"),
    (own_role(), "deletes kubeledger's own ClusterRole"),
    (own_binding(), "deletes kubeledger's own ClusterRoleBinding"),
], ids=["policy", "binding", "crd", "cluster-role", "cluster-role-binding"])
def test_deleting_any_part_of_the_guard_is_critical(body: Body, reason: str) -> None:
    result = classified(body, None)

    assert (result.action, result.severity) == (Action.DELETED, Severity.CRITICAL)
    assert result.reasons[0].startswith(reason)


def test_removing_the_protection_label_is_critical() -> None:
    result = classified(policy(), policy(labels={"app.kubernetes.io/name": "kubeledger"}))

    assert result.severity is Severity.CRITICAL
    assert result.reasons[0] == (
        "removes the kubeledger.io/protection label: the object is no longer known as part "
        "of kubeledger's protection")


# Weakening the policy, its binding, the CRD


@pytest.mark.parametrize(("change", "reason"), [
    (lambda body: body["spec"].update(failurePolicy="Ignore"),
     "weakens the records' admission policy: spec.failurePolicy changed"),
    (lambda body: body["spec"].pop("failurePolicy"),
     "weakens the records' admission policy: spec.failurePolicy removed"),
    (lambda body: body["spec"].pop("validations"),
     "weakens the records' admission policy: spec.validations removed"),
    (lambda body: body["spec"]["validations"][0].update(expression="true"),
     "weakens the records' admission policy: spec.validations changed"),
    (lambda body: body["spec"]["matchConstraints"]["resourceRules"][0].update(
        operations=["CREATE"]),
     "weakens the records' admission policy: spec.matchConstraints changed"),
    (lambda body: body["spec"]["variables"][0].update(expression="true"),
     "weakens the records' admission policy: spec.variables changed"),
], ids=["failure-policy", "no-failure-policy", "no-validations", "validation", "match",
        "break-glass"])
def test_a_policy_whose_rules_change_is_critical(change: Any, reason: str) -> None:
    result = classified(policy(), changed(policy(), change))

    assert (result.action, result.severity) == (Action.CONFIG_CHANGED, Severity.CRITICAL)
    assert result.reasons[0] == reason


def test_a_binding_that_stops_denying_is_critical() -> None:
    result = classified(binding(), changed(
        binding(), lambda body: body["spec"].update(validationActions=["Audit"])))

    assert result.severity is Severity.CRITICAL
    assert result.reasons[0] == (
        "the records' admission policy no longer denies: validationActions ['Deny'] -> "
        "['Audit']")


def test_a_binding_that_binds_another_policy_is_critical() -> None:
    result = classified(binding(), changed(
        binding(), lambda body: body["spec"].update(policyName="something-else")))

    assert result.severity is Severity.CRITICAL
    assert result.reasons[0] == (
        "weakens the binding of the records' admission policy: spec.policyName changed")


def test_a_crd_that_loses_its_immutability_rule_is_critical() -> None:
    def drop_rules(body: Body) -> None:
        spec = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        del spec["x-kubernetes-validations"]

    result = classified(records_crd(), changed(records_crd(), drop_rules))

    assert (result.action, result.severity) == (Action.CONFIG_CHANGED, Severity.CRITICAL)
    assert result.reasons[0] == (
        "weakens the AuditRecord CRD: validation rule 'self == oldSelf' removed")


# Other changes to the guard


def test_other_changes_to_the_guard_are_warnings_that_say_so() -> None:
    result = classified(records_crd(), changed(
        records_crd(), lambda body: body["spec"]["names"].update(shortNames=["records"])))

    assert (result.action, result.severity) == (Action.CONFIG_CHANGED, Severity.WARNING)
    assert result.reasons == ("changes part of kubeledger's protection",
                              "spec.names changed")


def test_a_new_guard_is_a_notice() -> None:
    result = classified(None, policy())

    assert (result.action, result.severity) == (Action.CREATED, Severity.NOTICE)
    assert result.reasons == ("creates part of kubeledger's protection",)


def test_a_change_to_the_operators_own_rules_says_so() -> None:
    result = classified(own_role(), changed(own_role(), lambda body: body["rules"].append(
        objects.rule(["get"], ["configmaps"]))))

    assert (result.action, result.severity) == (Action.RULES_CHANGED, Severity.WARNING)
    assert result.reasons == (OWN_PERMISSIONS, "rules changed")


def test_an_escalation_of_the_operators_own_rules_stays_critical() -> None:
    result = classified(own_role(), changed(own_role(), lambda body: body["rules"].append(
        objects.rule(["get"], ["secrets"]))))

    assert (result.action, result.severity) == (Action.RULES_CHANGED, Severity.CRITICAL)
    assert result.reasons == (OWN_PERMISSIONS, "grants access to secrets (get secrets)")


def test_a_new_subject_of_the_operators_own_binding_says_so() -> None:
    result = classified(own_binding(), changed(
        own_binding(), lambda body: body["subjects"].append(objects.user("mallory"))))

    assert (result.action, result.severity) == (Action.SUBJECTS_CHANGED, Severity.WARNING)
    assert result.reasons == (OWN_PERMISSIONS,
                              "grants ClusterRole kubeledger to User mallory "
                              "(its rules are unknown)")


# What is not kubeledger's


def test_another_admission_policy_is_recorded_as_any_object() -> None:
    theirs = policy(labels={"team": "platform"})

    assert classified(theirs, None) == classify.Classification(Action.DELETED, Severity.WARNING)
    weakened = classified(theirs, changed(
        theirs, lambda body: body["spec"].update(failurePolicy="Ignore")))
    assert (weakened.action, weakened.severity, weakened.reasons) == (
        Action.CONFIG_CHANGED, Severity.NOTICE, ("spec.failurePolicy changed",))


def test_an_unlabelled_cluster_role_is_classified_as_rbac_alone() -> None:
    role = objects.cluster_role([objects.rule(["get"], ["pods"])])

    assert classified(role, None) == classify.Classification(Action.DELETED, Severity.WARNING)


# A deleted record


def test_a_deleted_record_is_critical_and_named_with_its_sequence() -> None:
    record = {"apiVersion": "kubeledger.io/v1alpha1", "kind": "AuditRecord",
              "metadata": {"name": "deployment-u1-42", "uid": "r-1", "resourceVersion": "50"},
              "spec": {"action": "created", "chain": {"sequence": 17, "hash": "ab"}}}

    result = classified(record, None)

    assert (result.action, result.severity) == (Action.DELETED, Severity.CRITICAL)
    assert result.reasons == (
        "AuditRecord deployment-u1-42 (sequence 17) deleted outside retention "
        "(break-glass, or without the guard)",)
