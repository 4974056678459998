"""The real operator (``kubeledger run``) as a test sees it: start, stop, kill, read records.

It serves its probes and its Prometheus metrics on free ports of 127.0.0.1, as the chart's
pods serve theirs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from integration.kubectl import Kubectl, eventually
from kubeledger.first_listing import RECORDING_LIVE
from stack.cluster import Endpoints
from stack.processes import ProcessTable, terminate
from stack.readiness import http_ok, wait_until

NAME = "operator"
# How long the operator needs, at most, to record what it was just shown: a live change
# waits up to KUBELEDGER_AUDIT_WAIT_SECONDS (3) for its audit event.
SETTLE_SECONDS = 5.0


# The session operator looks for every anomaly kind, tuned so that test_anomalies can plant
# each one quickly: one protected namespace; a single change window that never opens
# (00:00 on February 29th, for a minute) with the admin's group exempt; small burst and
# spike thresholds; and the stack's own test images as the only approved registry. Other
# tests' records may carry anomalies too (alice's changes come in bursts); none checks
# that they have none.
PROTECTED_NAMESPACE = "anomalies-prod"
ANOMALY_ENV = {
    "KUBELEDGER_PROTECTED_NAMESPACES": PROTECTED_NAMESPACE,
    "KUBELEDGER_CHANGE_WINDOWS": "0 0 29 2 * 1m",
    "KUBELEDGER_CHANGE_WINDOW_EXEMPT": "system:masters",
    "KUBELEDGER_BURST_CHANGES": "15",
    "KUBELEDGER_BURST_MINUTES": "1",
    "KUBELEDGER_ROLLBACK_SPIKE_COUNT": "1",
    "KUBELEDGER_FAILURE_SPIKE_COUNT": "1",
    "KUBELEDGER_SPIKE_MINUTES": "10",
    "KUBELEDGER_APPROVED_REGISTRIES": "localhost/kubeledger",
}


@dataclass
class Operator:
    """One operator process against one stack, tracked by PID like every stack process."""

    endpoints: Endpoints
    processes: ProcessTable
    health_port: int
    ready_port: int
    metrics_port: int

    @classmethod
    def for_stack(cls, endpoints: Endpoints) -> Operator:
        with socket.socket() as health, socket.socket() as ready, socket.socket() as metrics:
            for port in (health, ready, metrics):
                port.bind(("127.0.0.1", 0))
            ports = (health.getsockname()[1], ready.getsockname()[1],
                     metrics.getsockname()[1])
        return cls(endpoints, ProcessTable(endpoints.directory / "run",
                                           endpoints.directory / "logs"), *ports)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        """What the running operator's /metrics serves now (Prometheus text format)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:  # noqa: S310 (our own http URL)
            text: str = response.read().decode()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0: none)."""
        return sum(sample.value for family in text_string_to_metric_families(self.metrics())
                   for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    @property
    def log(self) -> Path:
        return self.processes.log_file(NAME)

    def start(self, **extra_env: str) -> None:
        """Starts the operator and returns once it records changes live.

        Readiness alone does not say so: a standby is ready too (it serves the webhook),
        and a restarted operator stands by until its killed predecessor's lease runs
        out. The line the writer logs once every watch has listed its kind does.
        """
        if self.processes.running(NAME):
            return
        executable = Path(sys.executable).with_name("kubeledger")
        health = f"http://127.0.0.1:{self.health_port}/healthz"
        ready = f"http://127.0.0.1:{self.ready_port}/readyz"
        recorded_before = self._times_recording_live()
        self.processes.start(NAME, [str(executable), "run", "--liveness", health,
                                    "--readiness", ready, "--metrics", self.metrics_url,
                                    "--log-format", "json"],
                             env={**self.endpoints.operator_env(), **ANOMALY_ENV, **extra_env})
        wait_until(lambda: http_ok(ready) and self._times_recording_live() > recorded_before,
                   "the operator", self.processes, NAME)

    def wait_listed(self) -> None:
        """Until the events of its listings are all handled: once it records live, those
        may still wait in its intake (watch events go first)."""
        eventually(lambda: self.metric("kubeledger_intake_events") == 0, timeout=60,
                   what="the operator's intake to empty")

    def _times_recording_live(self) -> int:
        if not self.log.exists():
            return 0
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if line.startswith("{") and json.loads(line).get("message") == RECORDING_LIVE)

    def stop(self) -> None:
        self.processes.stop(NAME)

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as in a node failure."""
        pid = self.processes.running(NAME)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            terminate(pid, grace=5)  # waits until the process is gone
            self.processes.pid_file(NAME).unlink(missing_ok=True)


