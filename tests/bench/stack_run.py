"""Does kubeledger keep pace with the apiserver, at scale? ``make bench`` measures it on a stack.

A stack of its own (``.bench``: Kubernetes with its node, Elasticsearch, the apiserver's
audit backend pointed at the operator; removed at the end) and the operator as a host
process (``kubeledger run``, as the integration tests run it, so a profiler can attach
to it by PID and its memory is read from /proc). In this order, over the same objects
and one growing ledger:

1. ``BENCH_OBJECTS`` (10,000) Deployments in ``demo``, made before the operator first
   starts; then its **first install** over them (:func:`bench.scale.first_install`),
   with another client writing beside it, and a few changes made during the inventory.
2. **burst** and **steady** with the default audit wait (:mod:`bench.burst`), on the
   first ``BENCH_DEPLOYMENTS`` of them.
3. **fill**: changes over all of them until the cluster holds ``BENCH_RECORDS``
   (50,000) records; then the operator's **memory** once settled.
4. **restart** with ``KUBELEDGER_AUDIT_WAIT_SECONDS=0``: the start-up over the unchanged
   objects and records (until it records live, ``startup_10k_s``, and until it is idle,
   ``startup_10k_settled_s``: kopf still works through its first listings after the
   first event); then **steady** again on that operator, so its latencies are those of
   the admission webhook as the live identity source (the headline
   ``p50_change_to_record_ms`` and co.; the audit-wait ones carry ``_audit_wait``).
5. **catch-up**: stop, ``BENCH_CATCHUP`` (1,000) changes, start (default settings).

The defaults are the issue's scale (over an hour on two cores: each start lists every
object); the environment variables above, with ``BENCH_BURST_CHANGES`` and
``BENCH_STEADY_SECONDS``, make a smaller run, e.g. ``BENCH_OBJECTS=600
BENCH_RECORDS=3000 BENCH_CATCHUP=100``. The keys keep their ``_10k``/``_1k`` names
whatever the scale; ``objects`` and ``records_retained`` in the JSON line say which it
was. Long phases print progress.

The operator runs with its own lease timing, not the stack's short test one (see
``bench.scale.LEASE_ENV``). The steady phases ask for ``STEADY_RATE`` (100) changes a
second; ``steady_accepted_per_s`` says what the apiserver took.

Every change has a unique value, so its record is found by content (AuditRecords are
counted from one watch, never listed again). ``lost`` (no record), ``duplicates`` (more
than one) and ``changes`` cover every phase, catch-up included. ``attributed_verified``
(the record names the verified user who made the change) counts the changes made while
the operator ran (``changes_live``) and leaves the catch-up's out: those were made while
it was down, the admission webhook (``failurePolicy: Ignore``) was not asked, and their
records are attributed after the fact; their verified count is
``catchup_attributed_verified``, apart. The table goes to stdout and, last, one JSON line;
a figure that could not be measured is ``null``. Nothing is asserted: the figures depend
on the machine.
"""

from __future__ import annotations

import functools
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from elasticsearch import Elasticsearch
from kubernetes import client

from bench import profile, scale
from bench.burst import DEPLOYMENTS, PacePhases
from bench.pace import NAMESPACE, Arrivals, RawWatch, Writers, api_for, still_fine, stop_all
from bench.report import report
from integration.kubectl import Kubectl
from integration.operator import NAME as OPERATOR_PROCESS
from integration.operator import Operator
from kubeledger.core import model
from kubeledger.kube import crd
from stack.cluster import AUDIT_BATCH_MAX_WAIT_SECONDS, Stack

CHECKOUT = Path(__file__).resolve().parents[2]
DIRECTORY = CHECKOUT / ".bench"
# The logs of the last run (the operator's among them), kept after the stack is purged.
LOGS = CHECKOUT / ".bench-logs"


