"""The machinery every phase of the stack bench shares: watches, writers, latencies.

- :class:`RawWatch` reads a watch as raw JSON lines in a thread, the cheapest a client can
  be. On Deployments it is the pace reference (when could *any* client have seen the
  change); on AuditRecords it is the bench's one source of what was recorded, so 50,000
  records are counted as they come instead of being listed again and again.
- :class:`Arrivals` keeps what the two watches saw, compactly (a record is kept as its
  name, when it was seen and who it names, never as its body).
- :class:`Writers` makes changes as alice and bob: one env var set to a unique value, so
  a change's record is found by content; paced, or as fast as the apiserver accepts.
- :func:`outcome` turns one phase's writes and arrivals into figures: lost, duplicates,
  verified attribution, latency percentiles.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from integration.manifests import unique
from stack.cluster import Endpoints

NAMESPACE = "demo"  # alice and bob may edit it
USERS = ("alice", "bob")
WRITERS = 16
ENV_NAME = "BENCH"
# Every value a change sets starts so: the watches index these and nothing else (the
# initial values, the records' snapshots), which keeps the bench's own memory small.
CHANGE_PREFIX = "change-"
PROGRESS_EVERY_SECONDS = 10.0
# A phase's changes are given up on (counted lost) once no record at all has arrived for
# this long: the operator is then not busy with anything that could still bring them.
QUIET_SECONDS = 60.0
DONE_TIMEOUT_SECONDS = 1800.0
# Answers worth another try: the apiserver busy or restarting, not a refusal.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
WRITE_TRIES = 5
IDS_PER_SEARCH = 1000  # well below Elasticsearch's max_result_window (10,000)

Lister = Callable[..., Any]  # a client list call taking resource_version, watch, limit, ...


def api_for(endpoints: Endpoints, context: str) -> client.ApiClient:
    """A client of the stack's apiserver as ``context`` (admin, alice, bob)."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(endpoints.kubeconfig), context=context)
    # Every writer thread keeps a connection of its own, and the watches theirs.
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = WRITERS * 2
    return api


class Expired(Exception):  # noqa: N818 (read qualified, like the apiserver's "410 Gone")
    """The watch's resourceVersion is too old: list again."""


