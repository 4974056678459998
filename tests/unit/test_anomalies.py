"""Anomaly detection: each detector flags its planted change and leaves a normal one alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kubeledger.core import anomalies, chain
from kubeledger.core.anomalies import cron, images
from kubeledger.core.anomalies.policy import Policy, Threshold
from kubeledger.core.model import (
    Action,
    AnomalyKind,
    Initiator,
    InitiatorSource,
    Observation,
    RecordSpec,
    Severity,
    Subject,
)

MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALICE = Initiator(username="alice", groups=["developers"], source=InitiatorSource.AUDIT,
                  verified=True)
ARGOCD = Initiator(username="system:serviceaccount:argocd:argocd-application-controller",
                   source=InitiatorSource.AUDIT, verified=True)
ARGO_TRACKED = {"metadata": {"annotations": {
    "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}}}
FLUX_TRACKED = {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}}


def record(*, action: Action = Action.IMAGE_CHANGED, initiator: Initiator = ALICE,
           namespace: str | None = "shop", name: str = "web", kind: str = "Deployment",
           at: datetime = MONDAY_NOON, snapshot: dict[str, Any] | None = None,
           severity: Severity = Severity.NOTICE, version: str = "1",
           observation: Observation = Observation.LIVE) -> RecordSpec:
    return RecordSpec(
        action=action, severity=severity, observedAt=at, observation=observation,
        cluster="test", initiator=initiator, snapshot=snapshot, reasons=["why"],
        subject=Subject(apiVersion="apps/v1", kind=kind, namespace=namespace, name=name,
                        uid=f"uid-{namespace}-{name}", resourceVersion=version))


DEFAULTS = Policy()


def kinds(spec: RecordSpec, policy: Policy = DEFAULTS,
          detector: anomalies.Detector | None = None) -> list[AnomalyKind]:
    flagged = (detector or anomalies.Detector(policy))(spec)
    return [anomaly.kind for anomaly in flagged.anomalies]


def test_a_normal_change_is_not_flagged() -> None:
    assert kinds(record()) == []
    assert record().anomalies == []


@pytest.mark.parametrize("tracked", [ARGO_TRACKED, FLUX_TRACKED])
def test_a_person_changing_a_gitops_object_is_out_of_band(tracked: dict[str, Any]) -> None:
    flagged = anomalies.Detector(Policy())(record(snapshot=tracked))

    assert [anomaly.kind for anomaly in flagged.anomalies] == [AnomalyKind.OUT_OF_BAND_CHANGE]
    assert "by alice" in flagged.anomalies[0].reason


def test_the_gitops_controller_and_the_exempt_are_in_band() -> None:
    synced = Initiator(username="bob", source=InitiatorSource.ARGOCD)
    autoscaler = Initiator(username="system:serviceaccount:kube-system:hpa", verified=True,
                           source=InitiatorSource.AUDIT)
    exempt = Policy(gitops_exempt=frozenset({autoscaler.username or ""}))

    assert kinds(record(snapshot=ARGO_TRACKED, initiator=ARGOCD)) == []
    assert kinds(record(snapshot=ARGO_TRACKED, initiator=synced)) == []
    assert kinds(record(snapshot=ARGO_TRACKED, initiator=autoscaler), exempt) == []
    # Argo CD's controller writing a Flux object is not Flux.
    assert kinds(record(snapshot=FLUX_TRACKED, initiator=ARGOCD)) == [
        AnomalyKind.OUT_OF_BAND_CHANGE]
    # Unverified: nobody can say who wrote, so nothing is claimed.
    assert kinds(record(snapshot=ARGO_TRACKED, initiator=Initiator())) == []


def test_protected_namespaces_want_verified_and_matching_initiators() -> None:
    policy = Policy(protected_namespaces=("prod-*",))
    declared = Initiator(username="alice", verified=True, source=InitiatorSource.AUDIT,
                         declared="bob", declaredMismatch=True)

    assert kinds(record(namespace="prod-eu", initiator=Initiator()), policy) == [
        AnomalyKind.UNVERIFIED_INITIATOR]
    assert kinds(record(namespace="prod-eu", initiator=declared), policy) == [
        AnomalyKind.DECLARED_MISMATCH]
    assert kinds(record(namespace="prod-eu"), policy) == []
    assert kinds(record(namespace="shop", initiator=declared), policy) == []
    # A rollout completing is the cluster's report, not anyone's write.
    assert kinds(record(namespace="prod-eu", initiator=Initiator(),
                        action=Action.ROLLOUT_COMPLETED), policy) == []


def test_changes_outside_the_windows_of_a_protected_namespace() -> None:
    berlin = Policy(protected_namespaces=("prod",),
                    change_windows=(cron.parse("0 9 * * 1-5 8h"),),
                    change_window_zone=ZoneInfo("Europe/Berlin"),
                    change_window_exempt=frozenset({"oncall"}))
    # 12:00 UTC is 13:00 in Berlin on a Monday: inside; 17:00 UTC is 18:00: outside.
    evening = MONDAY_NOON + timedelta(hours=5)
    on_call = Initiator(username="carol", groups=["oncall"], verified=True,
                        source=InitiatorSource.AUDIT)

    assert kinds(record(namespace="prod"), berlin) == []
    flagged = anomalies.Detector(berlin)(record(namespace="prod", at=evening))
    assert [anomaly.kind for anomaly in flagged.anomalies] == [AnomalyKind.OUTSIDE_CHANGE_WINDOW]
    assert "Mon 2026-11-30 18:00 Europe/Berlin" in flagged.anomalies[0].reason
    assert kinds(record(namespace="prod", at=evening, initiator=on_call), berlin) == []
    assert kinds(record(namespace="shop", at=evening), berlin) == []


def test_cron_windows() -> None:
    weekend = cron.parse("30 22 * * 6,0 90m")
    saturday = datetime(2026, 12, 5, 23, 59)

    assert weekend.open_at(saturday)
    assert not weekend.open_at(saturday.replace(hour=22, minute=29))
    assert not weekend.open_at(saturday + timedelta(days=2))  # Monday
    assert cron.parse("*/15 * * * 7 1m").open_at(datetime(2026, 12, 6, 10, 45))  # Sunday


@pytest.mark.parametrize(("text", "problem"), [
    ("0 9 * * 1-5", "five cron fields and a duration"),
    ("0 24 * * * 1h", "outside 0-23"),
    ("0 9 * * mon 1h", "cannot read 'mon'"),
    ("0 9 * * * 8d", "1m to 7d"),
    ("0 9 * * * soon", "must look like"),
])
def test_unreadable_windows_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        cron.parse(text)


def test_every_critical_rbac_record_and_no_other() -> None:
    def binding(severity: Severity) -> RecordSpec:
        return record(kind="ClusterRoleBinding", namespace=None, name="admins",
                      severity=severity)

    assert kinds(binding(Severity.CRITICAL)) == [AnomalyKind.CRITICAL_RBAC]
    assert kinds(binding(Severity.WARNING)) == []
    assert kinds(record(severity=Severity.CRITICAL)) == []


def test_images_from_registries_outside_the_list() -> None:
    policy = Policy(approved_registries=("ghcr.io/acme", "registry.example.com:5000"))

    def pod(*names: str) -> dict[str, Any]:
        return {"spec": {"template": {"spec": {"containers": [{"image": n} for n in names]}}}}

    assert kinds(record(snapshot=pod("ghcr.io/acme/web:1", "registry.example.com:5000/x")),
                 policy) == []
    flagged = anomalies.Detector(policy)(record(snapshot=pod("nginx:1.25", "ghcr.io/acme/a")))
    assert [anomaly.kind for anomaly in flagged.anomalies] == [AnomalyKind.UNAPPROVED_REGISTRY]
    assert "nginx:1.25" in flagged.anomalies[0].reason
    assert kinds(record(snapshot=pod("ghcr.io/acmecorp/web")), policy) == [
        AnomalyKind.UNAPPROVED_REGISTRY]
    # Scaling sets no image; no list: any registry.
    assert kinds(record(snapshot=pod("nginx"), action=Action.SCALED), policy) == []
    assert kinds(record(snapshot=pod("nginx"))) == []


def test_image_repositories() -> None:
    assert images.repository("nginx:1.25") == "docker.io/library/nginx"
    assert images.repository("acme/web@sha256:ab") == "docker.io/acme/web"
    assert images.repository("localhost:5000/web:2") == "localhost:5000/web"
    assert images.repository("ghcr.io/acme/web:1.0") == "ghcr.io/acme/web"


def test_a_burst_is_more_than_n_objects_by_one_identity_in_m_minutes() -> None:
    detector = anomalies.Detector(Policy(burst=Threshold(2, timedelta(minutes=5))))
    at = MONDAY_NOON

    def change(name: str, minute: float, who: Initiator = ALICE) -> list[AnomalyKind]:
        return kinds(record(name=name, at=at + timedelta(minutes=minute), initiator=who),
                     detector=detector)

    assert change("a", 0) == []
    assert change("a", 1) == []  # the same object again: still one
    assert change("b", 2) == []
    assert change("c", 3) == [AnomalyKind.BURST]  # three objects in five minutes
    assert change("x", 3, ARGOCD) == []  # someone else
    assert change("d", 9) == []  # a, b and c are out of the window


def test_spikes_of_rollbacks_and_failures_per_namespace() -> None:
    detector = anomalies.Detector(Policy(rollback_spike=Threshold(1, timedelta(minutes=10)),
                                         failure_spike=Threshold(1, timedelta(minutes=10))))

    def event(action: Action, minute: int, namespace: str = "shop") -> list[AnomalyKind]:
        return kinds(record(action=action, namespace=namespace, version=str(minute),
                            at=MONDAY_NOON + timedelta(minutes=minute)), detector=detector)

    assert event(Action.ROLLED_BACK, 0) == []
    assert event(Action.ROLLED_BACK, 1, "other") == []
    assert event(Action.ROLLED_BACK, 2) == [AnomalyKind.ROLLBACK_SPIKE]
    assert event(Action.ROLLOUT_FAILED, 3) == []
    assert event(Action.ROLLOUT_FAILED, 20) == []  # the first fell out of the window
    assert event(Action.ROLLOUT_FAILED, 21) == [AnomalyKind.FAILURE_SPIKE]


def test_windows_are_deterministic_and_skip_after_the_fact_records() -> None:
    policy = Policy(burst=Threshold(1, timedelta(minutes=5)))
    specs = [record(name=name, at=MONDAY_NOON + timedelta(seconds=index))
             for index, name in enumerate("abcd")]
    late = record(name="e", observation=Observation.AFTER_THE_FACT)

    def replay() -> list[list[AnomalyKind]]:
        detector = anomalies.Detector(policy)
        return [kinds(spec, detector=detector) for spec in [*specs, late]]

    assert replay() == replay() == [[], [AnomalyKind.BURST], [AnomalyKind.BURST],
                                    [AnomalyKind.BURST], []]


def test_disabled_kinds_are_not_flagged() -> None:
    policy = Policy(disabled=frozenset({AnomalyKind.OUT_OF_BAND_CHANGE}))

    assert kinds(record(snapshot=ARGO_TRACKED), policy) == []


def test_anomalies_are_sealed_content() -> None:
    flagged = anomalies.Detector(Policy())(record(snapshot=ARGO_TRACKED))
    sealed, _ = chain.seal(flagged, chain.Head(0, "0" * 64))
    tampered = sealed.wire()
    tampered["anomalies"] = []

    assert chain.record_hash(sealed.wire()) == sealed.chain.hash  # type: ignore[union-attr]
    assert chain.record_hash(tampered) != sealed.chain.hash  # type: ignore[union-attr]
