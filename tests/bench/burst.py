"""Does kubeledger keep pace with the apiserver? ``make bench`` measures it on the local stack.

A stack of its own (``.bench``: Kubernetes with its node, Elasticsearch, the apiserver's
audit backend pointed at the operator) and the operator as a host process (``kubeledger
run``, as the integration tests run it, so a profiler can attach to it by PID). Then:

- **burst**: ``BURST_CHANGES`` image-independent changes (an env var set) over
  ``DEPLOYMENTS`` Deployments without pods, from ``WRITERS`` concurrent clients acting as
  alice and bob, sent as fast as the apiserver accepts them. Beside the operator, a bare
  watch client (raw JSON lines, no object decoding) sees the Deployments change. Three
  clocks start at the first write: when the bare watch has seen every change, when every
  AuditRecord exists (a watch on AuditRecords), when every document is searchable in
  Elasticsearch. ``burst_ratio_records`` is the first divided by the second, and
  ``burst_ratio_es`` the first divided by the third: 1.0 is as fast as the watch itself.
- **steady**: ``STEADY_RATE`` changes per second for ``STEADY_SECONDS``; the latency of
  each change, from the write's answer to its record (and to its document).

Every change has a unique value, so its record is found by content: ``lost`` (no
record), ``duplicates`` (more than one) and ``attributed_verified`` (the record names the
verified user who made it) are counted over both runs. The table goes to stdout and, last,
one JSON line with every key of the issue; the figures of scenarios not measured by this
command yet are ``null``. Nothing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from integration.kubectl import Kubectl, eventually
from integration.manifests import deployment, unique
from integration.operator import Operator
from kubeledger.core import model
from stack.cluster import Endpoints, Stack

CHECKOUT = Path(__file__).resolve().parents[2]
DIRECTORY = CHECKOUT / ".bench"
NAMESPACE = "demo"  # alice and bob may edit it
DEPLOYMENTS = int(os.environ.get("BENCH_DEPLOYMENTS", "200"))
BURST_CHANGES = int(os.environ.get("BENCH_BURST_CHANGES", "2000"))
WRITERS = 16
STEADY_RATE = 100.0
STEADY_SECONDS = float(os.environ.get("BENCH_STEADY_SECONDS", "20"))
USERS = ("alice", "bob")
DONE_TIMEOUT_SECONDS = 900.0
UNMEASURED = ("rss_mib_10k", "startup_10k_s", "startup_10k_records", "catchup_1k_changed_s",
              "first_install_10k_s", "first_install_other_writers_per_s")


@dataclass(frozen=True)
class Change:
    deployment: str
    user: str
    value: str


@dataclass
class Arrivals:
    """When each change's value was first seen by a watch (monotonic clock)."""

    seen: dict[str, float] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RawWatch:
    """A watch read as raw JSON lines from a thread: as cheap as a client can be.

    ``open_stream(resource_version)`` starts one watch request (a response that is read
    as it comes); the thread reopens it from the last version seen until stopped.
    """

    def __init__(self, open_stream: Callable[[str], Any], resource_version: str,
                 on_object: Callable[[dict[str, Any], float], None]) -> None:
        self._open_stream = open_stream
        self._on_object = on_object
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._resource_version = resource_version
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            response = self._open_stream(self._resource_version)
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._handle(json.loads(line))
                if self._stop.is_set():
                    break
            response.release_conn()

    def _handle(self, event: dict[str, Any]) -> None:
        self._resource_version = event["object"]["metadata"]["resourceVersion"]
        if event["type"] in ("ADDED", "MODIFIED"):
            self._on_object(event["object"], time.monotonic())


def api_for(endpoints: Endpoints, context: str) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(endpoints.kubeconfig), context=context)
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = WRITERS * 2
    return api


def env_value(deployment_body: dict[str, Any]) -> str | None:
    for container in deployment_body["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env") or ():
            if variable["name"] == "BENCH":
                return str(variable.get("value"))
    return None


def record_values(record: dict[str, Any]) -> Iterator[str]:
    for change in record["spec"].get("changes") or ():
        if isinstance(change.get("new"), str):
            yield change["new"]


def write(apps: client.AppsV1Api, change: Change) -> float:
    """Sets the change's value; returns when the apiserver answered (monotonic)."""
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "BENCH", "value": change.value}]}]}}}}
    apps.patch_namespaced_deployment(change.deployment, NAMESPACE, patch,
                                     _preload_content=False)
    return time.monotonic()


