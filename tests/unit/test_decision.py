"""The decision as a whole: from a watch event and a baseline to what the trail records.

One test per action of the vocabulary (README "Actions"), through ``decision.decide`` as
the recorder calls it: projected, redacted, compared, classified, diffed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from kubeledger.core import decision, kinds, model, projection
from kubeledger.core.baselines import Baseline, Baselines
from kubeledger.core.classify import workloads
from kubeledger.core.redaction import Redactor
from unit import objects, records

Action = model.Action
Severity = model.Severity
Body = dict[str, Any]

OLD_IMAGE = "registry.example.com/shop/web:1.4.1"
NEW_IMAGE = "registry.example.com/shop/web:1.4.2"
REDACTOR = Redactor(b"decision-salt")


def web(image: str = NEW_IMAGE, *, version: int = 48213, **kwargs: Any) -> Body:
    """A Deployment running ``image``, at resourceVersion ``version``."""
    template = objects.pod_template([objects.container(image=image)],
                                    annotations=kwargs.pop("template_annotations", None))
    body = objects.deployment(template=template, **kwargs)
    body["metadata"]["resourceVersion"] = str(version)
    return body


def later(body: Body, version: int = 48300) -> Body:
    body["metadata"]["resourceVersion"] = str(version)
    return body


def baseline_of(resource: kinds.Resource, body: Mapping[str, Any]) -> Baseline:
    """The baseline the recorder keeps after recording ``body``."""
    baselines = Baselines()
    subject = decision.subject_of(resource, body)
    baselines.remember(subject, REDACTOR.redact(projection.project(body)))
    found = baselines.get(subject.uid)
    assert found is not None
    return found


def decide(old: Body | None, new: Body, event_type: str | None = "MODIFIED", *,
           resource: kinds.Resource = kinds.DEPLOYMENTS,
           role_rules: Mapping[tuple[str, str, str], list[Any]] | None = None,
           ) -> decision.Decision:
    rules = role_rules or {}
    return decision.decide(
        resource, event_type, new,
        baseline=baseline_of(resource, old) if old is not None else None,
        redactor=REDACTOR,
        role_rules=lambda kind, namespace, name: rules.get((kind, namespace, name)))


def drafted(result: decision.Decision, action: Action, severity: Severity) -> decision.Draft:
    assert isinstance(result, decision.Draft), result
    assert (result.action, result.severity) == (action, severity)
    return result


# Workloads


def test_created_is_recorded_live_with_its_snapshot_as_the_next_baseline() -> None:
    body = web()

    draft = drafted(decide(None, body, "ADDED"), Action.CREATED, Severity.NOTICE)

    assert draft.live and not draft.deleted
    assert draft.name == f"deployment-{body['metadata']['uid']}-48213"
    assert draft.snapshot == REDACTOR.redact(projection.project(body))
    assert draft.encoded is not None


def test_deleted_uses_the_baseline_and_forgets_the_object() -> None:
    draft = drafted(decide(web(), later(web()), "DELETED"), Action.DELETED, Severity.WARNING)

    assert draft.deleted and draft.live
    assert draft.name.endswith("-deleted")
    assert (draft.snapshot, draft.encoded, draft.changes) == (None, None, ())


def test_deleted_without_a_baseline_is_classified_from_the_body() -> None:
    drafted(decide(None, web(), "DELETED"), Action.DELETED, Severity.WARNING)


def test_image_changed_carries_the_diff() -> None:
    draft = drafted(decide(web(OLD_IMAGE), later(web(NEW_IMAGE))), Action.IMAGE_CHANGED,
                    Severity.NOTICE)

    assert [(c.path, c.old, c.new) for c in draft.changes] == [
        ("spec.template.spec.containers[name=web].image", OLD_IMAGE, NEW_IMAGE)]
    assert draft.name.endswith("-48300")


def test_scaled() -> None:
    new = later(web(replicas=5, status=objects.deployment_status(replicas=5, updated=5)))

    drafted(decide(web(replicas=3), new), Action.SCALED, Severity.INFO)


def test_config_changed() -> None:
    drafted(decide(web(), later(web(labels={"tier": "frontend"}))), Action.CONFIG_CHANGED,
            Severity.NOTICE)


def test_rollout_restarted() -> None:
    restarted = {workloads.RESTARTED_AT_ANNOTATION: "2025-11-20T10:15:00Z"}

    drafted(decide(web(), later(web(template_annotations=restarted))),
            Action.ROLLOUT_RESTARTED, Severity.NOTICE)


def recorded(*bodies: Body) -> Baseline:
    """The baseline once each of ``bodies`` was recorded in turn, as the recorder keeps it."""
    baselines = Baselines()
    for body in bodies:
        subject = decision.subject_of(kinds.DEPLOYMENTS, body)
        draft = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", body,
                                baseline=baselines.get(subject.uid), redactor=REDACTOR)
        assert isinstance(draft, decision.Draft) and draft.encoded is not None, draft
        baselines.remember_encoded(subject, draft.encoded, draft.fingerprint, draft.templates)
    found = baselines.get(decision.subject_of(kinds.DEPLOYMENTS, bodies[-1]).uid)
    assert found is not None
    return found


def test_rolled_back_when_the_template_is_one_recorded_before() -> None:
    baseline = recorded(web(OLD_IMAGE), later(web(NEW_IMAGE)))

    result = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", later(web(OLD_IMAGE), 48400),
                             baseline=baseline, redactor=REDACTOR)

    drafted(result, Action.ROLLED_BACK, Severity.WARNING)


def test_a_rollback_to_a_template_with_a_redacted_value_is_recognised() -> None:
    # A record holds the redacted template: the history is compared redacted on both sides.
    def with_password(image: str) -> Body:
        body = web(image)
        body["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "DB_PASSWORD", "value": "hunter2-rollback"}]
        return body

    baseline = recorded(with_password(OLD_IMAGE), later(with_password(NEW_IMAGE)))

    result = decision.decide(kinds.DEPLOYMENTS, "MODIFIED",
                             later(with_password(OLD_IMAGE), 48400),
                             baseline=baseline, redactor=REDACTOR)

    assert b"hunter2-rollback" not in baseline.encoded
    drafted(result, Action.ROLLED_BACK, Severity.WARNING)


def test_a_change_seen_after_the_fact_can_be_a_rollback_too() -> None:
    baseline = recorded(web(OLD_IMAGE), later(web(NEW_IMAGE)))

    result = decision.decide(kinds.DEPLOYMENTS, None, later(web(OLD_IMAGE), 48400),
                             baseline=baseline, redactor=REDACTOR)

    draft = drafted(result, Action.CHANGED_WHILE_UNOBSERVED, Severity.WARNING)
    assert draft.reasons[0] == "seen after the fact; the change looks like rolled-back"


@pytest.mark.parametrize(("was", "now", "action"),
                         [(None, True, Action.PAUSED), (True, False, Action.RESUMED)])
def test_paused_and_resumed(was: bool | None, now: bool, action: Action) -> None:
    drafted(decide(web(paused=was), later(web(paused=now))), action, Severity.NOTICE)


def test_rollout_completed() -> None:
    progressing = web(status=objects.deployment_status(updated=3, available=1))

    drafted(decide(progressing, later(web())), Action.ROLLOUT_COMPLETED, Severity.INFO)


def test_rollout_failed() -> None:
    old = web(status=objects.deployment_status(updated=1))
    new = later(web(status=objects.deployment_status(updated=1, deadline_exceeded=True)))

    drafted(decide(old, new), Action.ROLLOUT_FAILED, Severity.WARNING)


def test_status_churn_is_unchanged() -> None:
    new = later(web())
    new["status"]["conditions"][0]["lastUpdateTime"] = "2025-11-20T10:00:00Z"

    assert isinstance(decide(web(), new), decision.Unchanged)


def seen_live(body: Body) -> Baseline:
    """The baseline after a watch event showed ``body``: it carries the fingerprint."""
    found = baseline_of(kinds.DEPLOYMENTS, body)
    churn = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", body, baseline=found,
                            redactor=REDACTOR)
    assert isinstance(churn, decision.Unchanged)
    found.fingerprint = churn.fingerprint
    return found


def test_churn_after_a_live_event_is_told_by_the_fingerprint_alone() -> None:
    seen = seen_live(web())
    # Of another projection: were the redacted projection compared, it would differ.
    baseline = Baseline(seen.subject, b"{}", seen.fingerprint)

    churn = later(web())
    churn["status"]["conditions"][0]["lastUpdateTime"] = "2025-11-20T10:00:00Z"
    result = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", churn, baseline=baseline,
                             redactor=REDACTOR)

    assert result == decision.Unchanged(baseline.fingerprint or b"")


def test_a_change_after_a_live_event_is_still_a_record() -> None:
    baseline = seen_live(web(OLD_IMAGE))

    result = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", later(web(NEW_IMAGE)),
                             baseline=baseline, redactor=REDACTOR)

    assert isinstance(result, decision.Draft) and result.fingerprint != baseline.fingerprint


def test_a_change_no_record_describes_moves_the_baseline_only() -> None:
    progressing = later(web(status=objects.deployment_status(updated=3, available=2)))

    result = decide(web(), progressing)

    assert isinstance(result, decision.Rebaseline)
    assert result.subject.resourceVersion == "48300"


def awaiting_controller(body: Body) -> Body:
    """``body`` just after a write that moved its generation, before the controller saw it."""
    body["metadata"]["generation"] = 2
    body["status"]["observedGeneration"] = 1
    return body


def test_an_annotation_change_keeps_the_rollout_phase_and_its_observation_is_no_record(
) -> None:
    annotated = later(awaiting_controller(web(annotations={"example.com/team": "payments"})))

    draft = drafted(decide(web(), annotated), Action.CONFIG_CHANGED, Severity.NOTICE)

    assert [change.path for change in draft.changes] == [
        'metadata.annotations["example.com/team"]']
    assert draft.snapshot is not None and draft.snapshot["rollout"] == {"phase": "complete"}
    assert draft.encoded is not None
    baselines = Baselines()
    baselines.remember_encoded(draft.subject, draft.encoded, draft.fingerprint)
    observed = later(web(annotations={"example.com/team": "payments"}, generation=2), 48310)
    assert isinstance(decision.decide(kinds.DEPLOYMENTS, "MODIFIED", observed,
                                      baseline=baselines.get(draft.subject.uid),
                                      redactor=REDACTOR), decision.Unchanged)


def test_a_spec_change_the_controller_has_not_seen_yet_is_progressing() -> None:
    draft = drafted(decide(web(OLD_IMAGE), later(awaiting_controller(web(NEW_IMAGE)))),
                    Action.IMAGE_CHANGED, Severity.NOTICE)

    assert draft.snapshot is not None and draft.snapshot["rollout"] == {"phase": "progressing"}


# RBAC


def test_rules_changed_to_a_wildcard_is_critical() -> None:
    old = objects.role([objects.rule(["get"], ["pods"])])
    new = later(objects.role([objects.rule(["*"], ["pods"])]))

    drafted(decide(old, new, resource=kinds.ROLES), Action.RULES_CHANGED, Severity.CRITICAL)


def test_subjects_changed_resolves_the_role_through_the_other_baselines() -> None:
    old = objects.role_binding([objects.user("alice")], role_name="admin-ish")
    new = later(objects.role_binding([objects.user("alice"), objects.user("mallory")],
                                     role_name="admin-ish"))
    rules = {("Role", "shop", "admin-ish"): [objects.rule(["get"], ["secrets"])]}

    draft = drafted(decide(old, new, resource=kinds.ROLE_BINDINGS, role_rules=rules),
                    Action.SUBJECTS_CHANGED, Severity.CRITICAL)

    assert any("mallory" in reason for reason in draft.reasons)


# Catch-up


def test_a_change_seen_only_in_a_listing_is_changed_while_unobserved() -> None:
    new = later(web(replicas=5, status=objects.deployment_status(replicas=5, updated=5)))

    draft = drafted(decide(web(replicas=3), new, None), Action.CHANGED_WHILE_UNOBSERVED,
                    Severity.NOTICE)  # at least a notice, though a scale alone is info

    assert not draft.live
    assert draft.observation is model.Observation.AFTER_THE_FACT
    assert draft.reasons[0] == "seen after the fact; the change looks like scaled"
    assert draft.changes


def test_an_object_first_seen_in_a_listing_is_created_after_the_fact() -> None:
    draft = drafted(decide(None, web(), None), Action.CREATED, Severity.NOTICE)

    assert draft.observation is model.Observation.AFTER_THE_FACT


def test_a_vanished_object_is_deleted_while_unobserved() -> None:
    draft = decision.unobserved_deletion(baseline_of(kinds.DEPLOYMENTS, web()))

    assert (draft.action, draft.severity) == (Action.DELETED_WHILE_UNOBSERVED, Severity.WARNING)
    assert draft.deleted and not draft.live
    assert draft.name.endswith("-deleted")


def test_a_draft_becomes_the_record_with_what_attribution_found() -> None:
    draft = drafted(decide(web(OLD_IMAGE), later(web(NEW_IMAGE))), Action.IMAGE_CHANGED,
                    Severity.NOTICE)
    initiator = model.Initiator(username="alice", source=model.InitiatorSource.AUDIT,
                                verified=True)

    spec = draft.record(cluster="prod", observed_at=records.OBSERVED_AT, initiator=initiator,
                        commit=model.Commit())

    assert (spec.action, spec.cluster, spec.initiator) == (Action.IMAGE_CHANGED, "prod",
                                                            initiator)
    assert spec.snapshot == draft.snapshot
    assert spec.changes == list(draft.changes)



def test_only_a_change_of_more_than_the_rollouts_state_awaits_an_audit_event() -> None:
    def draft(*paths: str, observation: model.Observation = model.Observation.LIVE
              ) -> decision.Draft:
        return decision.Draft(
            name="r", subject=records.deployment(), action=model.Action.ROLLOUT_COMPLETED,
            severity=model.Severity.INFO, observation=observation,
            changes=tuple(model.FieldChange(path=path, old="progressing", new="complete")
                          for path in paths))

    assert not draft("rollout.phase").awaits_audit_event  # the controller's status write
    assert draft("spec.replicas", "rollout.phase").awaits_audit_event
    assert draft().awaits_audit_event  # a creation names no field
    assert not draft("spec.replicas",
                     observation=model.Observation.AFTER_THE_FACT).awaits_audit_event


def test_a_first_install_inventories_what_was_there_and_records_what_came_after() -> None:
    installed = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    older, newer = web(), web()
    older["metadata"]["creationTimestamp"] = "2025-11-20T08:59:00Z"
    newer["metadata"]["creationTimestamp"] = "2026-12-02T08:00:05Z"

    def listed(body: Body) -> decision.Decision:
        return decision.decide(kinds.DEPLOYMENTS, None, body, baseline=None,
                               redactor=REDACTOR,
                               installed_at=installed)

    inventoried = drafted(listed(older), Action.INVENTORIED, Severity.INFO)
    assert inventoried.reasons == (
        "there before kubeledger was installed; created 2025-11-20T08:59:00Z",)
    assert inventoried.observation is model.Observation.AFTER_THE_FACT
    # Created after the install started, or while an installed operator was down: created.
    assert drafted(listed(newer), Action.CREATED, Severity.NOTICE).reasons != inventoried.reasons
    assert drafted(decide(None, older, None), Action.CREATED, Severity.NOTICE)
