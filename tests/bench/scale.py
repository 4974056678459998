"""The stack bench at the scale of a real cluster: 10,000 Deployments, 50,000 records.

The phases here run in the order :mod:`bench.stack_run` calls them, over the same
objects and the same growing ledger:

- :func:`create_deployments`: ``OBJECTS`` Deployments (15 env vars each, no pods) made
  before the operator ever starts, from 16 threads through the Python client (one huge
  ``kubectl apply`` is far slower).
- :func:`first_install`: the operator's first start over them, an empty ledger: seconds
  until every one has its ``inventoried`` record, while a :class:`SideWriter` (another
  client, admin, ConfigMaps in a namespace of its own, not audited) writes as fast as it
  is answered; its rate just before and during the install shows what the paced
  inventory leaves to the apiserver's other clients. Once the operator records live,
  ``INVENTORY_PROBES`` changes are made while the inventory goes on: their latency says
  whether a change waits for the inventory.
- :func:`fill`: changes as alice and bob, spread over every Deployment, until the cluster
  holds ``RECORDS`` records, all recorded.
- :func:`settled_memory`: the operator's resident memory (VmRSS) and its peak (VmHWM)
  once every record is written and shipped and it has idled for ``SETTLE_SECONDS``.
- :func:`restart`: stop, start over the unchanged objects and records: seconds until it
  records live, how many records it wrote (none is right), its peak memory.
- :func:`catch_up`: stop, change ``CATCHUP`` Deployments once each, start: seconds until
  every change has its (after-the-fact) record, lost and duplicates.

Between phases, :func:`settle_rollouts` waits until the Deployment controller has
rolled out every change and the operator has recorded those rollouts: on two cores the
controller falls far behind under load, and a rollout finished late is a record of its
own (a restart would otherwise find hundreds to record). Memory and CPU are read from
/proc of the host operator process, the one ``kubeledger run``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench import profile
from bench.pace import (
    DONE_TIMEOUT_SECONDS,
    ENV_NAME,
    NAMESPACE,
    PROGRESS_EVERY_SECONDS,
    QUIET_SECONDS,
    RETRIED_STATUSES,
    WRITE_TRIES,
    WRITERS,
    Arrivals,
    Change,
    Writers,
    changes_for,
    outcome,
    wait_recorded,
)
from integration.manifests import deployment
from integration.operator import NAME as OPERATOR_PROCESS
from integration.operator import Operator
from kubeledger.config import Settings
from kubeledger.first_listing import RECORDING_LIVE

OBJECTS = int(os.environ.get("BENCH_OBJECTS", "10000"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "50000"))
CATCHUP = int(os.environ.get("BENCH_CATCHUP", "1000"))
ENV_VARS = 15  # per Deployment, BENCH among them: a realistic record and baseline size
SIDE_NAMESPACE = "bench-side"
SIDE_THREADS = 4
BASELINE_SECONDS = 10.0  # the side writer's rate before the operator starts
SETTLE_SECONDS = 15.0  # idle before memory is read
STARTUP_SETTLE_SECONDS = 10.0  # after a restart went idle, before its records are counted
# Idle: under a fifth of a core over 3 s. At rest it still renews its Lease and follows
# its watches: about an eighth of a core in the bench's first trials.
IDLE_CPU_SHARE = 0.20
IDLE_WINDOW_SECONDS = 3.0
FILL_ROUNDS = 4  # the records a change brings are estimated: top up at most this often
# A change brings its own record and, once the controller has rolled it out, the
# rollout's; two changes close together share the second. The first round of the fill
# is sized by this most, so it never overshoots; later ones by what the last one brought.
MAX_RECORDS_PER_CHANGE = 2.0
# Changes made during the first install's inventory, at this rate: a few, over objects
# listed last (not inventoried yet, so each waits for its inventoried record first).
INVENTORY_PROBES = 20
INVENTORY_PROBES_PER_SECOND = 2.0
# The controller may fall far behind under load: given up on when no rollout has
# finished for this long.
ROLLOUTS_STUCK_SECONDS = 180.0
DOCUMENTS_INDEX = "kubeledger-*"
# The operator's own lease timing (15 s, renewed within 10 s), not the stack's short one
# (4 s within 3 s, for tests that kill an operator and wait its lease out): the bench
# stops it gracefully, which hands the Lease over at once. And on two cores the first
# listing of a few thousand objects keeps the operator's event loop too busy to renew
# within 3 s: it lost the Lease and exited in the bench's first trials.
LEASE_ENV = {f"KUBELEDGER_{name.upper()}": str(Settings.model_fields[name].default)
             for name in ("lease_duration_seconds", "lease_renew_deadline_seconds",
                          "lease_retry_period_seconds")}


@dataclass(frozen=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    peak_mib: float  # VmHWM: the most it was ever resident


def memory(pid: int) -> Memory:
    """The resident memory of process ``pid``, from /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)

    def mib(name: str) -> float:
        return int(fields[name].split()[0]) / 1024  # the kernel counts in kB

    return Memory(mib("VmRSS"), mib("VmHWM"))


