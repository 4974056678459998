"""A record deleted by anyone but retention becomes a critical record of its own; nothing
else a record goes through does, and the watch survives the apiserver forgetting its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeledger.core import chain, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.model import Commit, Initiator, InitiatorSource, Subject
from kubeledger.core.redaction import Redactor
from kubeledger.kube import errors
from kubeledger.recording import break_glass, retention
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import records
from unit.fake_kube import FakeKube

NAMESPACE = "kubeledger"
OLD = datetime.now(UTC) - timedelta(days=30)
BREAK_GLASS = "sre-on-call"


async def who_deleted(subject: Subject, body: Mapping[str, Any] | None, *,
                      deleted: bool, wait_for_audit: bool) -> tuple[Initiator, Commit]:
    """The audit log's answer for a deletion (and only for one)."""
    assert deleted and wait_for_audit
    return Initiator(source=InitiatorSource.AUDIT, username=BREAK_GLASS, verified=True,
                     groups=["kubeledger:break-glass"]), Commit()


class Watched:
    """A writer's ledger with three old records, and the watch on their deletions."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.ledger = Ledger(self.kube, chain.Head())
        self.removals: break_glass.Removals = set()
        self.recorder = Recorder(cluster="prod", redactor=Redactor(b"salt"),
                                 baselines=Baselines(), ledger=self.ledger,
                                 attribute=who_deleted)

    async def write(self, uid: str, name: str) -> None:
        subject = records.deployment().model_copy(update={"uid": uid})
        await self.ledger.append(name, records.full_spec_with(chain=None, observedAt=OLD,
                                                              subject=subject))

    def new_records(self) -> dict[str, dict[str, Any]]:
        """The records the watch wrote: of AuditRecords."""
        return {name: spec for name, spec in self.kube.records().items()
                if spec["subject"]["kind"] == kinds.RECORDS.kind}


@contextlib.asynccontextmanager
async def watching(watched: Watched) -> AsyncIterator[None]:
    task = asyncio.create_task(break_glass.watch(watched.kube, watched.recorder,
                                                 watched.removals))
    await asyncio.sleep(0.01)  # it takes its starting point
    try:
        yield
        await asyncio.sleep(0.05)  # what it was shown is written
        await watched.recorder.drain(1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_record_deleted_outside_retention_is_recorded_as_critical() -> None:
    watched = Watched()
    for index, uid in enumerate(["a", "a", "b"], start=1):
        await watched.write(uid, f"record-{index}")

    async with watching(watched):
        watched.kube.remove(kinds.RECORDS, "record-2")

    ((name, spec),) = watched.new_records().items()
    assert name.startswith("auditrecord-") and name.endswith("-deleted")
    assert (spec["action"], spec["severity"]) == ("deleted", "critical")
    assert spec["subject"]["name"] == "record-2"
    assert spec["reasons"] == ["AuditRecord record-2 (sequence 2) deleted outside retention "
                               "(break-glass, or without the guard)"]
    assert spec["initiator"]["username"] == BREAK_GLASS
    assert spec["chain"]["sequence"] == 4  # it continues the chain


async def test_retention_s_own_removals_and_the_records_written_are_not_recorded() -> None:
    watched = Watched()
    for index, uid in enumerate(["a", "a", "a"], start=1):
        await watched.write(uid, f"record-{index}")

    async with watching(watched):
        removed = await retention.prune(watched.kube, NAMESPACE, retention=timedelta(days=7),
                                        delivered_up_to=3, removals=watched.removals)
        await watched.write("b", "record-4")  # a record's creation: the operator's own

    assert removed == 2
    assert watched.new_records() == {}
    assert watched.removals == set()  # each name taken back once its deletion came


async def test_records_that_existed_before_the_watch_are_not_replayed() -> None:
    watched = Watched()
    await watched.write("a", "record-1")
    watched.kube.remove(kinds.RECORDS, "record-1")  # before the writer watched

    async with watching(watched):
        pass

    assert watched.new_records() == {}


async def test_a_watch_the_apiserver_no_longer_keeps_starts_again_from_now() -> None:
    watched = Watched()
    await watched.write("a", "record-1")
    watched.kube.fail("watch", errors.Gone("410 too old resource version", status=410))

    async with watching(watched):
        watched.kube.remove(kinds.RECORDS, "record-1")

    assert watched.kube.calls["collection_version"] == 2  # listed again after the 410
    assert [spec["subject"]["name"] for spec in watched.new_records().values()] == [
        "record-1"]
