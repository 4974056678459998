"""Delivery insights (``core.insights``): what each record counts as, and the report's sums.

Each test plants a workload's history as its records would show it (the snapshot's pod
template and rollout phase, the action, the time) and checks the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kubeledger.core import insights, model
from kubeledger.core.model import Action

START = datetime(2026, 12, 1, 9, tzinfo=UTC)


@dataclass
class Workload:
    """Writes one workload's records in order: each step its action, template and phase."""

    name: str = "web"
    namespace: str = "shop"
    kind: str = "Deployment"
    specs: list[model.RecordSpec] = field(default_factory=list)
    _template: dict[str, object] | None = None
    _phase: str | None = None

    def step(self, action: Action, minute: float, *, image: str | None = None,
             phase: str | None = None, env: str | None = None,
             anew: bool = False) -> Workload:
        """A record ``minute`` minutes after START; unchanged what is not given (``anew``:
        the container is only what is given, as after an undo)."""
        changes: list[model.FieldChange] = []
        template = self._template
        if image is not None or env is not None:
            kept = {} if anew else ((template or {}).get("container") or {})
            container = {**kept,  # type: ignore[dict-item]
                         **({"image": image} if image else {}), **({"env": env} if env else {})}
            template = {"container": container}
            changes.append(model.FieldChange(path="spec.template.spec.containers[name=app]",
                                             old=self._template, new=template))
        if phase is not None and phase != self._phase:
            changes.append(model.FieldChange(path="rollout.phase", old=self._phase, new=phase))
        self._template, self._phase = template, phase or self._phase
        snapshot = {"spec": {"template": self._template or {}},
                    **({"rollout": {"phase": self._phase}} if self._phase else {})}
        self.specs.append(_spec(self, action, minute, changes, snapshot))
        return self

    # The usual steps, by what a person or the controller did.
    def created(self, minute: float, image: str = "app:1") -> Workload:
        return self.step(Action.CREATED, minute, image=image, phase="progressing")

    def completed(self, minute: float) -> Workload:
        return self.step(Action.ROLLOUT_COMPLETED, minute, phase="complete")

    def failed(self, minute: float) -> Workload:
        return self.step(Action.ROLLOUT_FAILED, minute, phase="failed")

    def image(self, minute: float, image: str) -> Workload:
        return self.step(Action.IMAGE_CHANGED, minute, image=image, phase="progressing")

    def undone(self, minute: float, image: str) -> Workload:
        return self.step(Action.ROLLED_BACK, minute, image=image, phase="progressing",
                         anew=True)


_sequence = iter(range(1, 1_000_000))


def _spec(workload: Workload, action: Action, minute: float,
          changes: list[model.FieldChange], snapshot: dict[str, object]) -> model.RecordSpec:
    return model.RecordSpec(
        action=action, severity=model.Severity.INFO,
        observedAt=START + timedelta(minutes=minute), cluster="prod",
        subject=model.Subject(apiVersion="apps/v1", kind=workload.kind,
                              namespace=workload.namespace, name=workload.name,
                              uid=f"uid-{workload.namespace}-{workload.name}",
                              resourceVersion=str(minute)),
        changes=changes, snapshot=snapshot,
        chain=model.Chain(sequence=next(_sequence), previousHash="0" * 64))


def _total(*workloads: Workload, **window: object) -> insights.Figures:
    specs = [spec for workload in workloads for spec in workload.specs]
    return insights.report(specs, **window).total  # type: ignore[arg-type]


def test_a_completed_rollout_of_a_new_image_or_configuration_is_a_deployment() -> None:
    web = (Workload().created(0).completed(1).image(2, "app:2").completed(3)
           .step(Action.CONFIG_CHANGED, 4, env="A=1", phase="progressing").completed(5))

    figures = _total(web)

    assert (figures.deployments, figures.rollbacks, figures.failed_changes) == (3, 0, 0)
    assert figures.change_failure_rate == 0.0


def test_without_deployments_there_is_no_change_failure_rate() -> None:
    assert _total().change_failure_rate is None
    assert insights.Figures().wire()["changeFailureRate"] is None
    # A failure alone: a failed change, but nothing completed to divide by.
    figures = _total(Workload().created(0).failed(5))
    assert (figures.deployments, figures.failed_changes, figures.change_failure_rate) == (
        0, 1, None)


def test_a_rollback_of_a_completed_rollout_is_a_failed_change_and_no_deployment() -> None:
    web = (Workload().created(0).completed(1).image(2, "app:2").completed(3)
           .undone(4, "app:1").completed(5))

    figures = _total(web)

    assert (figures.deployments, figures.rollbacks, figures.failed_changes) == (2, 1, 1)
    assert figures.change_failure_rate == 0.5


def test_a_failure_then_its_rollback_is_one_failed_change() -> None:
    web = (Workload().created(0).completed(1).image(2, "app:broken").failed(12)
           .undone(13, "app:1").completed(14))

    figures = _total(web)

    assert (figures.failed_rollouts, figures.rollbacks, figures.failed_changes) == (1, 1, 1)
    assert figures.deployments == 1  # the creation; the rollback restores, ships nothing new
    assert figures.restore_seconds == [120.0]