def operator_memory(operator: Operator) -> Memory:
    pid = operator.processes.running(OPERATOR_PROCESS)
    if pid is None:
        raise RuntimeError(f"the operator is not running; see {operator.log}")
    return memory(pid)


def running(operator: Operator) -> Callable[[], None]:
    """A ``check`` for the waits: raises, with the end of its log, once the operator exited.

    Waiting on records would be pointless then. An operator that loses its Lease exits
    (in a pod it would be restarted; here nothing restarts it).
    """
    def check() -> None:
        if operator.processes.running(OPERATOR_PROCESS) is None:
            lines = (operator.log.read_text(errors="replace").splitlines()[-5:]
                     if operator.log.exists() else [])
            tail = "\n".join(line[:300] for line in lines)
            raise RuntimeError(f"the operator exited; see {operator.log}:\n{tail}")
    return check


def start(operator: Operator, **env: str) -> float:
    """Starts the operator; the seconds from its process start until it records live.

    That is ``Operator.start``'s return, but for one thing: it gives up after the
    stack's readiness timeout (180 s), which a start over 50,000 records on two cores may
    need more than. While the process lives, the wait goes on here. The operator runs
    with its own lease timing (``LEASE_ENV``) unless ``env`` says otherwise.
    """
    live_before = times_recording_live(operator)
    began = time.monotonic()
    try:
        operator.start(**(LEASE_ENV | env))
    except RuntimeError:
        if operator.processes.running(OPERATOR_PROCESS) is None:
            raise
        print("the operator is still starting after the readiness timeout: waiting on",
              flush=True)
        deadline = began + DONE_TIMEOUT_SECONDS
        while times_recording_live(operator) <= live_before:
            if operator.processes.running(OPERATOR_PROCESS) is None or (
                    time.monotonic() > deadline):
                raise
            time.sleep(1)
    return time.monotonic() - began


def times_recording_live(operator: Operator) -> int:
    """How often the operator's log says it records live (once per start)."""
    if not operator.log.exists():
        return 0
    return sum(1 for line in operator.log.read_text(errors="replace").splitlines()
               if line.startswith("{") and RECORDING_LIVE in line
               and json.loads(line).get("message") == RECORDING_LIVE)


def names(count: int) -> list[str]:
    return [f"bench-{n:05d}" for n in range(count)]


def manifest(name: str) -> dict[str, Any]:
    env = {ENV_NAME: "initial"} | {f"SETTING_{n:02d}": f"value-{n:02d}"
                                   for n in range(1, ENV_VARS)}
    body = deployment(name, replicas=0, env=env)
    # The Deployment controller compares each Deployment with every ReplicaSet of its
    # namespace: at the default of 10 kept per Deployment, 10,000 of them made it fall
    # minutes behind the fill. The operator does not look at old ReplicaSets.
    body["spec"]["revisionHistoryLimit"] = 1
    return body