def send(users: dict[str, client.AppsV1Api], changes: list[Change], *,
         rate: float | None) -> tuple[float, dict[str, float]]:
    """Writes every change (paced at ``rate`` per second, or as fast as accepted)."""
    answered: dict[str, float] = {}
    with ThreadPoolExecutor(WRITERS) as pool:
        started = time.monotonic()
        futures = {}
        for n, change in enumerate(changes):
            if rate:
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
            futures[change.value] = pool.submit(write, users[change.user], change)
        for value, future in futures.items():
            answered[value] = future.result()
    return started, answered


@dataclass
class Bench:
    """What every scenario works with: the watches' arrivals, the writers, the targets."""

    arrivals: Arrivals
    users: dict[str, client.AppsV1Api]
    targets: list[str]
    elasticsearch: Any

    def run(self, name: str, *, count: int, rate: float | None) -> dict[str, Any]:
        """One scenario: ``count`` changes (at ``rate`` per second, or all at once)."""
        arrivals, users, targets = self.arrivals, self.users, self.targets
        tag = unique(name)
        changes = [Change(targets[n % len(targets)], USERS[n % 2], f"{tag}-{n}")
                   for n in range(count)]
        values = {change.value for change in changes}
        started, answered = send(users, changes, rate=rate)
        documented = follow_documents(arrivals, values, self.elasticsearch)
        with arrivals.lock:
            watch_done = max(arrivals.seen.get(value, float("nan")) for value in values)
            first = {value: min(arrivals.records[value], key=lambda r: r["_seen"])
                     for value in values if value in arrivals.records}
            lost = len(values - arrivals.records.keys())
            duplicates = sum(len({r["metadata"]["name"] for r in arrivals.records[value]}) - 1
                             for value in values if value in arrivals.records)
        verified = sum(1 for change in changes if change.value in first
                       and first[change.value]["spec"]["initiator"].get("verified")
                       and first[change.value]["spec"]["initiator"].get("username") == change.user)
        recorded_at = {value: record["_seen"] for value, record in first.items()}
        documented_at = {value: documented[record["metadata"]["name"]]
                         for value, record in first.items()
                         if record["metadata"]["name"] in documented}
        return {
            "changes": count,
            "accepted_per_s": count / (max(answered.values()) - started),
            "watch_s": watch_done - started,
            "records_s": max(recorded_at.values(), default=float("nan")) - started,
            "es_s": max(documented_at.values(), default=float("nan")) - started,
            **latencies("record", recorded_at, answered),
            **latencies("es", documented_at, answered),
            "lost": lost, "duplicates": duplicates, "verified": verified,
        }


def follow_documents(arrivals: Arrivals, values: set[str], elasticsearch: Any
                     ) -> dict[str, float]:
    """Until every change is watched, recorded and searchable: when each document was found.

    Searched as a user would, without forcing a refresh: searchable means found.
    """
    found: dict[str, float] = {}
    deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with arrivals.lock:
            watched = values <= arrivals.seen.keys()
            names = {record["metadata"]["name"] for value in values
                     for record in arrivals.records.get(value, ())}
            recorded = values <= arrivals.records.keys()
        pending = sorted(names - found.keys())
        if pending:
            hits = elasticsearch.search(index="kubeledger-*", size=len(pending),
                                        query={"ids": {"values": pending}},
                                        source=False)["hits"]["hits"]
            now = time.monotonic()
            for hit in hits:
                found.setdefault(hit["_id"], now)
        elif watched and recorded:
            return found
        time.sleep(0.2)
    return found


