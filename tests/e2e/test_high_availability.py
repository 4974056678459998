"""Two replicas from the chart: one writer, one warm standby, and failovers in a burst.

Each failover test sends a burst of 200 changes by alice and bob (one env var set on
each of 200 Deployments, about 10 per second from 8 clients) and disrupts the leader a
quarter of the way in: the pod deleted, the release upgraded to a new image tag, the
leader's process killed. Afterwards every change must have exactly one record and one
Elasticsearch document, the chain must verify, and the changes must be attributed.

Each change goes to its own Deployment. Changes made while no replica watched are seen
by the next leader's first listing, and several changes to one object in that gap would
be one record (the listing shows only the last state); one change per object keeps
"exactly one record per change" exact.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from kubernetes import client, config

from integration.kubectl import Kubectl, eventually
from integration.manifests import deployment, unique
from integration.operator import verify_chain
from stack import release
from stack.prometheus import Prometheus

BURST = 200
RATE_PER_SECOND = 10.0
CLIENTS = 8
DISRUPT_AT = BURST // 4
LEADS_WITHIN_SECONDS = 20.0
USERS = ("alice", "bob")


@dataclass(frozen=True)
class Change:
    deployment: str
    user: str
    value: str


@pytest.fixture(scope="module")
def targets(kubectl: Kubectl, in_cluster: release.Release) -> list[str]:
    """200 Deployments with no pods (a burst of rollouts would swamp a 2-core node)."""
    names = [unique("ha") for _ in range(BURST)]
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": [
        deployment(name, replicas=0, env={"BURST": "initial"}) for name in names]})
    # Every creation recorded before the first burst: its records are not the burst's.
    eventually(lambda: len(records_of(kubectl, set(names), action="created")) == BURST,
               timeout=180, what="the records of the 200 created Deployments")
    return names


@pytest.fixture(scope="module")
def users(in_cluster: release.Release) -> Iterator[dict[str, client.AppsV1Api]]:
    """alice's and bob's API clients (client certificates from the stack's kubeconfig)."""
    apis = {user: client.AppsV1Api(config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(in_cluster.endpoints.kubeconfig), context=user)) for user in USERS}
    yield apis
    for api in apis.values():
        api.api_client.close()


def test_two_replicas_run_one_writer_and_one_standby(
    kubectl: Kubectl, in_cluster: release.Release,
) -> None:
    pods = ready_pods(kubectl)
    assert len(pods) == 2, pods
    holder = lease(kubectl)["holderIdentity"]
    assert holder.rsplit("_", 1)[0] in pods, (holder, pods)


def test_a_real_prometheus_scrapes_both_replicas_and_finds_one_leader(
    kubectl: Kubectl, in_cluster: release.Release, targets: list[str],
) -> None:
    with Prometheus(in_cluster.endpoints, release.NAMESPACE) as prometheus:
        prometheus.wait_for_targets(count=2)
        leaders = eventually(lambda: prometheus.query("kubeledger_leader == 1"), timeout=30,
                             what="a leader in Prometheus")
        assert [series["metric"]["pod"] for series in leaders] == [pod_of(lease(kubectl))]
        assert scalar(prometheus, "count(kubeledger_leader)") == 2
        # The writer's chain head, as Prometheus scraped it, is the newest record's sequence.
        eventually(lambda: scalar(prometheus, "max(kubeledger_chain_head_sequence)")
                   == newest_sequence(kubectl), timeout=30,
                   what="Prometheus's chain head to match the records")
        created = scalar(prometheus, 'sum(kubeledger_records_written_total{kind="Deployment",'
                                     'action="created"})')
        assert created >= len(targets)


def scalar(prometheus: Prometheus, expr: str) -> float:
    (series,) = prometheus.query(expr)
    return float(series["value"][1])


def newest_sequence(kubectl: Kubectl) -> int:
    return max(int(r["spec"]["chain"]["sequence"])
               for r in kubectl.json("get", "auditrecords")["items"])