def create_deployments(admin: client.ApiClient, deployments: list[str]) -> float:
    """Creates the Deployments from 16 threads; returns how long it took (s)."""
    apps = client.AppsV1Api(admin)

    def create(name: str) -> None:
        for attempt in range(WRITE_TRIES):
            try:
                # The client sends a plain dict as it is, which the builder makes.
                body: Any = manifest(name)
                apps.create_namespaced_deployment(NAMESPACE, body, _preload_content=False)
                return
            except ApiException as error:
                if error.status == 409:  # an earlier try was accepted after all
                    return
                if error.status not in RETRIED_STATUSES:
                    raise
            except urllib3.exceptions.HTTPError:
                pass  # a connection dropped under load: try again
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"the apiserver never accepted Deployment {name}")

    started = time.monotonic()
    step = max(1, len(deployments) // 10)
    with ThreadPoolExecutor(WRITERS) as pool:
        for done, future in enumerate(as_completed(
                [pool.submit(create, name) for name in deployments]), start=1):
            future.result()
            if done % step == 0 or done == len(deployments):
                print(f"created {done}/{len(deployments)} Deployments", flush=True)
    return time.monotonic() - started


class SideWriter:
    """Another client of the apiserver: admin patching ConfigMaps as fast as answered.

    Its namespace is its own and ConfigMaps are not audited, so the operator never sees
    these writes: the writer measures only what is left of the apiserver for others.
    Each thread patches a ConfigMap of its own; the threads stop when told, or after
    ``DONE_TIMEOUT_SECONDS`` at the latest.
    """

    def __init__(self, admin: client.ApiClient, threads: int = SIDE_THREADS) -> None:
        self._core = client.CoreV1Api(admin)
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True,
                                          name=f"side writer {n}") for n in range(threads)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._accepted = 0
        self._failed = 0

    def start(self) -> None:
        try:
            self._core.create_namespace(client.V1Namespace(
                metadata=client.V1ObjectMeta(name=SIDE_NAMESPACE)), _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
        for n, thread in enumerate(self._threads):
            self._core.create_namespaced_config_map(SIDE_NAMESPACE, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"side-{n}"), data={"n": "0"}),
                _preload_content=False)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self._failed:
            print(f"side writer: {self._failed} writes failed", file=sys.stderr)

    def mark(self) -> tuple[float, int]:
        """(now, writes accepted so far): two marks give a rate."""
        with self._lock:
            return time.monotonic(), self._accepted

    def _run(self, number: int) -> None:
        deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
        written = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            written += 1
            try:
                self._core.patch_namespaced_config_map(
                    f"side-{number}", SIDE_NAMESPACE, {"data": {"n": str(written)}},
                    _preload_content=False)
            except (ApiException, urllib3.exceptions.HTTPError):
                with self._lock:
                    self._failed += 1
                time.sleep(0.2)
                continue
            with self._lock:
                self._accepted += 1


def rate(since: tuple[float, int], until: tuple[float, int]) -> float:
    return (until[1] - since[1]) / (until[0] - since[0])


def first_install(operator: Operator, arrivals: Arrivals, side: SideWriter,
                  writers: Writers, deployments: list[str],
                  ) -> tuple[dict[str, float], dict[str, float]]:
    """The operator's first start over ``deployments``: until all are inventoried; and
    the figures of the changes made meanwhile (``INVENTORY_PROBES``)."""
    side.start()
    time.sleep(2)  # past the threads' first connections
    before = side.mark()
    time.sleep(BASELINE_SECONDS)
    at_start = side.mark()
    print(f"other writers: {rate(before, at_start):.0f} writes/s before the operator starts; "
          f"first install over {len(deployments)} Deployments", flush=True)
    try:
        began = time.monotonic()
        live_s = start(operator)
        probes = changes_for("inventory", deployments[-INVENTORY_PROBES:], INVENTORY_PROBES)
        sent = writers.send(probes, rate=INVENTORY_PROBES_PER_SECOND)
        wait_recorded(arrivals, set(sent.answered), check=running(operator))
        during = outcome(probes, sent, arrivals, None)
        print(f"first install: {len(sent.answered)} changes made during the inventory, "
              f"recorded after {during['p50_record_ms']:.0f} ms (median), "
              f"{len(arrivals.inventoried)}/{len(deployments)} inventoried", flush=True)
        wait_for(lambda: len(arrivals.inventoried) >= len(deployments), arrivals,
                 lambda: f"first install: {len(arrivals.inventoried)}/{len(deployments)} "
                         "inventoried", check=running(operator))
        at_end = side.mark()
    finally:
        side.stop()
    with arrivals.lock:
        done = arrivals.last_inventoried_at
        inventoried = len(arrivals.inventoried)
    return {
        "first_install_s": done - began if inventoried >= len(deployments) else float("nan"),
        "inventoried": float(inventoried),
        "live_s": live_s,
        "other_writers_baseline_per_s": rate(before, at_start),
        "other_writers_per_s": rate(at_start, at_end),
    }, during