def latencies(sink: str, arrived: dict[str, float], answered: dict[str, float]
              ) -> dict[str, float]:
    """p50 and p99, in ms, from each write's answer to its arrival at ``sink``."""
    spans = sorted((arrived[value] - answered[value]) * 1000 for value in arrived)
    return {f"p50_{sink}_ms": percentile(spans, 50), f"p99_{sink}_ms": percentile(spans, 99)}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    stack = Stack(DIRECTORY)
    operator: Operator | None = None
    watches: list[RawWatch] = []
    try:
        endpoints = stack.up()
        kubectl = Kubectl(endpoints)
        operator = Operator.for_stack(endpoints)
        targets = [unique("bench") for _ in range(DEPLOYMENTS)]
        kubectl.apply({"apiVersion": "v1", "kind": "List", "items": [
            deployment(name, replicas=0, env={"BENCH": "initial"}) for name in targets]})
        operator.start()
        eventually(lambda: created_records(kubectl) >= DEPLOYMENTS, timeout=600,
                   what="the records of the created Deployments")
        admin = api_for(endpoints, "admin")
        arrivals = Arrivals()

        def deployment_seen(body: dict[str, Any], at: float) -> None:
            value = env_value(body)
            if value is not None:
                with arrivals.lock:
                    arrivals.seen.setdefault(value, at)

        def record_seen(body: dict[str, Any], at: float) -> None:
            body["_seen"] = at
            with arrivals.lock:
                for value in record_values(body):
                    arrivals.records.setdefault(value, []).append(body)

        apps, records = client.AppsV1Api(admin), client.CustomObjectsApi(admin)
        record_api = (model.GROUP, model.VERSION, model.PLURAL)
        streaming: dict[str, Any] = {"watch": True, "allow_watch_bookmarks": True,
                                     "timeout_seconds": 10, "_preload_content": False}
        # The client's models are typed loosely for what it decodes: read them as such.
        deployments_now: Any = apps.list_namespaced_deployment(NAMESPACE, limit=1)
        records_now: Any = records.list_cluster_custom_object(*record_api, limit=1)
        watches.append(RawWatch(
            lambda version: apps.list_namespaced_deployment(
                NAMESPACE, resource_version=version, **streaming),
            str(deployments_now.metadata.resource_version), deployment_seen))
        watches.append(RawWatch(
            lambda version: records.list_cluster_custom_object(
                *record_api, resource_version=version, **streaming),
            str(records_now["metadata"]["resourceVersion"]), record_seen))
        users = {user: client.AppsV1Api(api_for(endpoints, user)) for user in USERS}
        elasticsearch = Elasticsearch(
            endpoints.elasticsearch_url, request_timeout=30,
            basic_auth=(endpoints.elasticsearch_username, endpoints.elasticsearch_password))
        bench = Bench(arrivals, users, targets, elasticsearch)
        burst = bench.run("burst", count=BURST_CHANGES, rate=None)
        steady = bench.run("steady", count=int(STEADY_RATE * STEADY_SECONDS), rate=STEADY_RATE)
        report(burst, steady)
        return 0
    finally:
        for watch in watches:
            watch.stop()
        if operator is not None:
            operator.stop()
        stack.purge()


def created_records(kubectl: Kubectl) -> int:
    listed = kubectl.json("get", "auditrecords", "-l", "kubeledger.io/action=created")
    return len(listed["items"])


def report(burst: dict[str, Any], steady: dict[str, Any]) -> None:
    print(f"\nkubeledger keeping pace ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; operator as a host process, audit backend "
          "and Elasticsearch on)")
    print(f"{'':28}{'burst':>12}{'steady':>12}")
    for key, label in (("changes", "changes"), ("accepted_per_s", "apiserver accepted/s"),
                       ("watch_s", "bare watch saw all (s)"),
                       ("records_s", "every record (s)"), ("es_s", "every document (s)"),
                       ("p50_record_ms", "p50 change->record ms"),
                       ("p99_record_ms", "p99 change->record ms"),
                       ("p50_es_ms", "p50 change->document ms"),
                       ("p99_es_ms", "p99 change->document ms"),
                       ("lost", "lost"), ("duplicates", "duplicates"),
                       ("verified", "attributed, verified")):
        print(f"{label:28}{burst[key]:>12.1f}{steady[key]:>12.1f}")
    figures: dict[str, Any] = {
        "burst_ratio_records": burst["watch_s"] / burst["records_s"],
        "burst_ratio_es": burst["watch_s"] / burst["es_s"],
        "burst_accepted_per_s": burst["accepted_per_s"],
        "p50_change_to_record_ms": steady["p50_record_ms"],
        "p99_change_to_record_ms": steady["p99_record_ms"],
        "p50_change_to_es_ms": steady["p50_es_ms"],
        "p99_change_to_es_ms": steady["p99_es_ms"],
        "burst_p50_change_to_record_ms": burst["p50_record_ms"],
        "burst_p99_change_to_record_ms": burst["p99_record_ms"],
        "burst_p50_change_to_es_ms": burst["p50_es_ms"],
        "burst_p99_change_to_es_ms": burst["p99_es_ms"],
        **dict.fromkeys(UNMEASURED),
        "lost": burst["lost"] + steady["lost"],
        "duplicates": burst["duplicates"] + steady["duplicates"],
        "attributed_verified": burst["verified"] + steady["verified"],
        "changes": burst["changes"] + steady["changes"],
    }
    print(f"burst ratio: records {figures['burst_ratio_records']:.2f}, "
          f"documents {figures['burst_ratio_es']:.2f} (1.0 = as fast as a bare watch)")
    print(json.dumps({key: round(value, 3) if isinstance(value, float) else value
                      for key, value in figures.items()}))


if __name__ == "__main__":
    sys.exit(main())