class RawWatch:
    """List, then watch from the listing's resourceVersion, in a thread, until stopped.

    ``lister`` is a client list call (``list_namespaced_deployment`` with its namespace
    bound, say). Every object listed or watched (ADDED, MODIFIED) is handed to
    ``on_object`` with the monotonic time it was decoded. A watch the apiserver closes is
    reopened from the last resourceVersion seen; one whose history expired (410) lists
    again, so nothing is missed. ``start()`` returns once the first watch request is open.
    """

    def __init__(self, what: str, lister: Lister,
                 on_object: Callable[[dict[str, Any], float], None]) -> None:
        self._what = what
        self._lister = lister
        self._on_object = on_object
        self._stop = threading.Event()
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)
        self._resource_version: str | None = None

    def start(self) -> RawWatch:
        self._thread.start()
        if not self._open.wait(timeout=300):
            raise RuntimeError(f"the {self._what} watch did not open")
        return self

    def stop(self) -> None:
        self._stop.set()
        # The server ends each watch request within its timeout_seconds (10).
        self._thread.join(timeout=20)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._resource_version is None:
                    self._resource_version = self._list()
                self._watch(self._resource_version)
            except Expired:
                print(f"{self._what} watch: history expired, listing again", file=sys.stderr)
                self._resource_version = None
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                # The bench goes on: the next request resumes where this one stopped.
                print(f"{self._what} watch: {type(error).__name__}: {error}; reopening",
                      file=sys.stderr)
                time.sleep(1)

    def _list(self) -> str:
        """Hands every present object on; returns the listing's resourceVersion."""
        token: str | None = None
        while True:
            response = self._lister(limit=500, _continue=token, _preload_content=False)
            page = json.loads(response.data)
            now = time.monotonic()
            for item in page["items"]:
                self._on_object(item, now)
            token = page["metadata"].get("continue")
            if not token:
                return str(page["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> None:
        response = self._lister(watch=True, resource_version=resource_version,
                                allow_watch_bookmarks=True, timeout_seconds=10,
                                _preload_content=False)
        self._open.set()
        try:
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._handle(json.loads(line))
                if self._stop.is_set():
                    return
        finally:
            response.release_conn()

    def _handle(self, event: dict[str, Any]) -> None:
        kind, body = event["type"], event["object"]
        if kind == "ERROR":
            if body.get("code") == 410:
                raise Expired
            raise ValueError(f"watch error: {body.get('message')}")
        self._resource_version = body["metadata"]["resourceVersion"]
        if kind in ("ADDED", "MODIFIED"):
            self._on_object(body, time.monotonic())


class Seen(NamedTuple):
    """One AuditRecord as the bench keeps it."""

    name: str
    at: float  # monotonic time the records watch saw it
    verified: bool
    username: str | None
    source: str | None  # where the identity came from: admission, audit, ...


@dataclass
class Arrivals:
    """What the watches saw: each change value's first sight, and every record."""

    seen: dict[str, float] = field(default_factory=dict)  # value -> on a Deployment
    # Deployments whose latest spec the controller has not rolled out yet: its rollout's
    # completion is a record of its own, which may come long after the change.
    rolling: set[str] = field(default_factory=set)
    records: dict[str, list[Seen]] = field(default_factory=dict)  # value -> its records
    names: set[str] = field(default_factory=set)  # every record, once
    actions: Counter[str] = field(default_factory=Counter)
    # (action, kind, namespace/name) of every record in arrival order: what a phase wrote.
    written: list[tuple[str, str, str]] = field(default_factory=list)
    inventoried: set[str] = field(default_factory=set)  # Deployments in NAMESPACE
    last_inventoried_at: float = float("nan")
    highest_sequence: int = -1
    last_record_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deployment_seen(self, body: dict[str, Any], at: float) -> None:
        value = env_value(body)
        metadata, status = body["metadata"], body.get("status") or {}
        # Without pods (replicas 0), observing the generation is the whole rollout.
        rolling = status.get("observedGeneration", 0) < metadata.get("generation", 0)
        with self.lock:
            if value is not None and value.startswith(CHANGE_PREFIX):
                self.seen.setdefault(value, at)
            if rolling:
                self.rolling.add(metadata["name"])
            else:
                self.rolling.discard(metadata["name"])

    def record_seen(self, body: dict[str, Any], at: float) -> None:
        name, spec = body["metadata"]["name"], body["spec"]
        initiator = spec.get("initiator") or {}
        seen = Seen(name, at, bool(initiator.get("verified")), initiator.get("username"),
                    initiator.get("source"))
        subject = spec["subject"]
        with self.lock:
            if name in self.names:
                return  # listed again after an expired watch: counted already
            self.names.add(name)
            self.actions[spec["action"]] += 1
            self.written.append((spec["action"], subject["kind"],
                                 f"{subject.get('namespace') or ''}/{subject['name']}"))
            self.highest_sequence = max(self.highest_sequence, spec["chain"]["sequence"])
            self.last_record_at = at
            if (spec["action"] == "inventoried" and subject["kind"] == "Deployment"
                    and subject.get("namespace") == NAMESPACE):
                self.inventoried.add(subject["name"])
                self.last_inventoried_at = at
            for value in record_values(spec):
                self.records.setdefault(value, []).append(seen)

    def count(self) -> int:
        with self.lock:
            return len(self.names)

    def recorded(self, values: Iterable[str]) -> int:
        with self.lock:
            return sum(1 for value in values if value in self.records)


def env_value(deployment_body: dict[str, Any]) -> str | None:
    for container in deployment_body["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env") or ():
            if variable["name"] == ENV_NAME:
                return str(variable.get("value"))
    return None


def record_values(spec: dict[str, Any]) -> Iterator[str]:
    for change in spec.get("changes") or ():
        new = change.get("new")
        if isinstance(new, str) and new.startswith(CHANGE_PREFIX):
            yield new


@dataclass(frozen=True)
class Change:
    deployment: str
    user: str
    value: str


def changes_for(phase: str, targets: list[str], count: int, *, offset: int = 0
                ) -> list[Change]:
    """``count`` changes with unique values, round-robin over ``targets`` and the users."""
    tag = unique(f"{CHANGE_PREFIX}{phase}")
    return [Change(targets[(offset + n) % len(targets)], USERS[n % len(USERS)], f"{tag}-{n}")
            for n in range(count)]


@dataclass
class Sent:
    """One phase's writes: when sending started, when each change was answered."""

    started: float
    answered: dict[str, float]  # value -> monotonic time of the apiserver's answer
    failed: int  # changes the apiserver never accepted (after retries): not counted lost

    @property
    def accepted_per_s(self) -> float:
        if not self.answered:
            return float("nan")
        return len(self.answered) / (max(self.answered.values()) - self.started)


class Writers:
    """alice's and bob's clients, making changes from ``WRITERS`` threads."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._apps = {user: client.AppsV1Api(api_for(endpoints, user)) for user in USERS}

    def write(self, change: Change) -> float | None:
        """Sets the change's value; the time the apiserver answered, None if it never did."""
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": ENV_NAME, "value": change.value}]}]}}}}
        for attempt in range(WRITE_TRIES):
            try:
                self._apps[change.user].patch_namespaced_deployment(
                    change.deployment, NAMESPACE, patch, _preload_content=False)
                return time.monotonic()
            except ApiException as error:
                if error.status not in RETRIED_STATUSES:
                    raise
            except urllib3.exceptions.HTTPError:
                pass  # a connection dropped under load: the same patch again is harmless
            time.sleep(0.5 * (attempt + 1))
        return None

    def send(self, changes: list[Change], *, rate: float | None,
             progress: Callable[[int], None] | None = None) -> Sent:
        """Writes every change, paced at ``rate`` per second or as fast as accepted.

        ``progress`` is called every ``PROGRESS_EVERY_SECONDS`` with how many were answered.
        """
        answered: dict[str, float] = {}
        failed = 0
        with ThreadPoolExecutor(WRITERS) as pool:
            started = time.monotonic()
            futures: dict[Future[float | None], str] = {}
            for n, change in enumerate(changes):
                if rate:
                    time.sleep(max(0.0, started + n / rate - time.monotonic()))
                futures[pool.submit(self.write, change)] = change.value
            pending: set[Future[float | None]] = set(futures)
            next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    at = future.result()
                    if at is None:
                        failed += 1
                    else:
                        answered[futures[future]] = at
                if progress is not None and pending and time.monotonic() >= next_progress:
                    progress(len(answered))
                    next_progress += PROGRESS_EVERY_SECONDS
        if failed:
            print(f"{failed} of {len(changes)} changes were never accepted", file=sys.stderr)
        return Sent(started, answered, failed)


def still_fine() -> None:
    """A ``check`` that finds nothing wrong."""


def wait_recorded(arrivals: Arrivals, values: set[str], *,
                  progress: Callable[[int], None] | None = None,
                  check: Callable[[], None] = still_fine) -> None:
    """Until every value has a record, or no record at all came for ``QUIET_SECONDS``
    (counted from the call at the earliest: the operator may have just started).

    ``check`` is called on every round and raises when waiting is pointless (the
    operator exited, say).
    """
    called = time.monotonic()
    deadline = called + DONE_TIMEOUT_SECONDS
    next_progress = called + PROGRESS_EVERY_SECONDS
    while time.monotonic() < deadline:
        check()
        recorded = arrivals.recorded(values)
        if recorded == len(values):
            return
        with arrivals.lock:
            quiet = time.monotonic() - max(called, arrivals.last_record_at)
        if quiet > QUIET_SECONDS:
            print(f"{len(values) - recorded} changes still without a record after "
                  f"{QUIET_SECONDS:.0f}s without any record: counted lost", file=sys.stderr)
            return
        if progress is not None and time.monotonic() >= next_progress:
            progress(recorded)
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(0.2)


def wait_watched(arrivals: Arrivals, values: set[str]) -> None:
    """Until the bare Deployment watch has seen every value (it is the fastest, normally)."""
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        with arrivals.lock:
            if values <= arrivals.seen.keys():
                return
        time.sleep(0.1)
    print("the bare watch missed some changes (a re-list shows only the latest value)",
          file=sys.stderr)


def follow_documents(arrivals: Arrivals, values: set[str], elasticsearch: Any, *,
                     check: Callable[[], None] = still_fine) -> dict[str, float]:
    """When each record of ``values`` became searchable in Elasticsearch (by record name).

    Searched as a user would, without forcing a refresh: searchable means found. Runs
    until every record is found, or until no record came and no document was found for
    ``QUIET_SECONDS``.
    """
    found: dict[str, float] = {}
    deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
    last_progress = time.monotonic()
    while time.monotonic() < deadline:
        check()
        with arrivals.lock:
            names = {seen.name for value in values for seen in arrivals.records.get(value, ())}
            all_recorded = values <= arrivals.records.keys()
            last_record_at = arrivals.last_record_at
        pending = sorted(names - found.keys())
        for start in range(0, len(pending), IDS_PER_SEARCH):
            ids = pending[start:start + IDS_PER_SEARCH]
            hits = elasticsearch.search(index="kubeledger-*", size=len(ids),
                                        query={"ids": {"values": ids}},
                                        source=False)["hits"]["hits"]
            now = time.monotonic()
            for hit in hits:
                if hit["_id"] not in found:
                    found[hit["_id"]] = now
                    last_progress = now
        if not pending and all_recorded:
            return found
        if time.monotonic() - max(last_progress, last_record_at) > QUIET_SECONDS:
            return found
        time.sleep(0.2)
    return found


def outcome(changes: list[Change], sent: Sent, arrivals: Arrivals,
            documented: dict[str, float] | None) -> dict[str, float]:
    """One phase's figures, from its writes and what the watches (and searches) saw.

    A change counts as recorded by its first record; ``duplicates`` are records beyond one
    per change. Latencies run from each write's answer to the first record (and to its
    document). Changes never accepted are left out of everything.
    """
    values = set(sent.answered)
    with arrivals.lock:
        seen = [arrivals.seen[value] for value in values if value in arrivals.seen]
        first = {value: min(arrivals.records[value], key=lambda record: record.at)
                 for value in values if value in arrivals.records}
        duplicates = sum(len({record.name for record in arrivals.records[value]}) - 1
                         for value in first)
    verified = sum(1 for change in changes if change.value in first
                   and first[change.value].verified
                   and first[change.value].username == change.user)
    by_admission = sum(1 for record in first.values() if record.source == "admission")
    recorded_at = {value: record.at for value, record in first.items()}
    figures = {
        "changes": float(len(values)),
        "accepted_per_s": sent.accepted_per_s,
        "watch_s": max(seen, default=float("nan")) - sent.started,
        "records_s": max(recorded_at.values(), default=float("nan")) - sent.started,
        "lost": float(len(values) - len(first)),
        "duplicates": float(duplicates),
        "verified": float(verified),
        "by_admission": float(by_admission),
        **latencies("record", recorded_at, sent.answered),
    }
    if documented is not None:
        documented_at = {value: documented[record.name] for value, record in first.items()
                         if record.name in documented}
        figures["es_s"] = max(documented_at.values(), default=float("nan")) - sent.started
        figures.update(latencies("es", documented_at, sent.answered))
    return figures


def latencies(sink: str, arrived: dict[str, float], answered: dict[str, float]
              ) -> dict[str, float]:
    """p50 and p99, in ms, from each write's answer to its arrival at ``sink``."""
    spans = sorted((arrived[value] - answered[value]) * 1000 for value in arrived)
    return {f"p50_{sink}_ms": percentile(spans, 50), f"p99_{sink}_ms": percentile(spans, 99)}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def stop_all(watches: Iterable[RawWatch]) -> None:
    for watch in watches:
        with contextlib.suppress(Exception):  # stopping one must not keep the others going
            watch.stop()