def records_of(kubectl: Kubectl, uid: str) -> list[dict[str, Any]]:
    """The AuditRecords of one object, in chain order (read as admin: they are not alice's)."""
    items: list[dict[str, Any]] = kubectl.as_user("admin").json(
        "get", "auditrecords", "-l", f"kubeledger.io/subject-uid={uid}")["items"]
    return sorted(items, key=lambda record: record["spec"]["chain"]["sequence"])


# Rollouts run on the node in their own time: their records can fall between, or after,
# the records of the changes a test makes.
ROLLOUT_STATUS = frozenset({"rollout-completed", "rollout-failed"})


def actions_of(kubectl: Kubectl, uid: str) -> list[str]:
    return [record["spec"]["action"] for record in records_of(kubectl, uid)]


def change_actions_of(kubectl: Kubectl, uid: str) -> list[str]:
    """The actions of an object's records, but for the rollout status ones."""
    return [action for action in actions_of(kubectl, uid) if action not in ROLLOUT_STATUS]


def settled(kubectl: Kubectl, manifest: dict[str, Any]) -> None:
    """Waits until a Deployment's rollout completed and the operator has had time to see it."""
    metadata = manifest["metadata"]
    kubectl.as_user("admin")("-n", metadata["namespace"], "rollout", "status",
                             f"deployment/{metadata['name']}", "--timeout=90s")
    time.sleep(SETTLE_SECONDS)


def wait_for_action(kubectl: Kubectl, uid: str, action: str,
                    timeout: float = 30.0) -> dict[str, Any]:
    """The newest record of ``uid`` with ``action``, once it exists."""
    def found() -> dict[str, Any] | None:
        matching = [r for r in records_of(kubectl, uid) if r["spec"]["action"] == action]
        return matching[-1] if matching else None
    return eventually(found, timeout=timeout, what=f"a {action!r} record of {uid}")


def uid_of(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    """The uid the apiserver gave the object ``manifest`` describes."""
    metadata = manifest["metadata"]
    scope = ("-n", metadata["namespace"]) if "namespace" in metadata else ()
    found = kubectl.as_user("admin").json(*scope, "get", manifest["kind"].lower(),
                                          metadata["name"])
    uid: str = found["metadata"]["uid"]
    return uid


def apply_recorded(kubectl: Kubectl, manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Applies ``manifest`` and waits for its ``created`` record: (uid, record)."""
    kubectl.apply(manifest)
    uid = uid_of(kubectl, manifest)
    return uid, wait_for_action(kubectl, uid, "created")


def run_verify(operator: Operator) -> subprocess.CompletedProcess[str]:
    """``kubeledger verify`` against the operator's cluster, as an administrator runs it."""
    return verify_chain(operator.endpoints)


def verify_chain(endpoints: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubeledger verify ARGS`` run on this machine against the stack, as an auditor:
    Elasticsearch (its checkpoints, its copy) read as the superuser, since the
    operator's own user may not read."""
    env = {"PATH": "/usr/bin:/bin", **endpoints.operator_env(),
           "ELASTICSEARCH_USERNAME": endpoints.elasticsearch_username,
           "ELASTICSEARCH_PASSWORD": endpoints.elasticsearch_password}
    return subprocess.run(
        [str(Path(sys.executable).with_name("kubeledger")), "verify", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False)