def wait_for(done: Callable[[], bool], arrivals: Arrivals, progress: Callable[[], str], *,
             check: Callable[[], None]) -> None:
    """Until ``done()``, or no record at all came for ``QUIET_SECONDS`` (counted from the
    call at the earliest); says how it goes."""
    called = time.monotonic()
    deadline = called + DONE_TIMEOUT_SECONDS
    next_progress = called + PROGRESS_EVERY_SECONDS
    while not done() and time.monotonic() < deadline:
        check()
        with arrivals.lock:
            quiet = time.monotonic() - max(called, arrivals.last_record_at)
        if quiet > QUIET_SECONDS:
            print(f"no record for {QUIET_SECONDS:.0f}s: {progress()}", file=sys.stderr)
            return
        if time.monotonic() >= next_progress:
            print(progress(), flush=True)
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(0.2)


def wait_quiet(arrivals: Arrivals, seconds: float) -> None:
    """Until no record has come for ``seconds`` (a rollout's own record lands late)."""
    while True:
        with arrivals.lock:
            quiet = time.monotonic() - arrivals.last_record_at
        if quiet >= seconds:
            return
        time.sleep(seconds - quiet)


def fill(operator: Operator, writers: Writers, arrivals: Arrivals, deployments: list[str], *,
         target: int, offset: int) -> dict[str, float]:
    """Changes over every Deployment, as fast as accepted, until ``target`` records exist.

    Each round ends once its changes, and the rollouts they started, are recorded.
    """
    totals = {"changes": 0.0, "lost": 0.0, "duplicates": 0.0, "verified": 0.0,
              "by_admission": 0.0}
    started = time.monotonic()
    accepted_per_s = float("nan")
    records_per_change = MAX_RECORDS_PER_CHANGE
    for _ in range(FILL_ROUNDS):
        missing = target - arrivals.count()
        if missing <= 0:
            break
        count = math.ceil(missing / records_per_change)
        print(f"fill: {count} changes for the {missing} records still missing "
              f"({arrivals.count()} of {target})", flush=True)
        before = arrivals.count()
        figures = fill_round(writers, arrivals,
                             changes_for("fill", deployments, count, offset=offset),
                             check=running(operator))
        settle_rollouts(arrivals, running(operator))
        offset += count
        # This round's own ratio sizes the next one, if the estimate fell short.
        records_per_change = max(1.0, (arrivals.count() - before) / count)
        accepted_per_s = figures["accepted_per_s"]
        for key in totals:
            totals[key] += figures[key]
    return {**totals, "fill_s": time.monotonic() - started, "accepted_per_s": accepted_per_s}


def fill_round(writers: Writers, arrivals: Arrivals, changes: list[Change], *,
               check: Callable[[], None]) -> dict[str, float]:
    """Sends ``changes`` as fast as accepted and waits until they, and their rollouts,
    are recorded."""
    count, values = len(changes), {change.value for change in changes}
    sent = writers.send(changes, rate=None, progress=lambda answered: print(
        f"fill: {answered}/{count} accepted, {arrivals.recorded(values)}/{count} recorded",
        flush=True))
    wait_recorded(arrivals, set(sent.answered), check=check, progress=lambda recorded: print(
        f"fill: {recorded}/{count} recorded", flush=True))
    return outcome(changes, sent, arrivals, None)


def settle_rollouts(arrivals: Arrivals, check: Callable[[], None]) -> None:
    """Until the controller has rolled out every Deployment and no record came for 5 s:
    then every rollout's completion is recorded too, and nothing more is on its way."""
    stuck_since, left = time.monotonic(), -1
    next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
    while True:
        check()
        with arrivals.lock:
            rolling = len(arrivals.rolling)
        if not rolling:
            break
        if rolling != left:
            stuck_since, left = time.monotonic(), rolling
        elif time.monotonic() - stuck_since > ROLLOUTS_STUCK_SECONDS:
            print(f"{rolling} Deployments still rolling out, none finished for "
                  f"{ROLLOUTS_STUCK_SECONDS:.0f}s: going on", file=sys.stderr)
            break
        if time.monotonic() >= next_progress:
            print(f"rollouts: {rolling} Deployments still rolling out", flush=True)
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(0.5)
    wait_quiet(arrivals, 5.0)


def wait_documents(arrivals: Arrivals, elasticsearch: Any, check: Callable[[], None]
                   ) -> None:
    """Until Elasticsearch holds a document per record (or its count stops growing)."""
    counted, grew_at = -1, time.monotonic()
    next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
    while True:
        check()
        documents = int(elasticsearch.count(index=DOCUMENTS_INDEX)["count"])
        records = arrivals.count()
        if documents >= records:
            return
        if documents > counted:
            counted, grew_at = documents, time.monotonic()
        elif time.monotonic() - grew_at > QUIET_SECONDS:
            print(f"Elasticsearch holds {documents} of {records} documents and no more come",
                  file=sys.stderr)
            return
        if time.monotonic() >= next_progress:
            print(f"documents: {documents}/{records} searchable", flush=True)
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(1)


