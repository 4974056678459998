"""The reading commands: kinds named as kubectl names them, timelines, readable records,
and one line (never a traceback) for a user's mistake."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeledger import cli
from kubeledger.cli import exits, history, render, show
from kubeledger.core import chain, kinds, model
from kubeledger.recording.ledger import Ledger
from unit import records
from unit.fake_kube import FakeKube

LATER = records.OBSERVED_AT + timedelta(hours=1)
NOT_AUDITED_POD = ("'pod' is not a kind kubeledger audits (deployment, rollout, role, "
                   "clusterrole, rolebinding, clusterrolebinding, validatingadmissionpolicy, "
                   "validatingadmissionpolicybinding, customresourcedefinition, statefulset, "
                   "daemonset)")


@pytest.mark.parametrize("kind", ["deployment", "deploy", "deployments", "Deployment",
                                  "deployments.apps"])
def test_a_kind_is_named_as_kubectl_names_it(kind: str) -> None:
    assert history.resolve(kind) == kinds.DEPLOYMENTS


def test_an_unknown_kind_says_which_kinds_are_audited() -> None:
    with pytest.raises(exits.CommandError) as raised:
        history.resolve("pod")
    assert raised.value.status == exits.USAGE
    assert str(raised.value) == NOT_AUDITED_POD


def test_since_takes_a_duration_or_a_time() -> None:
    assert abs(history.since("90m") - (datetime.now(UTC) - timedelta(minutes=90))) < timedelta(
        seconds=5)
    assert history.since("2026-12-01T09:00:00Z") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert history.since("2026-12-01T09:00:00") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="neither a duration"):
        history.since("yesterday")


def spec(name: str, *, namespace: str = "shop", uid: str = "uid-1", at: datetime = LATER,
         action: model.Action = model.Action.IMAGE_CHANGED,
         user: str = "alice") -> model.RecordSpec:
    subject = model.Subject(apiVersion="apps/v1", kind="Deployment", namespace=namespace,
                            name=name, uid=uid, resourceVersion=str(at.timestamp()))
    return records.full_spec_with(
        subject=subject.model_dump(), observedAt=at, action=action,
        initiator={"username": user, "verified": True, "source": "admission"}, chain=None)


async def test_a_timeline_holds_every_life_of_the_name_in_time_order() -> None:
    kube = FakeKube()
    ledger = Ledger(kube, chain.Head())
    first, second = records.OBSERVED_AT, records.OBSERVED_AT + timedelta(minutes=5)
    # Written out of time order; another namespace's web and a longer name stay out.
    for index, each in enumerate([
        spec("web", uid="life-2", at=LATER, action=model.Action.CREATED),
        spec("web", uid="life-1", at=first, action=model.Action.CREATED),
        spec("web", uid="life-1", at=second, action=model.Action.DELETED),
        spec("web", namespace="other", uid="elsewhere"),
        spec("web-2", uid="longer"),
    ]):
        await ledger.append(f"record-{index}", each)

    found = await history.timeline(kube, kinds.DEPLOYMENTS, "shop", "web")

    assert [(entry["subject"]["uid"], entry["action"]) for entry in found] == [
        ("life-1", "created"), ("life-1", "deleted"), ("life-2", "created")]
    assert [entry["record"] for entry in found] == ["record-1", "record-2", "record-0"]
    assert all("snapshot" not in entry for entry in found)


def test_a_timeline_row_reads_as_one_line() -> None:
    entry = {"record": "r", **records.full_spec().wire()}

    assert history.row(entry) == [
        "2025-11-26T07:18:00Z", "image-changed", f"{records.ASSUMED_USER} ✓",
        "kubectl-client-side-apply", "3f786850e387",
        "spec.template.spec.containers[web].image: shop/web:1.4.2 -> shop/web:1.5.0 "
        "(+4 more)"]


def test_filters_narrow_by_time_user_and_action() -> None:
    entries = [{"record": str(index), **spec("web", at=at, user=user, action=action).wire()}
               for index, (at, user, action) in enumerate([
                   (records.OBSERVED_AT, "alice", model.Action.CREATED),
                   (LATER, "bob", model.Action.SCALED),
                   (LATER, "alice", model.Action.SCALED)])]

    def kept(**flags: object) -> list[str]:
        args = argparse.Namespace(**{"since": None, "user": None, "action": None, **flags})
        return [entry["record"] for entry in entries if history.matches(entry, args)]

    assert kept(since=LATER - timedelta(minutes=1)) == ["1", "2"]
    assert kept(user="alice") == ["0", "2"]
    assert kept(action="scaled", user="bob") == ["1"]


def test_a_change_says_what_was_added_removed_or_replaced() -> None:
    assert render.change({"path": "spec.paused", "new": True}) == "spec.paused: + true"
    assert render.change({"path": "metadata.labels.tier", "old": "front"}) == (
        "metadata.labels.tier: - front")
    assert render.change({"path": "spec.replicas", "old": 3, "new": 5}) == (
        "spec.replicas: 3 -> 5")
    assert render.value("x" * 50) == "x" * 39 + "…"


def test_a_table_aligns_its_columns() -> None:
    assert render.table(("A", "LONGER"), [["wide value", "x"], ["y", "z"]]) == (
        "A            LONGER\nwide value   x\ny            z")


def test_a_record_shows_its_diff_initiator_commit_and_place_in_the_chain() -> None:
    text = show.describe(records.RECORD_NAME, records.full_spec().wire())

    assert f"Record:     {records.RECORD_NAME}" in text
    assert "Time:       2025-11-26T07:18:00Z (live)" in text
    assert "Subject:    Deployment shop/web (uid 6f1c2d3e-" in text
    assert (f"Initiator:  {records.ASSUMED_USER}; verified, from admission; tool "
            f"kubectl-client-side-apply; impersonated by {records.REAL_USER}; declared "
            f"{records.DECLARED_USER} (does not match!)") in text
    assert ("Commit:     3f786850e387550fdab836ed7e6dc881de23001b "
            "https://git.example.com/shop/deploy.git (from argocd)") in text
    assert "Chain:      #4711, previous aaaaaaaaaaaaaaaa…, hash bbbbbbbbbbbbbbbb…" in text
    assert ("  spec.template.spec.containers[web].image\n    - shop/web:1.4.2\n"
            "    + shop/web:1.5.0") in text
    assert "  spec.paused\n    + true" in text
    assert "Reasons:\n  grants cluster-admin to User mallory" in text
    assert records.SNAPSHOT_MARKER not in text


@pytest.mark.parametrize("argv", [["verify"], ["history", "deployment/web"], ["show", "r"]])
def test_without_a_cluster_to_talk_to_a_command_says_so_in_one_line(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    status = cli.main(argv)

    err = capsys.readouterr().err
    assert status == exits.NO_ACCESS
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("kubeledger: no cluster to talk to (")
    assert err.endswith("set KUBECONFIG or pass --kubeconfig\n")


@pytest.mark.parametrize(("target", "message"), [
    ("web", "kubeledger: expected KIND/NAME (deployment/web), got 'web'\n"),
    ("pod/web", f"kubeledger: {NOT_AUDITED_POD}\n"),
])
def test_a_mistaken_target_is_a_usage_error(target: str, message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", target]) == exits.USAGE
    assert capsys.readouterr().err == message


def test_a_summary_names_what_a_person_changed_before_the_rollout_it_started() -> None:
    spec = {"changes": [{"path": "rollout.phase", "old": "complete", "new": "progressing"},
                        {"path": "spec.template.spec.containers[name=app].image",
                         "old": "app:1", "new": "app:2"}]}

    assert render.summary(spec) == (
        "spec.template.spec.containers[name=app].image: app:1 -> app:2 (+1 more)")
