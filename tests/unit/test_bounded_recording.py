"""A huge object is recorded cut, but the operator keeps diffing against the real one, in
the same process and after a restart."""

from __future__ import annotations

import functools
from typing import Any

from kubeledger.core import chain, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.redaction import Redactor
from kubeledger.recording import history
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import objects
from unit.fake_kube import FakeKube

KIB = 1024


def huge(version: str, *, replicas: int = 0) -> dict[str, Any]:
    """Annotations near the apiserver's 256 KiB total, and sixty containers."""
    annotations = {f"example.com/notes-{n}": chr(ord("a") + n) * (62 * KIB) for n in range(4)}
    containers = [objects.container(name=f"c{n}", env=[
        {"name": f"VAR_{k}", "value": "v" * 60} for k in range(20)]) for n in range(60)]
    body = objects.deployment(replicas=replicas, annotations=annotations,
                              template=objects.pod_template(containers))
    body["metadata"]["resourceVersion"] = version
    return body


def recorder_over(kube: FakeKube, baselines: Baselines, head: chain.Head) -> Recorder:
    return Recorder(cluster="prod", redactor=Redactor(b"salt"), baselines=baselines,
                    ledger=Ledger(kube, head), specs=functools.partial(history.spec_of, kube))


async def test_a_cut_record_leaves_the_real_object_as_baseline() -> None:
    kube = FakeKube()
    recorder = recorder_over(kube, Baselines(), chain.Head())

    created = await recorder.observe(kinds.DEPLOYMENTS, "ADDED", huge("10"))
    # The same object again (status churn), then a real change.
    again = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", huge("11"))
    scaled = await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", huge("12", replicas=2))

    assert created is not None and created.truncated
    assert again is None
    assert scaled is not None
    assert [(change.path, change.old, change.new) for change in scaled.changes] == [
        ("spec.replicas", 0, 2)]  # diffed against the real object, not the cut snapshot
    assert chain.verify(kube.records().items()).intact


async def test_after_a_restart_an_unchanged_huge_object_records_nothing() -> None:
    kube = FakeKube()
    first = recorder_over(kube, Baselines(), chain.Head())
    created = await first.observe(kinds.DEPLOYMENTS, "ADDED", huge("10"))
    assert created is not None and created.chain is not None and created.truncated

    # A new process: baselines from the records alone, then kopf's initial listing.
    found = await history.read(kube)
    assert found.head == chain.Head(created.chain.sequence, created.chain.hash)
    restarted = recorder_over(kube, found.baselines(), found.head)
    # Listed at a later resourceVersion (status writes move it), the spec unchanged.
    listed = await restarted.observe(kinds.DEPLOYMENTS, None, huge("11"))

    assert listed is None
    assert len(kube.records()) == 1
    # A real change made while it was down is still seen.
    changed = await restarted.observe(kinds.DEPLOYMENTS, None, huge("13", replicas=4))
    assert changed is not None
    assert changed.action.value == "changed-while-unobserved"
