"""The check every fault test ends with: each write has one record and one document, and
the chain verifies.

``Stream`` writes to a few Deployments from a thread, at a steady pace, while a test
breaks something: each write sets the annotation ``example.com/step`` to the next
number of its Deployment and keeps what the apiserver answered (the resourceVersion).
A write that fails (the apiserver is down) is tried again with the same number: if its
answer was lost but it was persisted, the retry changes nothing and answers with the
persisted resourceVersion.

``assert_recorded_once`` then reads every record of those Deployments and every
document. A record covers the steps from its change's old value (excluded) to its new
one: ``(3, 4]`` for its own write, ``(3, 6]`` for one recorded after the fact over three
writes no one watched. The spans must not overlap (overlap is a duplicate) and must
cover every step written (a gap is a loss); with ``exact``, every write must have a
record of its own, at its own resourceVersion, attributed to its writer, verified.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from integration.documents import delivered
from integration.kubectl import Kubectl, KubectlError, eventually
from integration.operator import records_of, verify_chain
from stack.cluster import Endpoints

STEP = "example.com/step"
STEP_PATH = f'metadata.annotations["{STEP}"]'
AFTER_THE_FACT = "after-the-fact"


@dataclass(frozen=True)
class Write:
    uid: str
    name: str
    step: int
    resource_version: str


@dataclass
class Stream:
    """Writes ``per_second`` annotation changes in turn to the Deployments ``names``."""

    kubectl: Kubectl
    names: list[str]
    per_second: float = 5.0
    writes: list[Write] = field(default_factory=list)
    failures: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def written(self, count: int, timeout: float = 120) -> None:
        """Waits until at least ``count`` writes were accepted in all."""
        eventually(lambda: len(self.writes) >= count, timeout=timeout,
                   what=f"{count} accepted writes")

    def _run(self) -> None:
        steps = dict.fromkeys(self.names, 0)
        turn = 0
        while not self._stopping.is_set():
            name = self.names[turn % len(self.names)]
            turn += 1
            step = steps[name] + 1
            began = time.monotonic()
            try:
                answer = self.kubectl.json("-n", "demo", "annotate", "--overwrite",
                                           f"deployment/{name}", f"{STEP}={step}")
            except KubectlError:
                self.failures += 1
            else:
                metadata = answer["metadata"]
                self.writes.append(Write(metadata["uid"], name, step,
                                         metadata["resourceVersion"]))
                steps[name] = step
            self._stopping.wait(max(0.0, 1 / self.per_second - (time.monotonic() - began)))


@dataclass(frozen=True)
class Tally:
    """What the check found, for a test to assert on and to report."""

    writes: int
    records: int
    documents: int
    # Records that cover more than one write: recorded after the fact, not one by one.
    merged: int


def _step(value: Any) -> int:
    return int(value) if value is not None else 0


def _span(record: dict[str, Any]) -> tuple[int, int] | None:
    for change in record["spec"]["changes"]:
        if change["path"] == STEP_PATH:
            return _step(change.get("old")), _step(change.get("new"))
    return None


def assert_recorded_once(kubectl: Kubectl, elasticsearch: Elasticsearch,
                         endpoints: Endpoints, stream: Stream, *, user: str,
                         exact: bool = True, timeout: float = 180) -> Tally:
    """The check described above, once every accepted write is recorded (or ``timeout``)."""
    by_uid: dict[str, list[Write]] = {}
    for write in stream.writes:
        by_uid.setdefault(write.uid, []).append(write)
    records_by_uid = {uid: _records_through(kubectl, uid, max(w.step for w in writes), timeout)
                      for uid, writes in by_uid.items()}
    merged = 0
    documents = 0
    for uid, writes in by_uid.items():
        records = records_by_uid[uid]
        name = writes[0].name
        spans = sorted(span for record in records if (span := _span(record)) is not None)
        last = max(write.step for write in writes)
        # Disjoint spans that join up: 0 -> ... -> last, each step covered once.
        reached = 0
        for low, high in spans:
            assert low == reached, (
                f"{name}: steps ({low}, {high}] after step {reached}: "
                + ("recorded twice" if low < reached else "lost in between"))
            reached = high
        assert reached == last, f"{name}: records reach step {reached} of {last}"
        wide = [r for r in records if (s := _span(r)) is not None and s[1] - s[0] > 1]
        assert all(r["spec"]["observation"] == AFTER_THE_FACT for r in wide), wide
        merged += len(wide)
        at_version = Counter(r["spec"]["subject"]["resourceVersion"] for r in records)
        assert max(at_version.values()) == 1, at_version
        if exact:
            assert not wide, f"{name}: {len(wide)} records cover more than one write"
            for write in writes:
                mine = [r for r in records
                        if r["spec"]["subject"]["resourceVersion"] == write.resource_version]
                assert len(mine) == 1, f"{name}: step {write.step} has {len(mine)} records"
                initiator = mine[0]["spec"]["initiator"]
                assert (initiator["username"], initiator["verified"]) == (user, True), (
                    f"{name}: step {write.step} attributed to {initiator}")
        # ``delivered`` returns once the documents are exactly the records then (a
        # rollout's record may have come since ``records`` was read): none may be twice.
        docs = delivered(elasticsearch, kubectl, uid, len(records), timeout=timeout)
        ids = Counter(doc["_id"] for doc in docs)
        assert max(ids.values()) == 1, f"{name}: documents doubled {ids.most_common(3)}"
        assert {r["metadata"]["name"] for r in records} <= ids.keys(), (
            f"{name}: records without a document")
        documents += len(docs)
    for source in ("cluster", "elasticsearch"):
        verified = verify_chain(endpoints, "--source", source)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    tally = Tally(len(stream.writes), sum(map(len, records_by_uid.values())), documents, merged)
    print(f"ledger check: {tally} ({stream.failures} writes refused and tried again)")
    return tally


def _records_through(kubectl: Kubectl, uid: str, step: int,
                     timeout: float) -> list[dict[str, Any]]:
    """The records of ``uid`` once one of them has reached ``step``."""
    def reached() -> list[dict[str, Any]] | None:
        records = records_of(kubectl, uid)
        spans = [span for record in records if (span := _span(record)) is not None]
        return records if any(high >= step for _, high in spans) else None
    return eventually(reached, timeout=timeout, what=f"a record of {uid} at step {step}")
