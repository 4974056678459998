"""The replay of the audit stream after a downtime: how long the apiserver retries, which
kept writes are recorded and in what order, when a replay is trusted, and the recorder
turning each kept write into its own record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeledger.core import chain, decision, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.model import Commit, Initiator, InitiatorSource, Subject
from kubeledger.core.redaction import Redactor
from kubeledger.identity.written import WrittenState, WrittenStates
from kubeledger.recording import replay
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import identity_objects as io
from unit import objects
from unit.fake_kube import FakeKube

REDACTOR = Redactor(b"salt")
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def version(body: dict[str, Any], resource_version: str) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = resource_version
    return body


def write(resource_version: str, *, replicas: int = 3, created: bool = False) -> WrittenState:
    return WrittenState.of_body(resource_version, created,
                                version(objects.deployment(replicas=replicas), resource_version))


def scale_write(resource_version: str, replicas: int) -> WrittenState:
    return WrittenState(resource_version, False, None, replicas)


def test_a_batch_is_retried_for_81_seconds_at_the_default_initial_backoff() -> None:
    assert replay.waits(10.0) == [10.0, 15.0, 22.5, 33.75]
    assert replay.horizon(replay.DEFAULT_INITIAL_BACKOFF_SECONDS) == 81.25
    assert replay.horizon(2.0) == pytest.approx(16.25)


@pytest.mark.parametrize(("downtime", "longest"), [
    (0.0, 12.0),    # failed just now: its first retry, 10 s, up to 20 % later
    (20.0, 18.0),   # failed at most 20 s ago: it may be waiting out its second wait
    (80.0, 40.5),   # waiting out its last wait, 33.75 s, up to 20 % later
])
def test_the_longest_wait_for_a_retry_grows_with_the_downtime(downtime: float,
                                                              longest: float) -> None:
    assert replay.longest_wait(downtime, 10.0) == pytest.approx(longest)


def test_kept_writes_are_recorded_in_resource_version_order_once_each() -> None:
    kept = [write("14", replicas=5), write("12", replicas=4), write("12", replicas=4),
            write("10", replicas=9), write("16", replicas=6)]

    steps = replay.plan(kept, recorded="10", listed="14", handed_over=True)

    # 10 is recorded already, 16 will come through the watch, 12 was kept twice.
    assert [(step.resource_version, step.exact) for step in steps] == [("12", True),
                                                                       ("14", True)]
    assert [step.body["spec"]["replicas"] for step in steps] == [4, 5]


def test_without_a_hand_over_the_first_kept_write_is_recorded_after_the_fact() -> None:
    """A killed writer may have been told of a write it never recorded: the state before
    the first kept write is then not known."""
    steps = replay.plan([write("12"), write("13")], recorded="10", listed="13",
                        handed_over=False)

    assert [(step.resource_version, step.exact) for step in steps] == [("12", False),
                                                                       ("13", True)]


def test_an_object_never_recorded_is_replayed_from_its_creation_only() -> None:
    born = [write("20", created=True), write("21", replicas=4)]
    assert [(step.resource_version, step.exact) for step in replay.plan(
        born, recorded=None, listed="21", handed_over=False)] == [("20", True), ("21", True)]
    assert replay.plan([write("21")], recorded=None, listed="21", handed_over=True) == []


def test_a_scale_applies_its_replicas_to_the_state_before_it() -> None:
    steps = replay.plan([write("12"), scale_write("13", 7)], recorded="10", listed="13",
                        handed_over=True)

    scaled = steps[-1]
    assert (scaled.resource_version, scaled.exact) == ("13", True)
    assert scaled.body["spec"]["replicas"] == 7
    assert scaled.body["metadata"]["resourceVersion"] == "13"
    assert scaled.body["metadata"]["generation"] == 2  # a spec change moves it


def test_a_scale_with_no_state_before_it_makes_the_next_state_after_the_fact() -> None:
    steps = replay.plan([scale_write("12", 7), write("13")], recorded="10", listed="13",
                        handed_over=True)

    assert [(step.resource_version, step.exact) for step in steps] == [("13", False)]


def test_resource_versions_that_are_not_numbers_replay_nothing() -> None:
    assert replay.plan([write("12")], recorded="a", listed="13", handed_over=True) == []


def test_no_replay_for_the_first_writer_or_past_the_apiserver_s_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written = WrittenStates(REDACTOR)
    first = replay.Replay.starting(written, previous_renewal=None, handed_over=False,
                                   now=NOW, initial_backoff=10.0, batch_wait=3.0)
    with caplog.at_level(logging.WARNING):
        late = replay.Replay.starting(written, previous_renewal=NOW - timedelta(seconds=90),
                                      handed_over=True, now=NOW, initial_backoff=10.0,
                                      batch_wait=3.0)

    assert first is None and late is None
    assert "no writer for 90s, longer than the apiserver retries audit batches (81s" in (
        caplog.text)


def test_a_replay_waits_out_the_longest_retry_and_the_batch_wait() -> None:
    started = time.monotonic()
    replaying = replay.Replay.starting(
        WrittenStates(REDACTOR), previous_renewal=NOW - timedelta(seconds=20),
        handed_over=True, now=NOW, initial_backoff=10.0, batch_wait=3.0)

    assert replaying is not None and replaying.handed_over
    assert replaying.until - started == pytest.approx(18.0 + 3.0, abs=0.5)
    assert 20.0 < replaying.left() <= 21.0


async def _attributed(subject: Subject, body: Mapping[str, Any] | None, *, deleted: bool,
                      wait_for_audit: bool) -> tuple[Initiator, Commit]:
    return Initiator(source=InitiatorSource.AUDIT, username="bob", verified=True), Commit()


async def test_each_kept_write_of_a_downtime_becomes_its_own_record() -> None:
    """bob scales, changes the image and annotates while no writer watches: three records,
    each with its own diff, seen from the audit log; the listing then adds nothing."""
    kube, written = FakeKube(), WrittenStates(REDACTOR)
    recorder = Recorder(cluster="prod", redactor=REDACTOR, baselines=Baselines(),
                        ledger=Ledger(kube, chain.Head()), attribute=_attributed,
                        replaying=replay.Replay(written, until=0.0, handed_over=True))
    first = await recorder.take(kinds.DEPLOYMENTS, "ADDED",
                                version(objects.deployment(), "10"))
    assert first is not None and await first is not None

    image = io.with_image(version(objects.deployment(), "11"), "registry.example/web:2")
    scaled = version(io.with_image(objects.deployment(replicas=5), "registry.example/web:2"),
                     "12")
    noted = version(io.with_image(objects.deployment(replicas=5, annotations={
        "example.com/note": "after-hours"}), "registry.example/web:2"), "13")
    written.keep("update", image)
    written.keep("patch", io.scale(scaled, 5))
    written.keep("patch", noted)

    await recorder.take(kinds.DEPLOYMENTS, None, noted)
    await recorder.drain(timeout=5.0)

    records = sorted(kube.records().values(), key=lambda spec: spec["chain"]["sequence"])
    assert [(spec["subject"]["resourceVersion"], spec["observation"], spec["action"])
            for spec in records[1:]] == [("11", "audit-log", "image-changed"),
                                         ("12", "audit-log", "scaled"),
                                         ("13", "audit-log", "config-changed")]
    # Each diff is its own write's; the rollout's phase moves as the watch would show it.
    assert [[change["path"] for change in spec["changes"]
             if not change["path"].startswith("rollout.")] for spec in records[1:]] == [
        ["spec.template.spec.containers[name=web].image"], ["spec.replicas"],
        ['metadata.annotations["example.com/note"]']]
    assert all(spec["initiator"]["username"] == "bob" for spec in records)
    assert all(spec["reasons"][0] == decision.REPLAYED_REASON for spec in records[1:])


async def test_a_listing_showing_only_rollout_progress_does_not_wait_for_the_replay() -> None:
    """The status subresource is not audited: no kept write can explain a rollout's
    failure, so its record is written at once, not a minute later."""
    kube = FakeKube()
    recorder = Recorder(cluster="prod", redactor=REDACTOR, baselines=Baselines(),
                        ledger=Ledger(kube, chain.Head()), attribute=_attributed,
                        replaying=replay.Replay(WrittenStates(REDACTOR),
                                                until=time.monotonic() + 600.0,
                                                handed_over=True))
    first = await recorder.take(kinds.DEPLOYMENTS, "ADDED",
                                version(objects.deployment(), "10"))
    assert first is not None and await first is not None
    failed = version(objects.deployment(status=objects.deployment_status(
        deadline_exceeded=True)), "11")

    # Waiting for the replay would take ten minutes; the guard only turns a hang into a failure.
    writing = await asyncio.wait_for(recorder.take(kinds.DEPLOYMENTS, None, failed), 30.0)

    assert writing is not None
    spec = await writing
    assert spec is not None
    assert (spec.observation.value, spec.reasons[0]) == (
        "after-the-fact", "seen after the fact; the change looks like rollout-failed")


async def test_a_listing_after_the_first_is_replayed_from_the_events_received_live() -> None:
    """kopf lists again when a watch cannot resume (410 Gone): the writes of the gap came
    in as audit events all the while, and each becomes its own record, as after a
    downtime. The same listing's event as of the first listing is not replayed (no
    replay was trusted at start-up here): one record after the fact."""
    def relisted(resource_version: str, replicas: int) -> dict[str, Any]:
        return version(objects.deployment(replicas=replicas), resource_version)

    async def records_after_a_gap(live: bool) -> list[tuple[str, str]]:
        kube, written = FakeKube(), WrittenStates(REDACTOR)
        recorder = Recorder(cluster="prod", redactor=REDACTOR, baselines=Baselines(),
                            ledger=Ledger(kube, chain.Head()), attribute=_attributed,
                            relisting=replay.Replay.live(written, batch_wait=0.0))
        first = await recorder.take(kinds.DEPLOYMENTS, "ADDED", relisted("10", 3))
        assert first is not None and await first is not None
        written.keep("patch", relisted("11", 4))
        written.keep("patch", relisted("12", 5))

        await recorder.take(kinds.DEPLOYMENTS, None, relisted("12", 5), relisted=live)
        await recorder.drain(timeout=5.0)
        records = sorted(kube.records().values(), key=lambda spec: spec["chain"]["sequence"])
        return [(spec["subject"]["resourceVersion"], spec["observation"])
                for spec in records[1:]]

    assert await records_after_a_gap(live=True) == [("11", "audit-log"), ("12", "audit-log")]
    assert await records_after_a_gap(live=False) == [("12", "after-the-fact")]


def test_a_live_replay_waits_only_for_the_latest_batch() -> None:
    live = replay.Replay.live(WrittenStates(REDACTOR), batch_wait=3.0)
    assert live.handed_over and live.left() == 3.0