def test_the_planted_history_gives_five_one_one_and_forty_percent() -> None:
    # The integration test's history (tests/integration/test_report.py), in records.
    web = (Workload().created(0).completed(1).image(2, "app:2").completed(3)
           .step(Action.CONFIG_CHANGED, 4, env="A=1", phase="progressing").completed(5)
           .undone(6, "app:2").completed(7)
           .image(8, "app:missing").failed(9)
           .image(10, "app:1").completed(12)
           .step(Action.CONFIG_CHANGED, 13, env="A=3", phase="progressing").completed(14))

    figures = _total(web)

    assert figures.wire() == {
        "deployments": 5, "rollbacks": 1, "failedRollouts": 1, "failedChanges": 2,
        "changeFailureRate": 0.4, "medianTimeToRestoreSeconds": 180.0, "restored": 1}


def test_time_to_restore_is_the_median_over_failed_rollouts() -> None:
    # Restored after 1, 3 and 10 minutes: the median is 3, whatever the mean says.
    web = Workload().created(0).completed(1)
    for start, restored_after in ((10, 1), (20, 3), (40, 10)):
        web.image(start, f"app:bad{start}").failed(start + 1).image(
            start + 2, f"app:good{start}").completed(start + 1 + restored_after)
    unrestored = Workload(name="api").created(0).failed(5)

    figures = _total(web, unrestored)

    assert sorted(figures.restore_seconds) == [60.0, 180.0, 600.0]
    assert figures.median_time_to_restore == 180.0
    assert figures.failed_rollouts == 4  # the unrestored one counts, with no restore time


def test_a_completion_without_a_new_template_is_no_deployment() -> None:
    # A scale: the phase goes progressing and back to complete with the same pods.
    web = (Workload().created(0).completed(1)
           .step(Action.SCALED, 2, phase="progressing").completed(3)
           .step(Action.ROLLOUT_RESTARTED, 4, env="restart", phase="progressing").completed(5))

    assert _total(web).deployments == 1


def test_a_change_and_its_completion_seen_in_one_record_still_count() -> None:
    # kopf hands over only the latest of quick successive events.
    web = Workload().created(0).completed(1).step(Action.IMAGE_CHANGED, 2, image="app:2",
                                                  phase="complete")

    assert _total(web).deployments == 2


def test_only_records_in_the_window_count_but_earlier_ones_give_context() -> None:
    web = Workload().created(0).completed(1).image(50, "app:2").completed(70).image(
        80, "app:broken").failed(90)

    figures = _total(web, since=START + timedelta(minutes=60),
                     until=START + timedelta(minutes=85))

    # The rollout started before the window and completed in it counts; the failure after
    # the window and the creation's rollout before it do not.
    assert (figures.deployments, figures.failed_rollouts) == (1, 0)


def test_one_namespace_is_reported_per_workload_and_namespace() -> None:
    shop = Workload().created(0).completed(1).image(2, "app:2").completed(3)
    api = Workload(name="api").created(0).failed(4)
    other = Workload(namespace="other").created(0).completed(1)
    specs = [*shop.specs, *api.specs, *other.specs]

    found = insights.report(specs, namespace="shop")

    assert set(found.namespaces) == {"shop"}
    assert found.workloads[("shop", "Deployment", "web")].deployments == 2
    assert found.workloads[("shop", "Deployment", "api")].failed_rollouts == 1
    assert (found.total.deployments, found.total.failed_changes) == (2, 1)
    everywhere = insights.report(specs)
    assert everywhere.namespaces["other"].deployments == 1
    assert everywhere.total.deployments == 3


def test_records_come_in_any_order_and_are_folded_in_chain_order() -> None:
    web = Workload().created(0).completed(1).image(2, "app:broken").failed(3).undone(
        4, "app:1").completed(5)

    assert insights.report(reversed(web.specs)).total.wire() == insights.report(
        web.specs).total.wire()


def test_a_tracker_started_late_reads_what_came_before_from_the_record() -> None:
    # The operator restarted: its first record of the workload is a completion, after a
    # scale it never saw (no template change among the record's changes): no deployment.
    web = Workload().created(0).completed(1).step(Action.SCALED, 2, phase="progressing")
    late = insights.Tracker()

    completion = web.completed(3).specs[-1]

    assert late.observe(completion) == insights.NOTHING
    # A record that does change the template starts a rollout even so.
    assert late.observe(web.image(4, "app:2").completed(5).specs[-2]) == insights.NOTHING
    assert late.observe(web.specs[-1]).deployment


def test_a_deleted_workload_is_forgotten_and_other_kinds_count_nothing() -> None:
    tracker = insights.Tracker()
    web = Workload().created(0).completed(1)
    for spec in web.specs:
        tracker.observe(spec)
    deleted = web.specs[-1].model_copy(update={"action": Action.DELETED, "snapshot": None})
    role = web.specs[-1].model_copy(update={"snapshot": {"rules": []}})

    assert tracker.observe(deleted) == insights.NOTHING
    assert tracker.observe(role) == insights.NOTHING