def main() -> int:
    stack = Stack(DIRECTORY)
    # What an interrupted run left: a first install needs an empty ledger.
    stack.purge()
    operator: Operator | None = None
    watches: list[RawWatch] = []
    try:
        endpoints = stack.up()
        admin = api_for(endpoints, "admin")
        # The operator's own manifest, digest and all (it finds the CRD unchanged), so
        # that the records watch runs before the very first record is written.
        Kubectl(endpoints).install_crd(crd.manifest())
        deployments = scale.names(scale.OBJECTS)
        took = scale.create_deployments(admin, deployments)
        print(f"{len(deployments)} Deployments created in {took:.0f}s", flush=True)

        arrivals = Arrivals()
        records = client.CustomObjectsApi(admin)
        watches.append(RawWatch("AuditRecord", functools.partial(
            records.list_cluster_custom_object, model.GROUP, model.VERSION, model.PLURAL),
            arrivals.record_seen).start())
        watches.append(RawWatch("Deployment", functools.partial(
            client.AppsV1Api(admin).list_namespaced_deployment, NAMESPACE),
            arrivals.deployment_seen).start())

        # Rolled out before kubeledger comes, as in a cluster it is installed into.
        scale.settle_rollouts(arrivals, still_fine)
        operator = Operator.for_stack(endpoints)
        writers = Writers(endpoints)
        install, inventory = scale.first_install(operator, arrivals, scale.SideWriter(admin),
                                                 writers, deployments)
        elasticsearch = Elasticsearch(
            endpoints.elasticsearch_url, request_timeout=30,
            basic_auth=(endpoints.elasticsearch_username, endpoints.elasticsearch_password),
            ca_certs=str(endpoints.elasticsearch_ca))
        phases = PacePhases(arrivals, writers, deployments[:DEPLOYMENTS], elasticsearch,
                            scale.running(operator))
        # Each phase starts once the controller has rolled out what came before and the
        # operator has recorded those rollouts: it runs alone, and a restart finds
        # nothing left to record (the controller falls behind under load).
        settle = functools.partial(scale.settle_rollouts, arrivals, scale.running(operator))
        settle()
        burst = profiled(operator, phases.burst)
        settle()
        steady_audit_wait = phases.steady("steady-audit-wait")
        settle()
        fill = scale.fill(operator, writers, arrivals, deployments, target=scale.RECORDS,
                          offset=DEPLOYMENTS)
        settled = scale.settled_memory(operator, arrivals, elasticsearch)
        startup = scale.restart(operator, arrivals, KUBELEDGER_AUDIT_WAIT_SECONDS="0")
        steady = phases.steady("steady")
        settle()
        catchup = scale.catch_up(operator, writers, arrivals, deployments, scale.CATCHUP)
        report(burst=burst, steady=steady, steady_audit_wait=steady_audit_wait, fill=fill,
               install=install, inventory=inventory, settled=settled, startup=startup,
               catchup=catchup, objects=len(deployments),
               audit_batch_max_wait_s=AUDIT_BATCH_MAX_WAIT_SECONDS)
        return 0
    finally:
        stop_all(watches)
        if operator is not None:
            operator.stop()
        keep_logs()
        stack.purge()


def profiled(operator: Operator, phase: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Runs ``phase`` with py-spy sampling the operator; prints where its time went.

    The share of a core it used (its CPU time over the phase's length) joins the figures:
    well under 1.0 means it was waiting, not computing. The stacks are kept in ``LOGS``.
    """
    pid = operator.processes.running(OPERATOR_PROCESS)
    assert pid is not None, "the operator is not running"
    (DIRECTORY / "logs").mkdir(parents=True, exist_ok=True)
    sampling = profile.Sampling(pid, DIRECTORY / "logs" / "burst-profile.txt")
    cpu, started = profile.cpu_seconds(pid), time.monotonic()
    figures = phase()
    figures["operator_cpu_share"] = (profile.cpu_seconds(pid) - cpu) / (
        time.monotonic() - started)
    print(f"operator during the burst: {figures['operator_cpu_share']:.2f} of a core; "
          f"py-spy:\n{sampling.stop().table()}", flush=True)
    return figures


def keep_logs() -> None:
    """Copies the stack's logs to ``LOGS`` before the stack (and its directory) goes."""
    shutil.rmtree(LOGS, ignore_errors=True)
    if (DIRECTORY / "logs").is_dir():
        shutil.copytree(DIRECTORY / "logs", LOGS)
        print(f"the stack's logs are kept in {LOGS}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