def wait_idle(operator: Operator, what: str) -> float:
    """Until the operator uses less than ``IDLE_CPU_SHARE`` of a core over
    ``IDLE_WINDOW_SECONDS``; returns the monotonic time it got there.

    "Recording live" is logged at the first watch event, while kopf may still be working
    through the first listings (every ReplicaSet among them): only then is it settled.
    """
    check = running(operator)
    deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
    next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
    while time.monotonic() < deadline:
        check()
        pid = operator.processes.running(OPERATOR_PROCESS)
        assert pid is not None  # check() said so
        used = profile.cpu_seconds(pid)
        time.sleep(IDLE_WINDOW_SECONDS)
        share = (profile.cpu_seconds(pid) - used) / IDLE_WINDOW_SECONDS
        if share < IDLE_CPU_SHARE:
            return time.monotonic()
        if time.monotonic() >= next_progress:
            print(f"{what}: the operator still busy ({share:.0%} of a core)", flush=True)
            next_progress += PROGRESS_EVERY_SECONDS
    print(f"{what}: the operator never went idle", file=sys.stderr)
    return time.monotonic()


def settled_memory(operator: Operator, arrivals: Arrivals, elasticsearch: Any
                   ) -> dict[str, float]:
    """The operator's memory once all is recorded and shipped and it idled a while."""
    settle_rollouts(arrivals, running(operator))
    wait_documents(arrivals, elasticsearch, running(operator))
    wait_idle(operator, "before reading memory")
    print(f"settling {SETTLE_SECONDS:.0f}s before reading the operator's memory", flush=True)
    time.sleep(SETTLE_SECONDS)
    now = operator_memory(operator)
    return {"rss_mib": now.rss_mib, "peak_rss_mib": now.peak_mib,
            "records_retained": float(arrivals.count())}


def restart(operator: Operator, arrivals: Arrivals, **env: str) -> dict[str, float]:
    """Stop, start over unchanged objects and records: the start-up's time, records, memory."""
    operator.stop()
    with arrivals.lock:
        records_before, sequence_before = len(arrivals.names), arrivals.highest_sequence
    print(f"restart over {records_before} records", flush=True)
    began = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        sampling = pool.submit(profile.Sampling.from_start,
                               lambda: operator.processes.running(OPERATOR_PROCESS),
                               operator.log.with_name("startup-profile.txt"))
        startup_s = start(operator, **env)
    settled_s = wait_idle(operator, "after the restart") - began
    print(f"the restart, until idle: py-spy:\n{sampling.result().stop().table()}",
          flush=True)
    time.sleep(STARTUP_SETTLE_SECONDS)
    peak = operator_memory(operator).peak_mib
    with arrivals.lock:
        written = arrivals.written[records_before:]
        advanced = arrivals.highest_sequence - sequence_before
    if written:
        # None is right: say what they were, the figure alone would not tell.
        print(f"the restart wrote {len(written)} records: "
              f"{dict(Counter(action for action, _, _ in written))}; e.g. "
              + ", ".join(f"{action} {kind} {name}" for action, kind, name in written[:3]),
              flush=True)
    return {"startup_s": startup_s, "settled_s": settled_s, "records": float(len(written)),
            "sequence_advanced": float(advanced), "peak_rss_mib": peak}


def catch_up(operator: Operator, writers: Writers, arrivals: Arrivals,
             deployments: list[str], count: int) -> dict[str, float]:
    """Stop, change ``count`` Deployments once each, start: until all are recorded."""
    operator.stop()
    step = max(1, len(deployments) // count)
    targets = deployments[::step][:count]
    changes: list[Change] = changes_for("catchup", targets, len(targets))
    print(f"catch-up: {len(changes)} changes while the operator is down", flush=True)
    sent = writers.send(changes, rate=None)
    began = time.monotonic()
    start(operator)
    wait_recorded(arrivals, set(sent.answered), check=running(operator),
                  progress=lambda recorded: print(
                      f"catch-up: {recorded}/{len(changes)} recorded", flush=True))
    figures = outcome(changes, sent, arrivals, None)
    # Measured from the operator's start, not from the writes: they were made before it.
    figures["catchup_s"] = figures["records_s"] + sent.started - began
    return figures