@pytest.mark.parametrize("disruption", ["delete-pod", "helm-upgrade", "kill-process"])
def test_a_failover_in_a_burst_loses_doubles_and_forks_nothing(
    disruption: str, *, kubectl: Kubectl, in_cluster: release.Release,
    elasticsearch: Elasticsearch, targets: list[str], users: dict[str, client.AppsV1Api],
) -> None:
    before = lease(kubectl)
    disrupt = {"delete-pod": delete_leader_pod, "helm-upgrade": upgrade_to_new_tag,
               "kill-process": kill_leader_process}[disruption]

    with LeaseHistory(kubectl) as history:
        changes = burst(users, targets, tag=unique(disruption),
                        disrupt=lambda: disrupt(kubectl, in_cluster, before))
        after = eventually(lambda: lease_changed_hands(kubectl, before), timeout=60,
                           what="a new leader")
    leaderless = seconds_between(history.last_renewal_by(before["holderIdentity"]),
                                 after["acquireTime"])
    records = eventually(lambda: complete(kubectl, changes), timeout=180,
                         what="a record of every change of the burst")
    unattributed = [r for r in records.values()
                    if not r["spec"]["initiator"].get("verified")]
    made_by = {change.deployment: change.user for change in changes}
    wrong_user = [name for name, r in records.items()
                  if r["spec"]["initiator"].get("username")
                  not in (None, made_by[r["spec"]["subject"]["name"]])]
    documents = eventually(lambda: documents_of(elasticsearch, set(records)), timeout=60,
                           what="a document of every record")
    verdict = verify_chain(in_cluster.endpoints)
    print(f"\n{disruption}: leaderless {leaderless:.1f}s; {len(records)} records, "
          f"{len(documents)} documents for {len(changes)} changes; "
          f"{len(records) - len(unattributed)} verified, {len(unattributed)} not "
          f"({', '.join(sorted({r['spec']['initiator']['source'] for r in unattributed}))})")

    assert leaderless <= LEADS_WITHIN_SECONDS
    assert len(records) == len(changes)  # ``complete`` checked one record per change
    assert sorted(documents) == sorted(records)
    assert not wrong_user
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "intact" in verdict.stdout
    assert len(ready_pods(kubectl)) == 2


# The burst and the disruptions.

def burst(users: dict[str, client.AppsV1Api], targets: list[str], *, tag: str,
          disrupt: Callable[[], None]) -> list[Change]:
    """Sets ``BURST`` on every target at a steady pace, disrupting a quarter of the way in."""
    changes = [Change(name, USERS[n % 2], f"{tag}-{n}") for n, name in enumerate(targets)]
    failures: list[BaseException] = []
    disruption = threading.Thread(target=_capture(disrupt, failures))
    with ThreadPoolExecutor(CLIENTS) as pool:
        started = time.monotonic()
        futures = []
        for n, change in enumerate(changes):
            time.sleep(max(0.0, started + n / RATE_PER_SECOND - time.monotonic()))
            if n == DISRUPT_AT:
                disruption.start()
            futures.append(pool.submit(_set_env, users[change.user], change))
        for future in futures:
            future.result()
    disruption.join()
    if failures:
        raise failures[0]
    return changes


def _set_env(api: client.AppsV1Api, change: Change) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "BURST", "value": change.value}]}]}}}}
    api.patch_namespaced_deployment(change.deployment, "demo", patch)


def _capture(work: Callable[[], None], failures: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        except BaseException as error:  # re-raised by the test's thread
            failures.append(error)
    return run


def delete_leader_pod(kubectl: Kubectl, _: release.Release, held: dict[str, Any]) -> None:
    kubectl("delete", "pod", "-n", release.NAMESPACE, pod_of(held), "--wait=false")


def upgrade_to_new_tag(kubectl: Kubectl, in_cluster: release.Release, _: dict[str, Any]
                       ) -> None:
    repository, tag = in_cluster.image.rsplit(":", 1)
    retagged = f"{repository}:{tag}-{unique('upgrade')}"
    in_cluster.stack.tag_image(in_cluster.image, retagged)
    in_cluster.upgrade(image={"repository": repository, "tag": retagged.rsplit(":", 1)[1],
                              "pullPolicy": "Never"})


def kill_leader_process(kubectl: Kubectl, _: release.Release, held: dict[str, Any]) -> None:
    """SIGKILL of the leader's ``kubeledger run``, found among the host's processes."""
    pod = pod_of(held)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"KUBELEDGER_POD_NAME={pod}".encode() in environ and b"run" in command:
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError(f"no kubeledger process of pod {pod} found")


# Reading what came of it.

def lease(kubectl: Kubectl) -> dict[str, Any]:
    spec: dict[str, Any] = kubectl.json("get", "lease", "-n", release.NAMESPACE,
                                        release.FULLNAME)["spec"]
    return spec


class LeaseHistory:
    """The Lease as seen every quarter second, from a thread, while the block runs."""

    def __init__(self, kubectl: Kubectl) -> None:
        self._kubectl = kubectl
        self.seen: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self) -> LeaseHistory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            self.seen.append(lease(self._kubectl))

    def last_renewal_by(self, holder: str) -> str:
        """The last renewal of ``holder``'s term: its own, or its release of the Lease."""
        renewals = [str(spec["renewTime"]) for spec in self.seen
                    if spec.get("holderIdentity") in (holder, "", None)]
        return max(renewals)


def lease_changed_hands(kubectl: Kubectl, before: dict[str, Any]) -> dict[str, Any] | None:
    now = lease(kubectl)
    taken = now.get("holderIdentity") and now.get("acquireTime") != before.get("acquireTime")
    return now if taken else None


def pod_of(held: dict[str, Any]) -> str:
    holder: str = held["holderIdentity"]
    return holder.rsplit("_", 1)[0]


def ready_pods(kubectl: Kubectl) -> list[str]:
    pods = kubectl.json("get", "pods", "-n", release.NAMESPACE, "-l",
                        f"app.kubernetes.io/instance={release.RELEASE}")["items"]
    return [pod["metadata"]["name"] for pod in pods
            if not pod["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in pod["status"].get("conditions") or ())]


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def records_of(kubectl: Kubectl, names: set[str], *, action: str | None = None
               ) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "auditrecords", "-l",
                                               "kubeledger.io/subject-namespace=demo")["items"]
    return [r for r in items if r["spec"]["subject"]["name"] in names
            and action in (None, r["spec"]["action"])]


def complete(kubectl: Kubectl, changes: list[Change]) -> dict[str, dict[str, Any]] | None:
    """The record of each change, by record name; None until every change has exactly one."""
    values = {change.value: change for change in changes}
    found: dict[str, list[dict[str, Any]]] = {value: [] for value in values}
    for record in records_of(kubectl, {change.deployment for change in changes}):
        for field in record["spec"]["changes"]:
            if isinstance(field.get("new"), str) and field["new"] in values:
                found[field["new"]].append(record)
    doubled = {value: [r["metadata"]["name"] for r in rs] for value, rs in found.items()
               if len(rs) > 1}
    assert not doubled, f"changes recorded twice: {json.dumps(doubled)}"
    if any(not rs for rs in found.values()):
        return None
    return {rs[0]["metadata"]["name"]: rs[0] for rs in found.values()}


def documents_of(elasticsearch: Elasticsearch, names: set[str]) -> list[str] | None:
    elasticsearch.indices.refresh(index="kubeledger-*")
    hits = elasticsearch.search(index="kubeledger-*", query={"ids": {"values": sorted(names)}},
                                size=len(names) * 2)["hits"]["hits"]
    found = [hit["_id"] for hit in hits]
    return found if len(found) >= len(names) else None
